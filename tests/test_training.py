"""The training loop (nn/loop.py) with its callbacks: early stopping, checkpoints and exact
resumption, progress."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ae_anomaly.data.lazy_images import as_lazy_images
from ae_anomaly.data.sources import load_dataset
from ae_anomaly.data.tensors import to_image_tensor
from ae_anomaly.errors import UserError
from ae_anomaly.nn import loop
from ae_anomaly.nn.callbacks import (
    Callback,
    EarlyStopping,
    EpochRecord,
    Fit,
    TrainState,
    UndertrainedCheck,
)
from ae_anomaly.nn.checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint
from ae_anomaly.nn.loop import Task, reconstruction_loss, train
from ae_anomaly.nn.models import build_model
from ae_anomaly.params import AUTO_MIN_STEPS, TrainingParams

SHAPE = (1, 28, 28)
SMALL = {"channels": [4, 8]}  # a narrow network where the size of the network does not matter


@pytest.fixture(scope="module")
def digits(shared_data_dir: Path) -> torch.Tensor:
    """The first 320 MNIST training digits as float tensors: 256 to train on, 64 to validate."""
    dataset = load_dataset("mnist", data_dir=shared_data_dir, download=False)
    return to_image_tensor(dataset.train_images[:320])


def new_model(seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("conv-bn", SHAPE, **kwargs)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run(
    model: nn.Module,
    train_x: torch.Tensor,
    val_x: torch.Tensor,
    *,
    loss: str = "mse",
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    listener: Callback | None = None,
    **params: object,
) -> TrainState:
    """Train as the detector does: early stopping, then a checkpoint, then ``listener``."""
    settings = TrainingParams(**params)  # type: ignore[arg-type]
    callbacks: list[Callback] = [EarlyStopping(settings.patience)]
    if checkpoint_dir is not None:
        callbacks.append(Checkpoint(checkpoint_dir, resume=resume))
    if listener is not None:
        callbacks.append(listener)
    task = Task(loss=reconstruction_loss(loss))
    return train(model, train_x, val_x, settings, task, seed=seed, callbacks=callbacks)


class Recorder(Callback):
    """A callback that keeps every call, and the weights after every epoch."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.starts: list[tuple[int, int]] = []
        self.batches: list[float] = []
        self.records: list[EpochRecord] = []
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_start(self, fit: Fit, epoch: int, n_batches: int) -> None:
        self.starts.append((epoch, n_batches))

    def on_batch_end(self, fit: Fit, running_loss: float) -> None:
        self.batches.append(running_loss)

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        self.records.append(record)
        self.states[record.epoch] = copy.deepcopy(self.model.state_dict())


# -- EarlyStopping ---------------------------------------------------------------------


def records(n: int) -> list[EpochRecord]:
    return [EpochRecord(i + 1, 1.0, 1.0, 0.0) for i in range(n)]


@pytest.mark.parametrize(
    ("done", "best", "patience", "stop"),
    [
        (0, 0, 1, False),
        (1, 1, 1, False),
        (2, 1, 1, True),
        (2, 1, 2, False),
        (3, 1, 2, True),
        (5, 5, 2, False),
        (6, 3, 3, True),
    ],
)
def test_should_stop(done: int, best: int, patience: int, stop: bool) -> None:
    state = TrainState(history=records(done), best_epoch=best)
    assert state.epochs_done == done
    assert EarlyStopping(patience).should_stop(state) is stop


def test_fresh_progress() -> None:
    state = TrainState()
    assert state.epochs_done == 0
    assert state.best_val_loss == math.inf
    assert not EarlyStopping(1).should_stop(state)


# -- the loss -------------------------------------------------------------------------


