"""The experiment runner: one call from a config to a finished output folder.

source -> scenario split -> detector fit -> scores -> threshold -> metrics -> report.
Scenarios with a labelled test set (corruptions, one-class) are evaluated here;
the unsupervised scenario's ranking lives in ranking.py. The CLI is a thin shell
around ``run_experiment``.
"""

from __future__ import annotations

from collections.abc import Sequence

import csv
import io
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ae_anomaly.config import DataConfig, RunConfig, read_yaml, validate_config
from ae_anomaly.data.folder import FolderDataset, load_image_source
from ae_anomaly.scenarios.splits import (
    ScenarioData,
    TestSet,
    corruptions_scenario,
    folder_scenario,
    labelled_test,
    one_class_scenario,
    unsupervised_scenario,
)
from ae_anomaly.data.sources import dataset_names, load_dataset
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.errors import UserError
from ae_anomaly.params import ScoreParams, group_fields
from ae_anomaly.report.metrics import evaluate
from ae_anomaly.fileio import write_json, write_text, write_yaml
from ae_anomaly.scenarios.guard import CLASSIFIER_DIR, guard_classifier, write_guard
from ae_anomaly.nn.models import build_model
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder
from ae_anomaly.report.ranking import write_ranking
from ae_anomaly.report.page import Examples, write_report
from ae_anomaly.scores.thresholds import parse_threshold
from ae_anomaly.nn.callbacks import Callback

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
    """Run the experiment ``config`` describes and leave every artefact in ``out``."""
    started = time.perf_counter()
    folder = RunFolder(out)
    # Everything that can be refused cheaply is refused before the data is read.
    folder.check(overwrite=overwrite, resume=resume)
    if resume:
        check_resumable(folder, config)
    data = prepare_data(config)
    if data.test is None and config.detector.threshold_data == "test-normal":
        raise UserError(
            f"threshold_data test-normal needs normal test images; {config.data.dataset} "
            "has no test/normal/ folder"
        )
    # Build the network once before any folder exists, so an unusable model or
    # image size fails without leaving anything behind.
    build_model(config.model, tuple(data.train.shape[1:]), **config.model_args)
    resuming = folder.prepare(overwrite=overwrite, resume=resume)
    write_yaml(folder.work / CONFIG_FILE, config.to_dict())
    checkpoint_dir = folder.work / CHECKPOINT_DIR
    try:
        # The classifier first: a saved one that does not fit fails before any training.
        classifier = (
            guard_classifier(config, data, folder.work, callbacks)
            if config.scenario == "guard"
            else None
        )
        detector = detector_from_config(config).fit(
            data.train,
            validation=data.val,
            checkpoint_dir=checkpoint_dir,
            resume=resuming,
            callbacks=callbacks,
        )
    except BaseException:
        # Without a checkpoint there is nothing to resume: leave no folder behind.
        if not checkpoint_dir.exists() and not (folder.work / CLASSIFIER_DIR).exists():
            folder.discard()
        raise
    if classifier is not None:
        metrics = write_guard(folder.work, config, data, detector, classifier)
    elif data.test is not None:
        metrics = write_artefacts(folder.work, config, data, detector)
    else:
        metrics = write_ranking(folder.work, config, data, detector)
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
    if config.scenario == "folder":
        return folder_scenario(load_own_images(config.data), config.data, config.seed)
    dataset = load_dataset(config.data.dataset, config.data.data_dir)
    if config.scenario == "one-class":
        return one_class_scenario(dataset, config.data, config.seed)
    if config.scenario == "unsupervised":
        return unsupervised_scenario(dataset, config.data, config.seed)
    # corruptions, and guard, which puts a classifier behind the same test set
    return corruptions_scenario(dataset, config.data, config.corruptions, config.seed)


def load_own_images(data: DataConfig) -> FolderDataset:
    """The folder or array file named by ``data.dataset``, read as the config says."""
    path = Path(data.dataset).expanduser()
    if not path.exists():
        raise UserError(
            f"unknown dataset {data.dataset!r}: not one of {', '.join(dataset_names())}, "
            f"and there is no folder or file at {path}"
        )
    return load_image_source(
        path, size=data.image_size, channels=data.channels, on_error=data.on_unreadable
    )


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


