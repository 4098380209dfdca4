"""The experiment runner: one call from a config to a finished output folder.

source -> scenario split -> detector fit -> scores -> threshold -> metrics -> report.
What differs between scenarios is theirs (scenarios/): the split, a step before
training, the results they write (by default runs/results.py, or a ranking). The
CLI is a thin shell around ``run_experiment``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ae_anomaly.config import RunConfig, read_yaml, validate_config
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_json, write_yaml
from ae_anomaly.nn import distributed
from ae_anomaly.nn.callbacks import Callback
from ae_anomaly.nn.device import torch_threads
from ae_anomaly.nn.patches import patch_size_for
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.params import ScoreParams, group_fields
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder
from ae_anomaly.scenarios import get_scenario
from ae_anomaly.scenarios.base import ScenarioData

CHECKPOINT_DIR = "checkpoint"
# Fields a resumed run may change: they do not alter what was computed so far.
RESUMABLE_CHANGES = {("training", "epochs"), ("device",)}


@dataclass(frozen=True)
class RunResult:
    folder: Path
    metrics: dict[str, Any]
    seconds: float


def run_experiment(
    config: RunConfig,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Run the experiment ``config`` describes and leave every artefact in ``out``.

    It computes with ``config.threads`` CPU threads: the number given, else the one a
    resumed run started with, else torch's default; the config saved in ``out`` records
    it, so a rerun from that file repeats the scores exactly."""
    threads = config.threads or (_saved_threads(out) if resume else None)
    config = config.model_copy(update={"threads": threads or torch.get_num_threads()})
    # Started by torchrun: one of several processes training one detector (see
    # nn/distributed.py); rank 0 alone writes the run folder.
    with torch_threads(config.threads or 1), distributed.session(config.device):
        return _run(config, out, overwrite=overwrite, resume=resume, callbacks=callbacks)


def _saved_threads(out: Path) -> int | None:
    """The thread count an interrupted run in ``out`` recorded, if it did."""
    saved = RunFolder(out).work / CONFIG_FILE
    if not saved.is_file():
        return None
    threads = read_yaml(saved).get("threads")
    return threads if isinstance(threads, int) and threads >= 1 else None


def _run(
    config: RunConfig,
    out: Path,
    *,
    overwrite: bool,
    resume: bool,
    callbacks: Sequence[Callback],
) -> RunResult:
    started = time.perf_counter()
    folder = RunFolder(out)

    def check() -> None:
        folder.check(overwrite=overwrite, resume=resume)
        if resume:
            check_resumable(folder, config)

    # Everything that can be refused cheaply is refused before the data is read.
    distributed.from_main(check)
    data = distributed.main_first(lambda: prepare_data(config))
    if data.test is None and config.detector.threshold_data == "test-normal":
        raise UserError(
            f"threshold_data test-normal needs normal test images; {config.data.dataset} "
            "has no test/normal/ folder"
        )
    # Build the network once before any folder exists, so an unusable model or
    # image size fails without leaving anything behind. (A texture the detector puts in
    # patch mode below AUTO_PATCH_SIDE gets a smaller network than this whole-image one.)
    shape = tuple(int(d) for d in data.train.shape[1:])
    patch = patch_size_for(config.detector.patch, shape[1], shape[2])
    build_network(
        config.model, shape if patch is None else (shape[0], patch, patch), **config.model_args
    )
    resuming = distributed.from_main(lambda: folder.prepare(overwrite=overwrite, resume=resume))
    if not distributed.is_main():
        # The other ranks train with rank 0, which writes everything.
        detector_from_config(config).fit(
            data.train,
            validation=data.val,
            checkpoint_dir=folder.work / CHECKPOINT_DIR,  # read by rank 0 alone
            resume=resuming,
        )
        return RunResult(folder.work, {}, time.perf_counter() - started)
    try:
        return _train_and_write(config, data, folder, resuming, callbacks, started)
    except OSError as exc:  # a full disk, a folder made read-only half-way
        raise _stranded(exc, folder, out) from None