def test_reconstruction_loss_kinds() -> None:
    target = torch.zeros(2, 1, 2, 2)
    recon = torch.full((2, 1, 2, 2), 0.5)
    assert float(reconstruction_loss("mse")(recon, target)) == pytest.approx(0.25)
    assert float(reconstruction_loss("mae")(recon, target)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        reconstruction_loss("huber")


# -- training -------------------------------------------------------------------------


def test_loss_decreases_over_three_epochs(digits: torch.Tensor) -> None:
    # the default architecture, in the memory format the detector trains it in
    model = new_model().to(memory_format=torch.channels_last)
    recorder = Recorder(model)
    settings = dict(epochs=3, batch_size=64, patience=3)
    progress = run(model, digits[:256], digits[256:], **settings, listener=recorder)
    history = progress.history
    assert [r.epoch for r in history] == [1, 2, 3]
    train_losses = [r.train_loss for r in history]
    val_losses = [r.val_loss for r in history]
    assert train_losses[2] < train_losses[1] < train_losses[0]
    assert val_losses[2] < val_losses[0]
    assert progress.best_epoch == min(range(3), key=lambda i: val_losses[i]) + 1
    assert progress.best_val_loss == min(val_losses)
    assert all(r.seconds >= 0 for r in history)
    # the listener saw every epoch and batch: 256 / 64 = 4 batches per epoch
    assert recorder.starts == [(1, 4), (2, 4), (3, 4)]
    assert len(recorder.batches) == 12
    assert recorder.batches[3] == pytest.approx(train_losses[0])
    assert recorder.records == history
    # the reported validation loss is the model's loss in eval mode
    task = Task(loss=reconstruction_loss("mse"))
    assert loop.evaluate_loss(model, digits[256:], 64, task) == pytest.approx(
        progress.best_val_loss, rel=1e-5
    )


def test_mae_loss_trains_too(digits: torch.Tensor) -> None:
    model = new_model(**SMALL)
    settings = dict(epochs=2, batch_size=32, learning_rate=3e-3, patience=2)
    progress = run(model, digits[:128], digits[256:], loss="mae", **settings)
    assert progress.history[1].train_loss < progress.history[0].train_loss


def test_early_stopping_restores_the_best_weights(
    digits: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scripted validation losses: best at epoch 2, then two worse epochs -> stop after 4
    scripted: Iterator[float] = iter([1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    monkeypatch.setattr(loop, "evaluate_loss", lambda *args: next(scripted))
    model = new_model(**SMALL)
    recorder = Recorder(model)
    settings = dict(epochs=10, batch_size=64, patience=2)
    progress = run(model, digits[:64], digits[256:], **settings, listener=recorder)
    assert progress.epochs_done == 4
    assert [r.val_loss for r in progress.history] == [1.0, 0.5, 0.6, 0.7]
    assert progress.best_epoch == 2
    assert progress.best_val_loss == 0.5
    assert same_weights(model.state_dict(), recorder.states[2])
    assert not same_weights(model.state_dict(), recorder.states[4])


def test_patience_one_stops_after_the_first_worse_epoch(
    digits: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([0.5, 0.6, 0.1])
    monkeypatch.setattr(loop, "evaluate_loss", lambda *args: next(scripted))
    model = new_model(**SMALL)
    recorder = Recorder(model)
    progress = run(
        model,
        digits[:64],
        digits[256:],
        **dict(epochs=5, batch_size=64, patience=1),
        listener=recorder,
    )
    assert progress.epochs_done == 2
    assert progress.best_epoch == 1
    assert same_weights(model.state_dict(), recorder.states[1])


def test_equal_validation_loss_is_not_an_improvement(
    digits: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([0.5, 0.5, 0.5])
    monkeypatch.setattr(loop, "evaluate_loss", lambda *args: next(scripted))
    model = new_model(**SMALL)
    progress = run(model, digits[:64], digits[256:], **dict(epochs=5, batch_size=64, patience=2))
    assert progress.epochs_done == 3
    assert progress.best_epoch == 1


def test_epoch_limit_ends_training_while_improving(
    digits: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([0.5, 0.4, 0.3, 0.2])
    monkeypatch.setattr(loop, "evaluate_loss", lambda *args: next(scripted))
    model = new_model(**SMALL)
    recorder = Recorder(model)
    progress = run(
        model,
        digits[:64],
        digits[256:],
        **dict(epochs=3, batch_size=64, patience=1),
        listener=recorder,
    )
    assert progress.epochs_done == 3
    assert progress.best_epoch == 3
    assert same_weights(model.state_dict(), recorder.states[3])


# -- checkpoints ----------------------------------------------------------------------


def test_resume_gives_exactly_the_uninterrupted_weights(
    digits: torch.Tensor, tmp_path: Path
) -> None:
    train_x, val_x = digits[:128], digits[256:]
    settings: dict[str, Any] = dict(epochs=3, batch_size=32, patience=5, seed=4)

    straight = new_model(**SMALL)
    straight_progress = run(straight, train_x, val_x, **settings)

    first = new_model(**SMALL)
    run(
        first,
        train_x,
        val_x,
        **{**settings, "epochs": 1},
        checkpoint_dir=tmp_path,
    )
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]

    resumed = new_model(seed=123, **SMALL)  # other initial weights: all must come from the file
    resumed_progress = run(
        resumed, train_x, val_x, **settings, checkpoint_dir=tmp_path, resume=True
    )
    assert [r.epoch for r in resumed_progress.history] == [1, 2, 3]
    assert [(r.train_loss, r.val_loss) for r in resumed_progress.history] == [
        (r.train_loss, r.val_loss) for r in straight_progress.history
    ]
    assert resumed_progress.best_epoch == straight_progress.best_epoch
    assert same_weights(resumed.state_dict(), straight.state_dict())


def test_resume_of_a_finished_run_trains_no_more(digits: torch.Tensor, tmp_path: Path) -> None:
    settings = dict(epochs=2, batch_size=32, patience=5)
    done = new_model(**SMALL)
    run(done, digits[:64], digits[256:], **settings, checkpoint_dir=tmp_path)
    again = new_model(seed=9, **SMALL)
    recorder = Recorder(again)
    progress = run(
        again,
        digits[:64],
        digits[256:],
        **settings,
        checkpoint_dir=tmp_path,
        resume=True,
        listener=recorder,
    )
    assert progress.epochs_done == 2
    assert recorder.starts == []
    assert same_weights(again.state_dict(), done.state_dict())


def test_resume_without_a_checkpoint_starts_from_scratch(
    digits: torch.Tensor, tmp_path: Path
) -> None:
    model = new_model(**SMALL)
    progress = run(
        model,
        digits[:64],
        digits[256:],
        **dict(epochs=1, batch_size=32),
        checkpoint_dir=tmp_path,
        resume=True,
    )
    assert [r.epoch for r in progress.history] == [1]
    assert (tmp_path / CHECKPOINT_NAME).is_file()


def test_without_resume_an_old_checkpoint_is_ignored(digits: torch.Tensor, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    model = new_model(**SMALL)
    progress = run(
        model,
        digits[:64],
        digits[256:],
        **dict(epochs=1, batch_size=32),
        checkpoint_dir=tmp_path,
    )
    assert progress.epochs_done == 1
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() != b"not a checkpoint"


def test_corrupt_checkpoint_is_a_user_error(digits: torch.Tensor, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UserError, match="cannot resume from checkpoint"):
        run(
            new_model(**SMALL),
            digits[:64],
            digits[256:],
            **dict(epochs=1),
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_truncated_checkpoint_is_a_user_error(digits: torch.Tensor, tmp_path: Path) -> None:
    run(
        new_model(**SMALL),
        digits[:64],
        digits[256:],
        **dict(epochs=1, batch_size=32),
        checkpoint_dir=tmp_path,
    )
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot resume from checkpoint"):
        run(
            new_model(**SMALL),
            digits[:64],
            digits[256:],
            **dict(epochs=2),
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_checkpoint_of_another_architecture_is_a_user_error(
    digits: torch.Tensor, tmp_path: Path
) -> None:
    run(
        new_model(**SMALL),
        digits[:64],
        digits[256:],
        **dict(epochs=1, batch_size=32),
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(UserError, match="cannot resume from checkpoint"):
        run(
            new_model(channels=[8]),
            digits[:64],
            digits[256:],
            **dict(epochs=2),
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_bce_loss_is_binary_cross_entropy_on_pixels() -> None:
    target = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    output = torch.tensor([[[[0.1, 0.9], [0.5, 0.5]]]])
    expected = (
        -(
            torch.log(torch.tensor(0.9)) * 2
            + torch.log(torch.tensor(0.5))
            + (0.25 * torch.log(torch.tensor(0.5)) + 0.75 * torch.log(torch.tensor(0.5)))
        )
        / 4
    )
    assert torch.isclose(reconstruction_loss("bce")(output, target), expected)


def test_conv_keras_collapses_under_mse_but_learns_with_bce(mnist: object) -> None:
    """The finding behind the bce option: without batch-norm, conv-keras trained with MSE
    falls into an all-black output (loss stuck near the mean squared pixel); BCE escapes."""
    images = to_image_tensor(mnist.train_images[:1536])  # type: ignore[attr-defined]
    train, val = images[:1280], images[1280:]
    errors = {}
    for loss in ("mse", "bce"):
        torch.manual_seed(0)
        model = build_model("conv-keras", (1, 28, 28))
        settings = dict(epochs=3, batch_size=64, learning_rate=1e-3, loss=loss)
        loss_kind = settings.pop("loss")
        run(model, train, val, loss=str(loss_kind), **{**settings, "patience": 3})
        errors[loss] = loop.evaluate_loss(model, val, 64, Task(loss=reconstruction_loss("mse")))
    mean_square_pixel = float(val.square().mean())
    assert errors["mse"] > 0.8 * mean_square_pixel  # about what an all-black output scores
    assert errors["bce"] < 0.3 * mean_square_pixel


def test_cosine_schedule_falls_to_zero_over_all_steps() -> None:
    from ae_anomaly.nn.loop import _set_cosine_rate

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    settings = TrainingParams(epochs=2, learning_rate=0.01, schedule="cosine")
    rates = []
    for step in range(8):  # 2 epochs of 4 batches
        _set_cosine_rate(optimizer, settings, step, n_batches=4)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.01)
    assert rates[4] == pytest.approx(0.005)  # half-way: half the rate
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_cosine_schedule_trains_a_model(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_model("conv-dense", SHAPE)
    settings = dict(epochs=2, batch_size=16, schedule="cosine", patience=5)
    progress = run(model, digits[:256], digits[256:], **settings)
    assert len(progress.history) == 2
    assert progress.history[-1].train_loss < progress.history[0].train_loss


def test_weight_decay_shrinks_the_weights_and_defaults_to_none(digits: torch.Tensor) -> None:
    def trained(**decay: float) -> nn.Module:
        torch.manual_seed(0)
        model = build_model("conv-dense", SHAPE)
        settings = dict(epochs=2, batch_size=32, patience=5, **decay)
        run(model, digits[:128], digits[256:], **settings)
        return model

    def weight_norm(model: nn.Module) -> float:  # of the conv and dense weights, not batch-norm's
        return sum(float(p.detach().square().sum()) for p in model.parameters() if p.dim() > 1)

    plain, none, decayed = trained(), trained(weight_decay=0.0), trained(weight_decay=0.5)
    assert same_weights(plain.state_dict(), none.state_dict())
    # Adam adds weight_decay * w to every gradient: the weights end smaller (by 11% here).
    assert weight_norm(decayed) < 0.95 * weight_norm(plain)


# -- the undertrained check -----------------------------------------------------------


def check_of(val_losses: list[float], steps_per_epoch: int, stop: bool = False) -> list[str]:
    check = UndertrainedCheck()
    state = TrainState(
        history=[EpochRecord(i + 1, v, v, 0.0) for i, v in enumerate(val_losses)], stop=stop
    )
    fit = Fit(torch.nn.Linear(1, 1), None, state)  # type: ignore[arg-type]
    check.on_fit_start(fit)
    check.on_epoch_start(fit, len(val_losses), steps_per_epoch)
    check.on_fit_end(fit)
    return check.messages


def test_undertrained_check_names_a_fit_still_improving_fast_or_with_few_steps() -> None:
    assert "fell 25% in the last epoch" in check_of([1.0, 0.75], 400)[0]
    assert check_of([1.0, 0.97], 400) == []  # the main job's full run ends about like this
    assert "only 120 optimisation steps" in check_of([1.0, 0.99], 60)[0]
    assert check_of([1.0, 0.5], 60, stop=True) == []  # early stopping ended it: it plateaued


def test_an_undertrained_detector_warns_and_says_so_in_its_summary(digits: torch.Tensor) -> None:
    from ae_anomaly import AutoencoderDetector
    from ae_anomaly.errors import UndertrainedWarning

    detector = AutoencoderDetector(model_args=SMALL, epochs=2, batch_size=64, device="cpu")
    with pytest.warns(UndertrainedWarning, match="undertrained"):
        detector.fit(digits)
    assert detector.training_summary()["warnings"] == detector.training_warnings_ != []


def test_early_stopping_waits_for_its_minimum_epochs() -> None:
    state = TrainState(history=records(6), best_epoch=1)
    assert EarlyStopping(2).should_stop(state)
    assert not EarlyStopping(2, min_epochs=10).should_stop(state)


def test_a_detector_with_unset_epochs_trains_at_least_the_minimum_steps(
    digits: torch.Tensor,
) -> None:
    """96 images (86 after the held-out ones) in batches of 32: 3 steps an epoch, so 334
    epochs make the 1,000 steps, and early stopping (patience 2 epochs of 3 steps) may not
    end the fit before them."""
    from ae_anomaly import AutoencoderDetector

    detector = AutoencoderDetector(model_args=SMALL, batch_size=32, device="cpu")
    detector.fit(digits[:96])
    assert AUTO_MIN_STEPS == 1000
    assert len(detector.history_) == 334
    explicit = AutoencoderDetector(model_args=SMALL, batch_size=32, epochs=4, device="cpu")
    assert len(explicit.fit(digits[:96]).history_) <= 4  # explicit settings win


def test_a_last_batch_of_one_image_is_left_out_so_a_dense_code_trains(
    digits: torch.Tensor,
) -> None:
    """65 images in batches of 64 would end each epoch with one image, which the batch-norm
    of conv-dense's dense code cannot normalise; that image waits for another epoch."""
    torch.manual_seed(0)
    model = build_model("conv-dense", SHAPE)
    recorder = Recorder(model)
    run(model, digits[:65], digits[256:], epochs=2, batch_size=64, patience=2, listener=recorder)
    assert recorder.starts == [(1, 1), (2, 1)]


def test_repeats_draw_each_image_that_often_per_epoch(digits: torch.Tensor) -> None:
    """Patch mode's epochs: each image drawn ``repeats`` times (another crop each time)."""
    seen: list[int] = []

    def count(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(len(batch))
        return batch

    task = Task(loss=reconstruction_loss("mse"), augment=count, repeats=3)
    params = TrainingParams(epochs=1, batch_size=32)
    train(new_model(**SMALL), digits[:40], digits[256:], params, task)
    assert sum(seen) == 120 and len(seen) == 4


def test_a_checkpoint_of_another_model_is_refused_in_one_short_sentence(
    digits: torch.Tensor, tmp_path: Path
) -> None:
    """load_state_dict's own message lists every key (kilobytes); the user needs the reason."""
    run(new_model(), digits[:64], digits[256:], epochs=1, batch_size=32, checkpoint_dir=tmp_path)
    other = build_model("conv-dense", SHAPE)
    optimizer = torch.optim.Adam(other.parameters())
    with pytest.raises(UserError) as caught:
        load_checkpoint(tmp_path, other, optimizer)
    message = str(caught.value)
    assert "not those of this run's model" in message and "--overwrite" in message
    assert "\n" not in message and len(message) < 400


# -- the accelerator path, run on the CPU ------------------------------------------------


def test_bf16_autocast_trains_like_float32_and_keeps_float32_weights(digits: torch.Tensor) -> None:
    settings = dict(epochs=2, batch_size=64, patience=2)
    full = run(new_model(), digits[:256], digits[256:], **settings)
    model = new_model()
    half = run(model, digits[:256], digits[256:], precision="bf16", **settings)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert half.history[1].train_loss < half.history[0].train_loss
    # bfloat16 keeps 8 bits of mantissa: the same course, not the same digits
    for a, b in zip(full.history, half.history, strict=True):
        assert b.val_loss == pytest.approx(a.val_loss, rel=0.05)
    assert [r.val_loss for r in full.history] != [r.val_loss for r in half.history]


def test_images_kept_on_the_device_train_exactly_as_images_read_per_batch(
    digits: torch.Tensor,
) -> None:
    stored = (digits * 255).round().to(torch.uint8)
    lazy = as_lazy_images(stored)
    resident = lazy.subset(torch.arange(256)).resident("cpu")
    assert isinstance(resident.store, torch.Tensor) and resident.store.dtype == torch.uint8
    settings = dict(epochs=2, batch_size=64, patience=2)
    per_batch, kept = new_model(), new_model()
    run(per_batch, lazy.subset(torch.arange(256)), lazy.subset(torch.arange(256, 320)), **settings)
    run(kept, resident, lazy.subset(torch.arange(256, 320)).resident("cpu"), **settings)
    assert same_weights(per_batch.state_dict(), kept.state_dict())
