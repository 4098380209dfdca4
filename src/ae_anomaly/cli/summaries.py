"""What the commands print when they finish: the results tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ae_anomaly.scenarios.base import MetricGroup


def print_summary(
    console: Console,
    metrics: dict[str, Any],
    folder: Path,
    seconds: float,
    groups: Sequence[MetricGroup] = (),
) -> None:
    """A short table: AUROC / AUPRC / share flagged per kind and per the scenario's
    ``groups``, then the threshold figures."""
    detector = metrics.get("detector")
    caption = (
        f"{detector['model']}, score {detector['score']}; {detector['assumes']}"
        if detector
        else None
    )
    table = Table(title=f"Results ({seconds:.0f} s)", caption=caption)
    for column in ("group", "n", "AUROC", "AUPRC", "flagged"):
        table.add_column(column, justify="left" if column == "group" else "right")
    table.add_row(
        "all",
        str(metrics["n_test"]),
        _fmt(metrics["overall"]["auroc"]),
        _fmt(metrics["overall"]["auprc"]),
        "",
    )
    for section, prefix in (("by_kind", ""), *((group.key, group.prefix) for group in groups)):
        for name, row in metrics[section].items():
            table.add_row(
                f"{prefix}{name}",
                str(row["n"]),
                _fmt(row.get("auroc")),
                _fmt(row.get("auprc")),
                _fmt(row["flagged"]),
            )
    console.print(table)
    at = metrics["at_threshold"]
    console.print(
        f"threshold {metrics['threshold_rule']} = {metrics['threshold']:.5g}: "
        f"precision {_fmt(at['precision'])}, recall {_fmt(at['recall'])}, F1 {_fmt(at['f1'])}"
    )
    cm = at["confusion_matrix"]
    console.print(
        "confusion matrix (rows: true normal, anomaly; columns: predicted normal, anomaly):\n"
        f"[[{cm[0][0]}, {cm[0][1]}],\n [{cm[1][0]}, {cm[1][1]}]]",
        highlight=False,
    )
    found = metrics.get("localisation")
    if found:
        console.print(
            f"localisation (error maps against the masks): pixel AUROC "
            f"{_fmt(found['pixel_auroc'])}, AUPRO {_fmt(found['aupro'])} "
            f"(up to FPR {found['max_fpr']:g})",
            highlight=False,
        )
    from ae_anomaly.report.metrics import classification_report_text

    console.print(classification_report_text(cm), highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def print_guard(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """The classifier's accuracy per kind, without and with the autoencoder's rejection."""
    table = Table(title=f"Classifier behind the detector ({seconds:.0f} s)")
    for column in ("kind", "n", "accuracy", "rejected", "accuracy on accepted"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for name, row in metrics["by_kind"].items():
        table.add_row(
            name,
            str(row["n"]),
            _fmt(row["accuracy"]),
            _fmt(row["rejected"]),
            _fmt(row["accuracy_accepted"]),
        )
    console.print(table)
    at = metrics["accuracy_at_coverage"]
    lines = [
        f"coverage {c}: " + ", ".join(f"{name} {value:.4f}" for name, value in row.items())
        for c, row in at.items()
    ]
    console.print("accuracy at coverage:\n  " + "\n  ".join(lines), highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def print_ranking(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """The unsupervised ranking: per label, how many of the top 1% it holds."""
    table = Table(title=f"Ranking ({seconds:.0f} s): labels for reading only")
    if not metrics["by_label"]:
        table = Table(title=f"Most anomalous of {metrics['n_images']['train']} images")
        for column in ("rank", "file", "score"):
            table.add_column(column)
        for r in metrics["most_anomalous"]:
            table.add_row(str(r["rank"]), r.get("path", str(r["index"])), f"{r['score']:.4g}")
        console.print(table)
        console.print(f"report: {folder / 'report.html'}")
        return
    for column in ("label", "n", "mean score", "in top 1%", "share of top", "lift"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for name, row in metrics["by_label"].items():
        table.add_row(
            name,
            str(row["n"]),
            f"{row['mean_score']:.4g}",
            str(row["n_top"]),
            f"{row['share_of_top']:.3f}",
            f"{row['lift']:.2f}",
        )
    console.print(table)
    top = ", ".join(
        f"{r['split']} #{r['index']} ({r['label']})" for r in metrics["most_anomalous"][:5]
    )
    console.print(f"most anomalous: {top}", highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_class_table(console: Console, metrics: dict[str, Any], seconds: float) -> None:
    """Accuracy, then precision / recall / F1 / images per class."""
    table = Table(title=f"{metrics['dataset']} test split ({seconds:.0f} s)")
    for column in ("class", "precision", "recall", "F1", "images"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for key, row in metrics["per_class"].items():
        label = key if row["name"] == key else f"{key} {row['name']}"
        table.add_row(
            label, _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"])
        )
    console.print(table)
    console.print(
        f"accuracy {metrics['accuracy']:.4f} ({metrics['errors']} errors in {metrics['n']}), "
        f"macro F1 {_fmt(metrics['macro']['f1'])}, "
        f"lowest class recall {_fmt(metrics['min_recall'])}"
    )
