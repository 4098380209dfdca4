"""The guard scenario's results (scenarios/guard.py): the classifier's accuracy with and
without the detector's rejection, the accuracy-coverage curves, scores.csv and the page.

The classifier labels every test digit of the corruptions scenario (clean,
noisy, rotated, both). The autoencoder, trained on the same clean digits,
rejects the digits it flags; the classifier's accuracy is then measured on
what it accepts. Moving the threshold traces accuracy against coverage (the
share accepted), beside the same curve for the classifier's own confidence
(its largest softmax probability), the usual baseline for rejection.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from numpy.typing import NDArray

from ae_anomaly.classifier.model import DigitClassifierModel
from ae_anomaly.fileio import write_text
from ae_anomaly.report.figures import Plot, figure_png, plot_loss
from ae_anomaly.report.metrics import format_number
from ae_anomaly.report.page import html_table, render_page, write_page
from ae_anomaly.scenarios.base import ScenarioData, TestSet
from ae_anomaly.scenarios.splits import labelled_test

if TYPE_CHECKING:
    from ae_anomaly.config import RunConfig
    from ae_anomaly.detector.estimator import AutoencoderDetector

# Coverage levels reported in metrics.json and the summary table.
COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6)


def write_guard(
    folder: Path,
    config: RunConfig,
    data: ScenarioData,
    detector: AutoencoderDetector,
    classifier: DigitClassifierModel,
) -> dict[str, Any]:
    """Classify and score the test set; write both models, scores.csv, the page; return metrics."""
    test = labelled_test(data)
    scores = detector.decision_function(test.images)
    proba = classifier.predict_proba(test.images)
    predicted = proba.argmax(axis=1)
    correct = predicted == test.source_label
    threshold = float(detector.threshold_)
    accepted = scores <= threshold
    curves = coverage_curves(correct, scores, proba.max(axis=1))
    metrics = guard_metrics(test, correct, accepted, curves)
    metrics["threshold"] = threshold
    metrics["threshold_rule"] = config.detector.threshold
    metrics["training"] = detector.training_summary()
    metrics["classifier"] = {
        "trained_here": config.guard.classifier is None,
        "validation_accuracy": classifier.val_accuracy_,
    }
    detector.save(folder / "detector")
    write_text(folder / "scores.csv", guard_csv(test, scores, accepted, predicted, proba, correct))
    plots = [
        *([_plot("loss.png", plot_loss(detector.history_))] if detector.history_ else []),
        _plot("accuracy_by_kind.png", plot_accuracy_by_kind(metrics)),
        _plot("coverage.png", plot_coverage(curves, metrics)),
    ]
    title = f"ae-anomaly: guarding a digit classifier on {config.data.dataset}"
    config_text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_page(folder, plots, render_page(title, _sections(metrics), plots, config_text))
    return metrics


def guard_metrics(
    test: TestSet,
    correct: NDArray[Any],
    accepted: NDArray[Any],
    curves: dict[str, dict[str, NDArray[Any]]],
) -> dict[str, Any]:
    """Accuracy on everything and on what the detector accepts, overall and per kind,
    and on the ``curves`` (see coverage_curves) at the COVERAGES levels."""
    groups = {"all": np.ones(len(correct), dtype=bool)}
    groups |= {kind: test.kinds == kind for kind in dict.fromkeys(test.kinds.tolist())}
    by_kind = {
        name: {
            "n": int(mask.sum()),
            "accuracy": float(correct[mask].mean()),
            "rejected": float(1 - accepted[mask].mean()),
            "accuracy_accepted": _mean_or_none(correct[mask & accepted]),
        }
        for name, mask in groups.items()
    }
    at = {
        f"{c:g}": {
            name: float(np.interp(c, curve["coverage"], curve["accuracy"]))
            for name, curve in curves.items()
        }
        for c in COVERAGES
    }
    return {"n_test": len(correct), "by_kind": by_kind, "accuracy_at_coverage": at}


def coverage_curves(
    correct: NDArray[Any], scores: NDArray[Any], confidence: NDArray[Any]
) -> dict[str, dict[str, NDArray[Any]]]:
    """Accuracy of the accepted digits as more are accepted, for each way of ranking them.

    "autoencoder" accepts the lowest anomaly scores first, "confidence" the most
    confident predictions first, "oracle" every correct prediction first (the best
    any rejection could do).
    """
    n = len(correct)
    coverage = np.arange(1, n + 1) / n
    orders = {
        "autoencoder": np.argsort(scores, kind="stable"),
        "confidence": np.argsort(-confidence, kind="stable"),
        "oracle": np.argsort(~correct, kind="stable"),
    }
    return {
        name: {
            "coverage": coverage,
            "accuracy": np.cumsum(correct[order]) / np.arange(1, n + 1),
        }
        for name, order in orders.items()
    }


def guard_csv(
    test: TestSet,
    scores: NDArray[Any],
    accepted: NDArray[Any],
    predicted: NDArray[Any],
    proba: NDArray[Any],
    correct: NDArray[Any],
) -> str:
    """One row per test digit: what it is, what was done to it, both models' verdicts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "index",
            "source_index",
            "digit",
            "kind",
            "score",
            "rejected",
            "predicted",
            "confidence",
            "correct",
        ]
    )
    writer.writerows(
        zip(
            range(len(scores)),
            test.source_index,
            test.source_label,
            test.kinds,
            [f"{v:.9g}" for v in scores],
            (~accepted).astype(int),
            predicted,
            [f"{v:.6f}" for v in proba.max(axis=1)],
            correct.astype(int),
            strict=True,
        )
    )
    return buffer.getvalue()


