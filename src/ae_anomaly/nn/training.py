"""The fit loop: mini-batches from in-memory tensors, validation, early stopping, checkpoints.

The loop knows nothing about any particular architecture. By default it
trains an autoencoder (the target of an image is the image itself, the loss
is ``settings.loss``); given targets and a loss function it trains any
supervised model, e.g. the digit classifier with labels and cross-entropy.
After every epoch it writes one checkpoint file (weights, best weights,
optimizer state and progress, all in one safetensors file, so it is complete
or absent), from which ``train(..., resume=True)`` continues exactly where it
stopped.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.fileio import atomic_write

CHECKPOINT_NAME = "checkpoint.safetensors"

# (model output, target) -> the mean loss of a batch, a scalar tensor.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (training batch, the epoch's generator) -> the batch as the model sees it, e.g.
# randomly shifted; drawing from the epoch's generator keeps a resumed run exact.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# (training batch, the epoch's generator) -> (what the model sees, what it must
# give back): an autoencoder trained to restore a changed image (restoration.py).
Restore = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 6  # upper bound; early stopping may end sooner
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # Adam's L2 penalty on the weights
    patience: int = 2  # epochs without a better validation loss before stopping
    loss: str = "mse"  # mse, mae or bce, averaged over pixels and images
    seed: int = 0  # shuffling order of every epoch
    # The learning rate of epoch e is learning_rate * lr_decay ** (e - 1); a
    # function of the epoch alone, so a resumed run needs no scheduler state.
    lr_decay: float = 1.0
    # "cosine": the rate falls from learning_rate to 0 along half a cosine over
    # all the steps of ``epochs`` epochs; like lr_decay, a function of the step alone.
    schedule: str = "constant"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float


@dataclass
class TrainProgress:
    """Everything besides tensors that a resumed run needs."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def should_stop(self, patience: int) -> bool:
        return self.epochs_done - self.best_epoch >= patience


class ProgressListener(Protocol):
    """Receives progress; the CLI shows it as a bar, scripts pass nothing."""

    def start_epoch(self, epoch: int, n_batches: int) -> None: ...

    def batch_done(self, running_loss: float) -> None: ...

    def end_epoch(self, record: EpochRecord) -> None: ...