def score_test_set(
    detector: AutoencoderDetector,
    test: TestSet,
    angle_bands: list[float],
    kind_order: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-image scores of the test set and the metrics at the detector's threshold."""
    scores = detector.decision_function(test.images)
    return scores, evaluate_scores(
        scores, test, float(detector.threshold_), angle_bands, kind_order
    )


def evaluate_scores(
    scores: np.ndarray,
    test: TestSet,
    threshold: float,
    angle_bands: list[float],
    kind_order: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    return evaluate(
        scores,
        test.labels,
        test.kinds,
        test.noise_std,
        test.angle,
        threshold,
        angle_bands=angle_bands,
        kind_order=kind_order,
    )


def write_artefacts(
    folder: Path, config: RunConfig, data: ScenarioData, detector: AutoencoderDetector
) -> dict[str, Any]:
    """Score the test set; write the detector, scores.csv and the report; return the metrics."""
    test = labelled_test(data)
    bands = config.corruptions.angle_bands
    scores = detector.decision_function(test.images)
    if config.detector.threshold_data == "test-normal":
        # Reproduces projects that fitted the threshold on the normal *test* images;
        # the metrics say so, since it uses test labels.
        detector.threshold_ = parse_threshold(config.detector.threshold).fit(
            scores[test.labels == 0]
        )
    threshold = float(detector.threshold_)
    metrics = evaluate_scores(scores, test, threshold, bands, data.kind_order)
    metrics["threshold_rule"] = config.detector.threshold
    metrics["threshold_data"] = config.detector.threshold_data
    metrics["training"] = detector.training_summary()
    metrics["detector"] = detector.description()
    detector.save(folder / "detector")
    corruption_columns = config.scenario == "corruptions"
    write_text(folder / "scores.csv", scores_csv(test, scores, threshold, corruption_columns))
    write_report(
        folder,
        title=f"ae-anomaly: {config.scenario} on {config.data.dataset}",
        metrics=metrics,
        history=detector.history_,
        scores=scores,
        labels=test.labels,
        kinds=test.kinds,
        threshold=threshold,
        examples=most_anomalous(detector, test, scores, config.report.top_k),
        config_text=yaml.safe_dump(config.to_dict(), sort_keys=False),
    )
    return metrics


def severity(test: TestSet) -> np.ndarray:
    """One number per image: the noise std where noise was added, else |angle| in degrees."""
    return np.where(test.noise_std > 0, test.noise_std, np.abs(test.angle))


def scores_csv(
    test: TestSet, scores: np.ndarray, threshold: float, corruption_columns: bool = True
) -> str:
    """One row per test image; ``corruption_columns`` adds severity, noise_std and angle."""
    columns: dict[str, Any] = {
        "index": range(len(scores)),
        "source_index": test.source_index,
        "class": test.source_label,
        "kind": test.kinds,
    }
    if test.paths is not None:
        columns["path"] = test.paths
    if corruption_columns:
        columns |= {
            "severity": [f"{v:g}" for v in severity(test)],
            "noise_std": [f"{v:g}" for v in test.noise_std],
            # +0.0 turns a rounded -0.00 into 0.00.
            "angle": [f"{round(v, 2) + 0.0:.2f}" for v in test.angle],
        }
    columns |= {
        "label": test.labels,
        # Scores at full float32 precision, so that predicted == (score > threshold)
        # holds on the written values too.
        "score": [f"{v:.9g}" for v in scores],
        "predicted": (scores > threshold).astype(int),
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return buffer.getvalue()


def most_anomalous(
    detector: AutoencoderDetector, test: TestSet, scores: np.ndarray, k: int
) -> Examples:
    """The k highest-scoring test images with their reconstructions and error maps."""
    top = np.argsort(-scores, kind="stable")[:k]
    images = test.images[top]
    reconstructions, errors = detector.reconstruct(images)
    captions = [f"#{i} {test.describe(int(i))}, score {scores[i]:.4f}" for i in top]
    return Examples(images.numpy(), reconstructions, errors, captions)
