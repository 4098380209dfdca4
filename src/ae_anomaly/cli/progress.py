"""Progress bars: one per training epoch with the running loss (a training callback), and a
plain count of items done."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ae_anomaly.nn.callbacks import Callback, EpochRecord, Fit


class RichProgress(Callback):
    """A training callback that shows a rich bar per epoch; use as a context manager.

    An ensemble's bars say which member is training.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[label]}{task.fields[member]}epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self.label = ""  # shown before "epoch", e.g. the model's name in a comparison

    def __enter__(self) -> RichProgress:
        # The bar starts with the first epoch, so that an error raised while
        # the data is read is not preceded by an empty progress display.
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:  # stopping a bar never started prints a blank line
            self._progress.stop()

    def on_epoch_start(self, fit: Fit, epoch: int, n_batches: int) -> None:
        if self._task is None:
            self._progress.start()
        member = f"member {fit.member + 1}/{fit.members} " if fit.members > 1 else ""
        self._task = self._progress.add_task(
            "train", total=n_batches, epoch=epoch, loss="-", label=self.label, member=member
        )

    def on_batch_end(self, fit: Fit, running_loss: float) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"{running_loss:.5f}")

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        if self._task is not None:
            self._progress.update(
                self._task, loss=f"{record.train_loss:.5f}  val {record.val_loss:.5f}"
            )


class CountProgress:
    """A bar counting items done out of a known total (e.g. images scored); a context manager."""

    def __init__(self, console: Console, total: int | None, description: str) -> None:
        self._progress = Progress(
            TextColumn(description),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> CountProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def advance(self, count: int) -> None:
        self._progress.update(self._task, advance=count)