def _stranded(exc: OSError, folder: RunFolder, out: Path) -> UserError:
    """One sentence for a run that could not write: what failed, and what the user can do
    with what is left (resume from the checkpoint, or nothing: the folder is removed)."""
    reason = f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or str(exc))
    if (folder.work / CHECKPOINT_DIR).is_dir():
        return UserError(
            f"cannot write the run in {folder.work} ({reason}); make room, then continue it "
            f"with: ae-anomaly run --resume --out {out}"
        )
    folder.discard()
    return UserError(f"cannot write the run in {folder.work} ({reason}); nothing was kept")


def _train_and_write(
    config: RunConfig,
    data: ScenarioData,
    folder: RunFolder,
    resuming: bool,
    callbacks: Sequence[Callback],
    started: float,
) -> RunResult:
    """Train (or resume) in ``folder``, then write the results and finish it."""
    write_yaml(folder.work / CONFIG_FILE, config.to_dict())
    checkpoint_dir = folder.work / CHECKPOINT_DIR
    scenario = get_scenario(config.scenario)
    try:
        # The scenario's step first: e.g. a saved classifier that does not fit the data
        # fails before any training.
        prepared = scenario.prepare(config, data, folder.work, callbacks)
        detector = detector_from_config(config).fit(
            data.train,
            validation=data.val,
            checkpoint_dir=checkpoint_dir,
            resume=resuming,
            callbacks=callbacks,
        )
    except BaseException:
        # With nothing but the config written there is nothing to resume: leave no
        # folder behind.
        if all(path.name == CONFIG_FILE for path in folder.work.iterdir()):
            folder.discard()
        raise
    metrics = scenario.write_results(folder.work, config, data, detector, prepared)
    metrics["skipped_files"] = list(data.skipped)
    metrics["seconds"] = time.perf_counter() - started
    write_json(folder.work / "metrics.json", metrics)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return RunResult(folder.finish(), metrics, metrics["seconds"])


def detector_from_config(config: RunConfig) -> AutoencoderDetector:
    """The untrained detector a RunConfig describes: its parameter groups, as they are."""
    score = {name: getattr(config.detector, name) for name in group_fields(ScoreParams)}
    return AutoencoderDetector(
        model=config.model,
        model_args=config.model_args,
        **score,
        **asdict(config.training),
        val_fraction=config.data.val_fraction,
        device=config.device,
        seed=config.seed,
    )


def prepare_data(config: RunConfig) -> ScenarioData:
    """The split of the config's scenario."""
    return get_scenario(config.scenario).split(config)


def check_resumable(folder: RunFolder, config: RunConfig) -> None:
    """Refuse to resume with a config that would change what was already computed."""
    saved_path = folder.work / CONFIG_FILE
    if not saved_path.exists():
        return  # RunFolder.prepare explains what is missing
    # Validated, so that a field added since the run started counts at its default.
    saved = _flatten(validate_config(read_yaml(saved_path)).to_dict())
    new = _flatten(config.to_dict())
    changed = sorted(k for k in saved.keys() | new.keys() if saved.get(k) != new.get(k))
    resumable = set(RESUMABLE_CHANGES)
    if saved.get(("training", "schedule")) == "cosine":
        # The cosine rate of every step depends on the total number of epochs.
        resumable.discard(("training", "epochs"))
    blocking = [".".join(k) for k in changed if k not in resumable]
    if blocking:
        raise UserError(
            f"cannot resume {folder.work} with a different config ({', '.join(blocking)} "
            "changed); only the number of epochs (not with a cosine schedule) and the device "
            "may change"
        )


def _flatten(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "mix" and key != "model_args":
            flat |= _flatten(value, (*prefix, key))
        else:
            flat[(*prefix, key)] = value
    return flat
