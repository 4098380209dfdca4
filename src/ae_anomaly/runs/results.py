"""A labelled run's results: score the test set, evaluate it, write the detector,
scores.csv and the report.

The metrics are the same for every scenario with a labelled test set (report/metrics.py)
plus the groups the scenario adds (Scenario.groups); scores.csv has the scenario's
extra columns. Scenarios without a test set are ranked instead (report/ranking.py).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from ae_anomaly.fileio import write_text
from ae_anomaly.report.figures import Examples
from ae_anomaly.report.metrics import evaluate
from ae_anomaly.report.page import write_report
from ae_anomaly.report.ranking import write_ranking
from ae_anomaly.scenarios import get_scenario
from ae_anomaly.scenarios.base import ScenarioData, TestSet
from ae_anomaly.scenarios.splits import labelled_test
from ae_anomaly.scores.thresholds import parse_threshold

if TYPE_CHECKING:
    from ae_anomaly.config import RunConfig
    from ae_anomaly.detector.estimator import AutoencoderDetector

__all__ = ["evaluate_test", "write_labelled_results", "write_ranking"]


def evaluate_test(
    scores: np.ndarray,
    test: TestSet,
    threshold: float,
    config: RunConfig,
    kind_order: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The metrics of ``scores`` on ``test`` at ``threshold``, with the scenario's groups."""
    groups = get_scenario(config.scenario).group_masks(test, config)
    return evaluate(
        scores, test.labels, test.kinds, threshold, kind_order=kind_order, groups=groups
    )


def write_labelled_results(
    folder: Path, config: RunConfig, data: ScenarioData, detector: AutoencoderDetector
) -> dict[str, Any]:
    """Score the test set; write the detector, scores.csv and the report; return the metrics."""
    test = labelled_test(data)
    scores = detector.decision_function(test.images)
    if config.detector.threshold_data == "test-normal":
        # Reproduces projects that fitted the threshold on the normal *test* images;
        # the metrics say so, since it uses test labels.
        detector.threshold_ = parse_threshold(config.detector.threshold).fit(
            scores[test.labels == 0]
        )
    threshold = float(detector.threshold_)
    metrics = evaluate_test(scores, test, threshold, config, data.kind_order)
    scenario = get_scenario(config.scenario)
    metrics |= scenario.extra_metrics(test, config, detector)
    metrics["threshold_rule"] = config.detector.threshold
    metrics["threshold_data"] = config.detector.threshold_data
    metrics["training"] = detector.training_summary()
    metrics["detector"] = detector.description()
    detector.save(folder / "detector")
    columns = scenario.csv_columns(test)
    write_text(folder / "scores.csv", scores_csv(test, scores, threshold, columns))
    write_report(
        folder,
        title=f"ae-anomaly: {config.scenario} on {config.data.dataset}",
        metrics=metrics,
        groups=scenario.groups,
        extra_plots=scenario.report_plots(metrics, test, detector, scores),
        extra_sections=scenario.report_sections(metrics),
        history=detector.history_,
        scores=scores,
        labels=test.labels,
        kinds=test.kinds,
        threshold=threshold,
        examples=most_anomalous(detector, test, scores, config.report.top_k),
        config_text=yaml.safe_dump(config.to_dict(), sort_keys=False),
    )
    return metrics


def scores_csv(
    test: TestSet,
    scores: np.ndarray,
    threshold: float,
    extra_columns: dict[str, Any] | None = None,
) -> str:
    """One row per test image; ``extra_columns`` (the scenario's) go after the kind."""
    columns: dict[str, Any] = {
        "index": range(len(scores)),
        "source_index": test.source_index,
        "class": test.source_label,
        "kind": test.kinds,
    }
    if test.paths is not None:
        columns["path"] = test.paths
    columns |= extra_columns or {}
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
