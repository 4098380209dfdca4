"""The fit loop: mini-batches from in-memory tensors, a validation loss per epoch, the best
weights kept; everything else (progress, checkpoints, early stopping) is a callback.

The loop knows nothing about any particular architecture. By default it trains an
autoencoder (the target of an image is the image itself); given targets and a loss it
trains any supervised model, e.g. the digit classifier with labels and cross-entropy.
Its settings are ``params.TrainingParams``, the same object the config file and the
estimators hold.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn import distributed
from ae_anomaly.nn.callbacks import Callback, EpochRecord, Fit, TrainState
from ae_anomaly.nn.heap import keep_freed_memory
from ae_anomaly.nn.images import ImageRows
from ae_anomaly.nn.inference import images_per_pass
from ae_anomaly.params import AUTO_MIN_STEPS, TrainingParams, resolved_epochs

# (model output, target) -> the mean loss of a batch, a scalar tensor.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (training batch, the epoch's generator) -> the batch as the model sees it, e.g.
# randomly shifted; drawing from the epoch's generator keeps a resumed run exact.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# (training batch, the epoch's generator) -> (what the model sees, what it must
# give back): an autoencoder trained to restore a changed image (restoration.py).
Restore = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Task:
    """What the model learns: the loss, and optionally how a batch is changed first and
    the target of each image (None: an autoencoder's target is its own input).

    ``repeats``: how often each image is drawn per epoch (patch mode: once per tile it is
    scored by, since each draw is another random crop); ``min_steps``: the optimisation
    steps an unset number of epochs makes at least (params.resolved_epochs)."""

    loss: LossFn
    augment: Augment | None = None
    restore: Restore | None = None
    train_targets: torch.Tensor | None = None
    val_targets: torch.Tensor | None = None
    repeats: int = 1
    min_steps: int = AUTO_MIN_STEPS

    def __post_init__(self) -> None:
        if (self.train_targets is None) != (self.val_targets is None):
            raise ValueError("give both train_targets and val_targets, or neither")
        if self.restore is not None and (
            self.train_targets is not None or self.augment is not None
        ):
            raise ValueError("restore makes its own inputs and targets: give no targets or augment")


def train(
    model: nn.Module,
    train_images: ImageRows,
    val_images: ImageRows,
    params: TrainingParams,
    task: Task,
    *,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    member: int = 0,
    members: int = 1,
) -> TrainState:
    """Train ``model`` in place; end with the weights of its best validation loss.

    ``seed`` fixes the shuffling of every epoch; ``member`` / ``members`` tell the
    callbacks which network of an ensemble this is. Unset ``params.epochs`` adapt to the
    number of images (params.resolved_epochs).
    """
    keep_freed_memory()  # each batch reuses the last one's freed activations
    # The resolved count is also what the cosine schedule spans.
    epochs = resolved_epochs(params, len(train_images) * task.repeats, task.min_steps)
    params = dataclasses.replace(params, epochs=epochs)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    state = TrainState(best_weights=copy.deepcopy(model.state_dict()))
    fit = Fit(model, optimizer, state, member=member, members=members)
    _call(callbacks, "on_fit_start", fit)
    # Wrapped after a resume restored the weights: DDP starts every rank from rank 0's.
    forward = distributed.wrapped(model)
    with distributed.synced_batch_norm(model):
        while fit.state.epochs_done < _epochs(params) and not fit.state.stop:
            _run_epoch(fit, forward, train_images, val_images, params, task, seed, callbacks)
    model.load_state_dict(fit.state.best_weights)
    _call(callbacks, "on_fit_end", fit)
    return fit.state


def _run_epoch(
    fit: Fit,
    forward: nn.Module,
    train_images: ImageRows,
    val_images: ImageRows,
    params: TrainingParams,
    task: Task,
    seed: int,
    callbacks: Sequence[Callback],
) -> None:
    """One epoch: train, validate, keep the best weights, tell the callbacks."""
    model, optimizer = fit.model, fit.optimizer
    epoch = fit.state.epochs_done + 1
    started = time.perf_counter()
    if params.lr_decay != 1.0:
        for group in optimizer.param_groups:
            group["lr"] = params.learning_rate * params.lr_decay ** (epoch - 1)
    train_loss = _train_epoch(fit, forward, train_images, params, task, seed, epoch, callbacks)
    # Positional: tests replace evaluate_loss with a stand-in taking *args.
    val_loss = evaluate_loss(model, val_images, params.batch_size, task)
    record = EpochRecord(epoch, train_loss, val_loss, time.perf_counter() - started)
    fit.state.history.append(record)
    if val_loss < fit.state.best_val_loss:
        fit.state.best_epoch, fit.state.best_val_loss = epoch, val_loss
        fit.state.best_weights = copy.deepcopy(model.state_dict())
    _call(callbacks, "on_epoch_end", fit, record)


def _epochs(params: TrainingParams) -> int:
    """``params.epochs``, once ``train`` has resolved an unset one."""
    assert params.epochs is not None
    return params.epochs


def _call(callbacks: Sequence[Callback], hook: str, *args: object) -> None:
    for callback in callbacks:
        getattr(callback, hook)(*args)


def _train_epoch(
    fit: Fit,
    forward: nn.Module,
    images: ImageRows,
    params: TrainingParams,
    task: Task,
    seed: int,
    epoch: int,
    callbacks: Sequence[Callback],
) -> float:
    model, optimizer = fit.model, fit.optimizer
    model.train()
    # A generator per epoch, seeded from (seed, epoch): a resumed run shuffles
    # exactly as an uninterrupted one without saving any RNG state.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    draws = len(images) * task.repeats
    # Each image ``repeats`` times, in random order (once each, as before, for 1); the
    # same order on every rank, each taking its share of every batch.
    order = (torch.randperm(draws, generator=generator) % len(images)).to(images.device)
    draws = _usable_draws(draws, params.batch_size)
    # Random changes of a batch (crops, augmentations) differ between ranks; rank 0 (and
    # a single process) draws them from the epoch's generator, as it always did.
    if distributed.rank() > 0:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + distributed.rank())
    n_batches = math.ceil(draws / params.batch_size)
    _call(callbacks, "on_epoch_start", fit, epoch, n_batches)
    total, count = 0.0, 0
    mine = slice(distributed.rank(), None, distributed.world_size())
    for step, start in enumerate(range(0, draws, params.batch_size)):
        if params.schedule == "cosine":
            _set_cosine_rate(optimizer, params, (epoch - 1) * n_batches + step, n_batches)
        index = order[start : start + params.batch_size][mine]
        batch = images[index]
        if task.augment is not None:
            batch = task.augment(batch, generator)
        # An autoencoder's target is its (augmented) input, unless it restores.
        target = batch if task.train_targets is None else task.train_targets[index]
        if task.restore is not None:
            batch, target = task.restore(batch, generator)
        with _autocast(params, batch.device):
            loss = task.loss(forward(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
        count += len(batch)
        _call(callbacks, "on_batch_end", fit, total / count)
    total, seen = distributed.summed(total, count)  # over every rank's share
    return total / seen


def _autocast(params: TrainingParams, device: torch.device) -> torch.autocast:
    """bfloat16 autocast for ``precision: bf16``: matrix products and convolutions in
    bf16, reductions and the loss in float32; the weights and the optimizer stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.precision == "bf16")


