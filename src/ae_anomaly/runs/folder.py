"""The output folder of a run: written under a temporary name, renamed when complete.

A run writes into ``<out>.incomplete`` and renames it to ``<out>`` only at the
end, so ``<out>`` is either a finished run or absent. An interrupted run
leaves ``<out>.incomplete`` behind with its checkpoint, which ``--resume``
picks up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ae_anomaly.errors import UserError

INCOMPLETE_SUFFIX = ".incomplete"
# Every run writes its resolved config first; a folder holding this file was
# written by a run, and only such folders (or empty ones) may be replaced by
# --overwrite.
CONFIG_FILE = "config.yaml"


def _is_run_folder(path: Path) -> bool:
    """True for an empty folder or one holding a run's config: safe to replace."""
    if not path.is_dir():
        return False
    return (path / CONFIG_FILE).is_file() or not any(path.iterdir())


@dataclass(frozen=True)
class RunFolder:
    final: Path

    def __post_init__(self) -> None:
        # An absolute path has a real last component even for "." or "..".
        object.__setattr__(self, "final", Path(os.path.abspath(self.final)))

    @property
    def work(self) -> Path:
        """Where the run writes until it is complete."""
        return self.final.with_name(self.final.name + INCOMPLETE_SUFFIX)

    def prepare(self, *, overwrite: bool, resume: bool) -> bool:
        """Create or reuse the work folder; return True when resuming an interrupted run."""
        if self.check(overwrite=overwrite, resume=resume):
            return True
        if self.work.exists():  # an interrupted run that --overwrite replaces
            shutil.rmtree(self.work)
        self._make_work_folder()
        return False

    def check(self, *, overwrite: bool, resume: bool) -> bool:
        """Say whether the run can go ahead, without touching anything; True = resuming."""
        if self.final.exists() and not (overwrite or resume):
            raise UserError(
                f"output folder {self.final} already exists; pass --overwrite to replace it "
                "or --out to choose another"
            )
        if self.final.exists() and overwrite and not self._is_replaceable():
            raise UserError(
                f"refusing to overwrite {self.final}: it is not an empty folder or the "
                "output of an earlier run"
            )
        if resume:
            if self.work.is_dir():
                return True
            if self.final.exists():
                raise UserError(f"the run in {self.final} is already complete; nothing to resume")
            raise UserError(f"there is no interrupted run to resume at {self.work}")
        if self.work.exists() and overwrite and not _is_run_folder(self.work):
            raise UserError(
                f"refusing to overwrite {self.work}: it is not an interrupted run's folder"
            )
        if self.work.exists() and not overwrite:
            raise UserError(
                f"an interrupted run is in {self.work}; pass --resume to continue it "
                "or --overwrite to start again"
            )
        return False

    def _is_replaceable(self) -> bool:
        return _is_run_folder(self.final)

    def discard(self) -> None:
        """Remove the work folder of a run that failed before it could be resumed."""
        shutil.rmtree(self.work, ignore_errors=True)

    def _make_work_folder(self) -> None:
        try:
            self.work.mkdir(parents=True)
        except OSError as exc:
            raise UserError(
                f"cannot create output folder {self.work}: {exc.strerror or exc}"
            ) from None
        if not os.access(self.work, os.W_OK):
            raise UserError(f"output folder {self.work} is not writable")

    def finish(self) -> Path:
        """Swap the complete work folder into place (replacing an old run, if any)."""
        if not self.final.exists():
            os.replace(self.work, self.final)
            return self.final
        # A fresh empty folder to move the old run into: renaming a folder onto
        # an empty one is allowed, and no folder of the user's is ever reused.
        trash = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
        os.replace(self.final, trash)
        os.replace(self.work, self.final)
        shutil.rmtree(trash, ignore_errors=True)
        return self.final