def _mean_or_none(values: NDArray[Any]) -> float | None:
    return float(values.mean()) if values.size else None


# ----------------------------------------------------------------------------- figures

_FIGURES: dict[str, tuple[str, str]] = {
    "loss.png": ("Autoencoder training curve", "Reconstruction loss per epoch."),
    "accuracy_by_kind.png": (
        "Accuracy per kind",
        "The classifier's accuracy on every digit of a kind (grey), and on the digits of "
        "that kind the autoencoder accepts (blue); the label above each pair is the share "
        "the autoencoder rejects.",
    ),
    "coverage.png": (
        "Accuracy against coverage",
        "Moving the threshold: the share of test digits accepted (coverage) and the "
        "classifier's accuracy on them, when the autoencoder's score decides, when the "
        "classifier's own confidence decides, and at best (oracle). The dot is the "
        "fitted threshold.",
    ),
}


def _plot(name: str, png: bytes) -> Plot:
    return Plot(name, png, *_FIGURES[name])


def plot_accuracy_by_kind(metrics: dict[str, Any]) -> bytes:
    kinds = list(metrics["by_kind"])
    rows = [metrics["by_kind"][k] for k in kinds]
    x = np.arange(len(kinds))
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x - 0.2, [r["accuracy"] for r in rows], 0.4, color="tab:gray", label="all digits")
    accepted = [r["accuracy_accepted"] or 0.0 for r in rows]
    ax.bar(x + 0.2, accepted, 0.4, color="tab:blue", label="accepted by the autoencoder")
    for i, row in enumerate(rows):
        top = max(row["accuracy"], accepted[i])
        ax.text(i, top + 0.01, f"rejects {row['rejected']:.0%}", ha="center", fontsize="small")
    low = min(min(r["accuracy"] for r in rows), min(accepted))
    ax.set_xticks(x, kinds)
    ax.set(ylim=(max(0.0, low - 0.05), 1.04), ylabel="classifier accuracy")
    ax.set_title("Classifier accuracy, without and with the guard")
    ax.legend(loc="lower left", fontsize="small")
    return figure_png(fig)


def plot_coverage(curves: dict[str, dict[str, NDArray[Any]]], metrics: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    styles = {"autoencoder": "tab:blue", "confidence": "tab:orange", "oracle": "tab:gray"}
    for name, curve in curves.items():
        ax.plot(
            curve["coverage"],
            curve["accuracy"],
            color=styles[name],
            linestyle=":" if name == "oracle" else "-",
            label=name,
        )
    everything = metrics["by_kind"]["all"]
    coverage = 1 - everything["rejected"]
    if everything["accuracy_accepted"] is not None:
        ax.plot(coverage, everything["accuracy_accepted"], "o", color="tab:blue")
    low = float(curves["autoencoder"]["accuracy"][-1])
    ax.set(
        xlabel="coverage (share of test digits accepted)",
        ylabel="accuracy on the accepted digits",
        xlim=(0.3, 1.0),
        ylim=(max(0.0, low - 0.03), 1.002),
        title="Accuracy against coverage",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return figure_png(fig)


# ----------------------------------------------------------------------------- page


def _sections(metrics: dict[str, Any]) -> list[str]:
    kind_rows = [
        (
            name,
            str(row["n"]),
            format_number(row["accuracy"]),
            format_number(row["rejected"]),
            format_number(row["accuracy_accepted"]),
        )
        for name, row in metrics["by_kind"].items()
    ]
    coverage_rows = [
        (c, *(format_number(v) for v in row.values()))
        for c, row in metrics["accuracy_at_coverage"].items()
    ]
    names = list(next(iter(metrics["accuracy_at_coverage"].values())))
    return [
        "<h2>The classifier with and without the guard</h2>",
        f'<p class="note">The autoencoder rejects digits scoring above '
        f"{metrics['threshold_rule']} = {format_number(metrics['threshold'], 4, 'g')}.</p>",
        html_table(("kind", "digits", "accuracy", "rejected", "accuracy on accepted"), kind_rows),
        "<h2>Accuracy at a given coverage</h2>",
        html_table(("coverage", *names), coverage_rows),
    ]