def train(
    model: nn.Module,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    settings: TrainSettings,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    listener: ProgressListener | None = None,
    train_targets: torch.Tensor | None = None,
    val_targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    augment: Augment | None = None,
    restore: Restore | None = None,
) -> TrainProgress:
    """Train ``model`` in place; end with the weights of its best validation loss.

    Without targets the model learns to reconstruct ``train_images``. With
    ``train_targets`` and ``val_targets`` (one per image, e.g. class labels)
    it learns to map each image to its target under ``loss_fn``. With
    ``restore`` it learns to map each changed training image back to its original.
    """
    if (train_targets is None) != (val_targets is None):
        raise ValueError("give both train_targets and val_targets, or neither")
    if restore is not None and (train_targets is not None or augment is not None):
        raise ValueError("restore makes its own inputs and targets: give no targets or augment")
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    progress = TrainProgress()
    best_state = copy.deepcopy(model.state_dict())
    if resume and checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_NAME).exists():
        progress, best_state = load_checkpoint(checkpoint_dir, model, optimizer)

    while progress.epochs_done < settings.epochs and not progress.should_stop(settings.patience):
        epoch = progress.epochs_done + 1
        started = time.perf_counter()
        if settings.lr_decay != 1.0:
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * settings.lr_decay ** (epoch - 1)
        train_loss = _train_epoch(
            model,
            optimizer,
            train_images,
            settings,
            epoch,
            listener,
            targets=train_targets,
            loss_fn=loss_fn,
            augment=augment,
            restore=restore,
        )
        # Positional: tests replace evaluate_loss with a stand-in taking *args.
        val_loss = evaluate_loss(model, val_images, settings, val_targets, loss_fn)
        record = EpochRecord(epoch, train_loss, val_loss, time.perf_counter() - started)
        progress.history.append(record)
        if val_loss < progress.best_val_loss:
            progress.best_epoch, progress.best_val_loss = epoch, val_loss
            best_state = copy.deepcopy(model.state_dict())
        # Checkpoint first: a listener that raises (Ctrl-C while printing)
        # must not lose the epoch.
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, model, optimizer, best_state, progress)
        if listener is not None:
            listener.end_epoch(record)

    model.load_state_dict(best_state)
    return progress


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    settings: TrainSettings,
    epoch: int,
    listener: ProgressListener | None,
    *,
    targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    augment: Augment | None = None,
    restore: Restore | None = None,
) -> float:
    model.train()
    # A generator per epoch, seeded from (seed, epoch): a resumed run shuffles
    # exactly as an uninterrupted one without saving any RNG state.
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    n_batches = math.ceil(len(images) / settings.batch_size)
    if listener is not None:
        listener.start_epoch(epoch, n_batches)
    total, count = 0.0, 0
    for step, start in enumerate(range(0, len(images), settings.batch_size)):
        if settings.schedule == "cosine":
            _set_cosine_rate(optimizer, settings, (epoch - 1) * n_batches + step, n_batches)
        index = order[start : start + settings.batch_size]
        batch = images[index]
        if augment is not None:
            batch = augment(batch, generator)
        # An autoencoder's target is its (augmented) input, unless it restores.
        target = batch if targets is None else targets[index]
        if restore is not None:
            batch, target = restore(batch, generator)
        loss = _loss(model(batch), target, settings, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
        count += len(batch)
        if listener is not None:
            listener.batch_done(total / count)
    return total / count


def _set_cosine_rate(
    optimizer: torch.optim.Optimizer, settings: TrainSettings, step: int, n_batches: int
) -> None:
    total = settings.epochs * n_batches
    rate = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    for group in optimizer.param_groups:
        group["lr"] = rate


def evaluate_loss(
    model: nn.Module,
    images: torch.Tensor,
    settings: TrainSettings,
    targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
) -> float:
    """Mean loss over ``images`` in eval mode (batch-norm uses its running statistics).

    The targets are the images themselves unless ``targets`` is given.
    """
    model.eval()
    total = 0.0
    step = settings.batch_size * 4
    with torch.inference_mode():
        for start in range(0, len(images), step):
            batch = images[start : start + step]
            target = batch if targets is None else targets[start : start + step]
            total += _loss(model(batch), target, settings, loss_fn).item() * len(batch)
    return total / len(images)


def _loss(
    output: torch.Tensor, target: torch.Tensor, settings: TrainSettings, loss_fn: LossFn | None
) -> torch.Tensor:
    if loss_fn is None:
        return reconstruction_loss(output, target, settings.loss)
    return loss_fn(output, target)


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, kind: str
) -> torch.Tensor:
    if kind == "mse":
        return nn.functional.mse_loss(reconstruction, target)
    if kind == "mae":
        return nn.functional.l1_loss(reconstruction, target)
    if kind == "bce":
        # Pixels in [0, 1] read as probabilities. Unlike MSE and MAE, its gradient
        # does not vanish when a sigmoid output saturates, which lets models
        # without batch-norm (conv-keras) escape an all-black start.
        return nn.functional.binary_cross_entropy(reconstruction, target)
    raise ValueError(f"unknown loss {kind!r}; choose mse, mae or bce")


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor],
    progress: TrainProgress,
) -> None:
    """One file: model, best model and optimizer tensors, with progress as JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in best_state.items()}
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        tensors |= {f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
    metadata = {
        "progress": json.dumps(
            {
                "history": [asdict(r) for r in progress.history],
                "best_epoch": progress.best_epoch,
                "best_val_loss": progress.best_val_loss,
            }
        ),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(
        directory / CHECKPOINT_NAME, lambda tmp: save_file(tensors, str(tmp), metadata=metadata)
    )


def load_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[TrainProgress, dict[str, torch.Tensor]]:
    """Restore model and optimizer in place; return the progress and the best weights."""
    path = directory / CHECKPOINT_NAME
    device = next(model.parameters()).device
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        model.load_state_dict(_with_prefix(tensors, "model."))
        optimizer.load_state_dict(_optimizer_state(tensors, metadata))
        raw = json.loads(metadata["progress"])
        progress = TrainProgress(
            history=[EpochRecord(**r) for r in raw["history"]],
            best_epoch=raw["best_epoch"],
            best_val_loss=raw["best_val_loss"],
        )
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot resume from checkpoint {path}: {exc}") from None
    return progress, _with_prefix(tensors, "best.")


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _with_prefix(tensors, "optimizer.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json.loads(metadata["param_groups"])}
