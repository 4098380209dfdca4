"""What the training loop tells the world, and what the world may decide: callbacks.

The loop (loop.py) calls each callback of its list, in order, at the start of a fit,
at the start and end of every epoch, after every batch and at the end. A callback sees
the ``Fit`` it watches: which ensemble member it is, the model, the optimizer and the
progress so far, which it may change (``Checkpoint`` restores it on resume,
``EarlyStopping`` sets ``stop``). Progress bars, checkpoints, early stopping and, later,
experiment tracking or a multi-process hook are callbacks; the loop itself knows none of
them. Nothing here imports torch at run time, so the command line's progress bar can be
a callback without loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float


@dataclass
class TrainState:
    """The progress of one fit: everything besides tensors that a resumed run needs,
    the best weights so far, and whether a callback asked to stop."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_weights: dict[str, Any] = field(default_factory=dict)
    stop: bool = False

    @property
    def epochs_done(self) -> int:
        return len(self.history)


@dataclass
class Fit:
    """One network being trained: what a callback may look at (and change)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    member: int = 0  # which ensemble member (0 for a single network)
    members: int = 1


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_fit_start(self, fit: Fit) -> None:
        """Before the first epoch (of this member), after the model and optimizer exist."""

    def on_epoch_start(self, fit: Fit, epoch: int, n_batches: int) -> None:
        """An epoch of ``n_batches`` optimisation steps begins."""

    def on_batch_end(self, fit: Fit, running_loss: float) -> None:
        """One step is done; ``running_loss`` is the epoch's mean training loss so far."""

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        """An epoch is done and recorded in ``fit.state`` (best weights updated)."""

    def on_fit_end(self, fit: Fit) -> None:
        """The loop ends; the model holds the best weights."""


class EarlyStopping(Callback):
    """Stops a fit after ``patience`` epochs without a better validation loss."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def should_stop(self, state: TrainState) -> bool:
        return state.epochs_done - state.best_epoch >= self.patience

    def on_fit_start(self, fit: Fit) -> None:
        # A resumed fit may already have waited long enough.
        fit.state.stop = fit.state.stop or self.should_stop(fit.state)

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        fit.state.stop = fit.state.stop or self.should_stop(fit.state)