def _usable_draws(draws: int, batch_size: int) -> int:
    """How many of an epoch's draws make batches: all but a last batch too small to split.

    A last batch of one image is left out: batch-norm over a dense code (conv-dense)
    cannot normalise a single value; shuffling puts that image in other batches. Over
    several ranks, each needs two images of every batch for the same reason."""
    ranks = distributed.world_size()
    if ranks > 1 and batch_size < 2 * ranks:
        raise UserError(
            f"a batch of {batch_size} images cannot be shared by {ranks} processes (each needs "
            "two): raise the batch size"
        )
    last = draws % batch_size
    if draws > 1 and 0 < last < 2 * ranks:
        draws -= last
    if draws == 0:
        raise UserError(f"{ranks} processes need at least {2 * ranks} training images")
    return draws


def _set_cosine_rate(
    optimizer: torch.optim.Optimizer, params: TrainingParams, step: int, n_batches: int
) -> None:
    total = _epochs(params) * n_batches
    rate = params.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    for group in optimizer.param_groups:
        group["lr"] = rate


def evaluate_loss(model: nn.Module, images: ImageRows, batch_size: int, task: Task) -> float:
    """Mean loss over ``images`` in eval mode (batch-norm uses its running statistics).

    The targets are the images themselves unless the task has targets.
    """
    model.eval()
    total = 0.0
    step = images_per_pass(images.shape, batch_size * 4)
    # Over several ranks each takes every N-th image (a strided slice, no copy); the sums
    # make the same loss on every rank.
    mine = range(distributed.rank(), len(images), distributed.world_size())
    with torch.inference_mode():
        for start in range(0, len(mine), step):
            part = mine[start : start + step]
            index = slice(part.start, part.stop, part.step)
            batch = images[index]
            targets = task.val_targets
            target = batch if targets is None else targets[index]
            total += task.loss(model(batch), target).item() * len(batch)
    total, _ = distributed.summed(total, 0.0)
    return total / len(images)


def reconstruction_loss(kind: str) -> LossFn:
    """The training loss named ``kind``: mse, mae or bce, averaged over pixels and images."""
    if kind == "mse":
        return nn.functional.mse_loss
    if kind == "mae":
        return nn.functional.l1_loss
    if kind == "bce":
        # Pixels in [0, 1] read as probabilities. Unlike MSE and MAE, its gradient
        # does not vanish when a sigmoid output saturates, which lets models
        # without batch-norm (conv-keras) escape an all-black start.
        return nn.functional.binary_cross_entropy
    raise ValueError(f"unknown loss {kind!r}; choose mse, mae or bce")
