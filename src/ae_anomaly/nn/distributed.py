"""Many processes training one detector, on PyTorch's own engine (torch.distributed).

``torchrun`` starts the processes and puts their rank, their number and the rendezvous in
the environment; ``session`` joins them into one group (gloo on CPUs, NCCL on GPUs) and
leaves it at the end. Every helper below is a no-op in a single process, so the loop and
the detector read the same either way, and one process computes exactly what it always
did.

How the work is split: the images of every training batch are dealt out over the ranks
(rank r takes every r-th of them) and DistributedDataParallel averages the gradients, so
the processes together take the steps one process would. Whatever is computed over a
set of images (the validation loss, the codes and score terms the score fits) is
computed on each rank's share and gathered, so every rank ends with the same numbers,
computed from all of the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.images import ImageRows, rows_of
from ae_anomaly.nn.launch import launched

T = TypeVar("T")


_alone = False  # set by ``alone``: this process trains by itself for a while


def active() -> bool:
    """Whether this process is one of a group of more than one, working together."""
    if _alone:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def alone() -> Iterator[None]:
    """In the block this process computes by itself, though in a group: each rank of a
    benchmark trains cells of its own."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def barrier() -> None:
    """Wait for every rank of the group (nothing alone)."""
    if active():
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process writes: the only one, or rank 0 of a group."""
    return rank() == 0


@contextmanager
def session(device: str) -> Iterator[None]:
    """Join the group torchrun launched this process into, for the block; alone, nothing.

    On GPUs each process takes the device of its local rank."""
    if not launched() or dist.is_initialized():
        yield
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(n: int) -> torch.Tensor:
    """The positions of ``n`` items this rank takes: every world_size-th, from its rank."""
    return torch.arange(rank(), n, world_size())


def gathered(local: torch.Tensor, n: int) -> torch.Tensor:
    """All ``n`` rows, in their order, from each rank's ``local`` rows of ``shard(n)``."""
    if not active():
        return local
    size = world_size()
    longest = -(-n // size)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    send = _for_backend(padded)
    parts = [torch.empty_like(send) for _ in range(size)]
    dist.all_gather(parts, send)
    out = local.new_empty((n, *local.shape[1:]))
    for r, part in enumerate(parts):
        count = len(range(r, n, size))
        out[r::size] = part[:count].to(local.device)
    return out


def over_ranks(images: ImageRows, compute: Callable[[ImageRows], torch.Tensor]) -> torch.Tensor:
    """``compute(images)``, whose rows belong to the images in order (one or, for patch
    tiles, several per image). Over several processes each computes its share of the
    images and every rank gets all the rows."""
    if not active():
        return compute(images)
    mine = rows_of(images, shard(len(images)).to(images.device))
    rows = compute(mine)
    per_image = rows.reshape(len(mine), -1)
    return gathered(per_image, len(images)).reshape(-1, *rows.shape[1:])


def summed(*values: float) -> tuple[float, ...]:
    """Each value summed over the ranks (float64)."""
    if not active():
        return values
    total = _for_backend(torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(total)
    return tuple(float(v) for v in total.cpu())


def from_main(compute: Callable[[], T]) -> T:
    """What rank 0 computes (e.g. reads from the run folder), handed to every rank.

    A UserError on rank 0 is raised on every rank, so that none waits for the others."""
    if not active():
        return compute()
    payload: list[Any] = [None]
    if is_main():
        try:
            payload[0] = ("ok", compute())
        except UserError as exc:
            payload[0] = ("error", str(exc))
    dist.broadcast_object_list(payload, 0)
    status, value = payload[0]
    if status == "error":
        raise UserError(value)
    return value  # type: ignore[no-any-return]


class _Summed(torch.autograd.Function):
    """A tensor summed over the ranks, with gradients: the gradient of a sum over ranks
    is the gradients summed over ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class _SyncedStatistics:
    """Batch-norm over the images of every rank's share of a batch, as one process sees
    the whole batch (torch's SyncBatchNorm takes GPU tensors only). Mixed into a
    module's own batch-norm class while it trains; eval mode is the class's own."""

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # type: ignore[misc,no-any-return]
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1, *[1] * (x.ndim - 2)]
        channels = x.shape[1]
        # One message per layer and pass: each rank's count, sums and sums of squares
        # (from its own steady mean and variance, combined in float64).
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        n = x.numel() // channels
        local = torch.cat([n * mean, n * (var + mean * mean), mean.new_full((1,), n)])
        total = _Summed.apply(local.double())
        count = total[-1].detach()
        mean64 = total[:channels] / count
        var64 = (total[channels:-1] / count - mean64 * mean64).clamp(min=0)
        mean, var = mean64.to(x.dtype), var64.to(x.dtype)
        centred = x - mean.view(shape)
        self._track(mean.detach(), var.detach(), count)
        normalised = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised

    def _track(self: Any, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        factor = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased)


@contextmanager
def synced_batch_norm(model: nn.Module) -> Iterator[None]:
    """In a group, ``model``'s batch-norm layers normalise over the whole batch of every
    rank for the block, then are their own class again (saved, exported as ever)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not active() or not layers:
        yield
        return
    classes = [type(layer) for layer in layers]
    for layer, cls in zip(layers, classes, strict=True):
        layer.__class__ = type(f"Synced{cls.__name__}", (_SyncedStatistics, cls), {})
    try:
        yield
    finally:
        for layer, cls in zip(layers, classes, strict=True):
            layer.__class__ = cls


def main_first(compute: Callable[[], T]) -> T:
    """``compute()`` on every rank, rank 0 first (e.g. filling the image cache, which
    the others then read instead of decoding the same files at once)."""
    if not active():
        return compute()
    if is_main():
        result = compute()
        dist.barrier()
        return result
    dist.barrier()
    return compute()


def wrapped(model: nn.Module) -> nn.Module:
    """``model`` as the training forward pass should call it: DistributedDataParallel
    in a group (which also starts every rank from rank 0's weights), else itself."""
    if not active():
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _for_backend(tensor: torch.Tensor) -> torch.Tensor:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.get_backend() == "nccl":
        return tensor.cuda()
    return tensor.cpu()
