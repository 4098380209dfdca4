"""Choosing the torch device: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from ae_anomaly.errors import UserError


def threads_if_given(count: int | None) -> AbstractContextManager[None]:
    """torch_threads(count), or nothing for None (torch's default)."""
    return nullcontext() if count is None else torch_threads(count)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Compute with ``count`` CPU threads inside the block, and restore the count after it.

    The thread count decides the order in which a sum is taken, and so the last bits of
    every float: the same count is what makes a run repeat exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select_device(name: str = "auto") -> torch.device:
    """The device named by ``name``, or the best one present for ``auto``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for, but CUDA is not available here")
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise UserError(
            f"device '{name}' was asked for, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for, but Apple MPS is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device '{name}': {exc}") from None
