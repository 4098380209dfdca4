"""A saved model: ``weights.safetensors`` and one JSON file, written and read the same way
for the detector and the classifier.

The JSON names its format and version, the package version and the SHA-256 of the
weights file. It is written last, after the weights, so a folder whose weights were
changed or swapped afterwards is refused on load. Loading reads JSON and safetensors
only, never pickle.
"""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ae_anomaly import __version__
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import atomic_write, write_json

WEIGHTS_FILE = "weights.safetensors"
DIGEST_KEY = "weights_sha256"


def write_model_folder(
    folder: Path, tensors: dict[str, torch.Tensor], meta_file: str, metadata: dict[str, Any]
) -> Path:
    """Write ``tensors`` to ``folder/weights.safetensors``, then ``metadata`` with the
    weights' digest to ``folder/meta_file``; return ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    target = folder / WEIGHTS_FILE
    atomic_write(target, lambda tmp: _save_weights(state, tmp, target))
    write_json(folder / meta_file, {**metadata, DIGEST_KEY: sha256(folder / WEIGHTS_FILE)})
    return folder


def _save_weights(state: dict[str, torch.Tensor], tmp: Path, target: Path) -> None:
    """safetensors' save_file into ``tmp``, with its I/O failures (a full disk) as the
    OSError they are, naming ``target``, so that every caller turns them into one sentence
    as it does any write error."""
    try:
        save_file(state, str(tmp))
    except SafetensorError as exc:
        reason = str(exc).removeprefix("Error while serializing: ")
        raise OSError(errno.EIO, reason, str(target)) from None


def read_metadata(
    path: Path, format_name: str, versions: tuple[int, ...], kind: str
) -> dict[str, Any]:
    """The JSON of a saved ``kind`` ("detector", "classifier") whose format is ``format_name``
    at one of ``versions``; a UserError in one sentence otherwise."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"cannot read {kind} file {path}: {path.parent} holds no {path.name}; "
            f"is it a saved {kind}?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {kind} file {path}: {_one_line(exc)}") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be an ae-anomaly {kind} file") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise UserError(f"{path} is not an ae-anomaly {kind} file")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in versions:
        raise UserError(
            f"{path} has {kind} format version {version}, this ae-anomaly ({__version__}) "
            f"reads version{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))}"
        )
    return meta


def read_weights(folder: Path, meta_file: str, digest: str | None) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/weights.safetensors``, refused when ``digest`` (the one its
    JSON names; None for files from before digests were saved) does not match."""
    path = folder / WEIGHTS_FILE
    if digest is not None and sha256(path) != digest:
        raise UserError(
            f"{path} does not match {meta_file} (changed after saving?); save the model again"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise UserError(f"cannot load weights from {path}: {_one_line(exc)}") from None


def sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"cannot load weights from {path}: {exc.strerror or exc}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
