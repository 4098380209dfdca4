"""The output folder of a run: written under a temporary name, renamed when complete.

A run writes into ``<out>.incomplete`` and renames it to ``<out>`` only at the
end, so ``<out>`` is either a finished run or absent. An interrupted run
leaves ``<out>.incomplete`` behind with its checkpoint, which ``--resume``
picks up.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ae_anomaly.errors import UserError

INCOMPLETE_SUFFIX = ".incomplete"


@dataclass(frozen=True)
class RunFolder:
    final: Path

    @property
    def work(self) -> Path:
        """Where the run writes until it is complete."""
        return self.final.with_name(self.final.name + INCOMPLETE_SUFFIX)

    def prepare(self, *, overwrite: bool, resume: bool) -> bool:
        """Create or reuse the work folder; return True when resuming an interrupted run."""
        if self.final.exists() and not (overwrite or resume):
            raise UserError(
                f"output folder {self.final} already exists; pass --overwrite to replace it "
                "or --out to choose another"
            )
        if resume:
            if self.work.is_dir():
                return True
            if self.final.exists():
                raise UserError(f"the run in {self.final} is already complete; nothing to resume")
            raise UserError(f"there is no interrupted run to resume at {self.work}")
        if self.work.exists():
            if not overwrite:
                raise UserError(
                    f"an interrupted run is in {self.work}; pass --resume to continue it "
                    "or --overwrite to start again"
                )
            shutil.rmtree(self.work)
        self._make_work_folder()
        return False

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
        trash = self.final.with_name(self.final.name + ".old")
        if self.final.exists():
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.final, trash)
        os.replace(self.work, self.final)
        shutil.rmtree(trash, ignore_errors=True)
        return self.final
