"""Checkpoints: after every epoch one file, from which a resumed fit continues exactly.

The file holds the weights, the best weights, the optimizer state and the progress
(as JSON metadata), all in one safetensors file written atomically, so it is complete
or absent. The ``Checkpoint`` callback writes it and, on resume, reads it back before
the first epoch; an ensemble's member i > 0 keeps its file in ``member-i/``. Over
several processes (distributed.py) rank 0 alone writes and reads it, and hands what it
read to the others.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ae_anomaly.errors import UserError
from ae_anomaly.fileio import atomic_write
from ae_anomaly.nn import distributed
from ae_anomaly.nn.callbacks import Callback, EpochRecord, Fit, TrainState

CHECKPOINT_NAME = "checkpoint.safetensors"


class Checkpoint(Callback):
    """Saves the fit after every epoch into ``directory``; with ``resume``, starts from it."""

    def __init__(self, directory: Path, *, resume: bool = False) -> None:
        self.directory = directory
        self.resume = resume

    def folder(self, member: int) -> Path:
        return self.directory if member == 0 else self.directory / f"member-{member}"

    def on_fit_start(self, fit: Fit) -> None:
        folder = self.folder(fit.member)

        def read() -> dict[str, Any] | None:
            if not (self.resume and (folder / CHECKPOINT_NAME).exists()):
                return None
            state = load_checkpoint(folder, fit.model, fit.optimizer)
            if not distributed.active():
                return {"state": state}
            # On the CPU, so that a tensor does not arrive on rank 0's GPU.
            state.best_weights = _on_cpu(state.best_weights)
            return {
                "state": state,
                "model": _on_cpu(fit.model.state_dict()),
                "optimizer": _on_cpu(fit.optimizer.state_dict()),
            }

        restored = distributed.from_main(read)
        if restored is None:
            return
        if not distributed.is_main():
            fit.model.load_state_dict(restored["model"])
            fit.optimizer.load_state_dict(restored["optimizer"])
        fit.state = restored["state"]

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        if distributed.is_main():
            save_checkpoint(self.folder(fit.member), fit.model, fit.optimizer, fit.state)


def save_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """One file: model, best model and optimizer tensors, with progress as JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in state.best_weights.items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        tensors |= {f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in values.items()}
    metadata = {
        "progress": json.dumps(
            {
                "history": [asdict(r) for r in state.history],
                "best_epoch": state.best_epoch,
                "best_val_loss": state.best_val_loss,
            }
        ),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(
        directory / CHECKPOINT_NAME, lambda tmp: save_file(tensors, str(tmp), metadata=metadata)
    )


def load_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> TrainState:
    """Restore model and optimizer in place; return the progress with the best weights."""
    path = directory / CHECKPOINT_NAME
    device = next(model.parameters()).device
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        model.load_state_dict(_with_prefix(tensors, "model."))
        optimizer.load_state_dict(_optimizer_state(tensors, metadata))
        raw = json.loads(metadata["progress"])
        return TrainState(
            history=[EpochRecord(**r) for r in raw["history"]],
            best_epoch=raw["best_epoch"],
            best_val_loss=raw["best_val_loss"],
            best_weights=_with_prefix(tensors, "best."),
        )
    except RuntimeError as exc:
        # load_state_dict lists every missing and unexpected key: kilobytes, not a reason.
        raise UserError(
            f"cannot resume from checkpoint {path}: its weights are not those of this run's "
            f"model ({_first_line(exc)}); start again with --overwrite"
        ) from None
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot resume from checkpoint {path}: {_first_line(exc)}") from None


def _on_cpu(tree: Any) -> Any:
    """``tree`` (dicts and lists of tensors) with every tensor copied to the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _on_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_on_cpu(v) for v in tree)
    return tree


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The start of an exception's message: its first line, cut at ``limit`` characters."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _with_prefix(tensors, "optimizer.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json.loads(metadata["param_groups"])}
