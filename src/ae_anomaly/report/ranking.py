"""The unsupervised scenario's results: every image ranked by its anomaly score.

The detector trained on the training images with their labels ignored; here it
scores every training and test image, and the page shows which images it finds
strangest (and, for contrast, the most typical ones). Labels appear only to
help a reader interpret the ranking ("which digits are weird?"); no number
here is fitted on them.
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

from ae_anomaly.fileio import write_text
from ae_anomaly.report.figures import (
    LOG_SCALE_SPAN,
    Plot,
    displayable,
    figure_png,
    plot_loss,
    score_bins,
)
from ae_anomaly.report.metrics import format_number
from ae_anomaly.report.page import html_table, render_page, write_page
from ae_anomaly.scenarios.base import RankingSet, ScenarioData

if TYPE_CHECKING:
    from ae_anomaly.config import RunConfig
    from ae_anomaly.detector.estimator import AutoencoderDetector

# The share of all images counted as "the top": its make-up by label is reported.
TOP_SHARE = 0.01
SPLITS = ("train", "test")


def write_ranking(
    folder: Path, config: RunConfig, data: ScenarioData, detector: AutoencoderDetector
) -> dict[str, Any]:
    """Score and rank every image; write the detector, scores.csv and the page; return metrics."""
    if data.ranked is None:
        raise ValueError("the unsupervised scenario needs a RankingSet")
    ranked = data.ranked
    scores = detector.decision_function(ranked.images)
    order = np.argsort(-scores, kind="stable")  # most anomalous first
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    threshold = float(detector.threshold_)
    k = min(config.report.top_k, len(scores))
    metrics = ranking_metrics(scores, ranks, ranked, threshold, k)
    metrics["threshold_rule"] = config.detector.threshold
    metrics["training"] = detector.training_summary()
    detector.save(folder / "detector")
    write_text(folder / "scores.csv", ranking_csv(ranked, scores, ranks))
    by_label = ranked.label is not None
    plots = [
        *([_plot("loss.png", plot_loss(detector.history_))] if detector.history_ else []),
        _plot("scores.png", plot_score_histogram(scores, ranked.split, threshold, ranks)),
        *([_plot("scores_by_label.png", plot_scores_by_label(scores, ranked))] if by_label else []),
        *([_plot("top_share.png", plot_top_share(metrics))] if by_label else []),
        _plot("most_anomalous.png", plot_image_grid(detector, ranked, scores, order[:k])),
        _plot(
            "most_typical.png", plot_image_grid(detector, ranked, scores, order[::-1][:k].copy())
        ),
    ]
    title = f"ae-anomaly: {config.scenario} ranking of {config.data.dataset}"
    config_text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_page(folder, plots, render_page(title, _sections(metrics), plots, config_text))
    return metrics


def ranking_metrics(
    scores: NDArray[Any], ranks: NDArray[Any], ranked: RankingSet, threshold: float, k: int
) -> dict[str, Any]:
    """Counts, share flagged per split, per-label statistics and the top-k list."""
    n_top = max(1, round(len(scores) * TOP_SHARE))
    in_top = ranks <= n_top
    by_label: dict[str, Any] = {}
    for label in np.unique(ranked.label) if ranked.label is not None else []:
        mine = ranked.label == label
        share_of_all = float(mine.mean())
        share_of_top = float(in_top[mine].sum() / n_top)
        by_label[_label_name(ranked, int(label))] = {
            "n": int(mine.sum()),
            "mean_score": float(scores[mine].mean()),
            "median_score": float(np.median(scores[mine])),
            "n_top": int(in_top[mine].sum()),
            "share_of_top": share_of_top,
            "share_of_all": share_of_all,
            # How over-represented the label is among the strangest images (1 = as usual).
            "lift": share_of_top / share_of_all,
        }
    top = np.argsort(ranks)[:k]
    return {
        "n_images": {split: int((ranked.split == split).sum()) for split in SPLITS},
        "threshold": threshold,
        "flagged": {
            split: float((scores[ranked.split == split] > threshold).mean())
            for split in SPLITS
            if (ranked.split == split).any()
        },
        "top_share": TOP_SHARE,
        "n_top": n_top,
        "by_label": by_label,
        "most_anomalous": [
            {
                "rank": int(ranks[i]),
                "split": str(ranked.split[i]),
                "index": int(ranked.index[i]),
                "label": _label_of(ranked, int(i)),
                **({"path": ranked.paths[i]} if ranked.paths is not None else {}),
                "score": float(scores[i]),
            }
            for i in top
        ],
    }


def ranking_csv(ranked: RankingSet, scores: NDArray[Any], ranks: NDArray[Any]) -> str:
    """One row per image, in split and index order: split, index, [path,] [label,] score, rank."""
    columns: dict[str, Any] = {"split": ranked.split, "index": ranked.index}
    if ranked.paths is not None:
        columns["path"] = ranked.paths
    if ranked.label is not None:
        columns["label"] = ranked.label
    columns |= {"score": [f"{v:.9g}" for v in scores], "rank": ranks}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return buffer.getvalue()


def _label_of(ranked: RankingSet, i: int) -> str | None:
    return None if ranked.label is None else _label_name(ranked, int(ranked.label[i]))


def _label_name(ranked: RankingSet, label: int) -> str:
    name = ranked.class_names[label]
    return name if name == str(label) else f"{label} {name}"


# ----------------------------------------------------------------------------- figures

_FIGURES: dict[str, tuple[str, str]] = {
    "loss.png": (
        "Training curve",
        "Mean reconstruction loss per epoch on the training images and the held-out ones.",
    ),
    "scores.png": (
        "Score distribution",
        "Every image's score, training and test split apart (log scale when the scores "
        "span orders of magnitude). Dashed: the threshold fitted on held-out training "
        "images; dotted: where the top 1% begins.",
    ),
    "scores_by_label.png": (
        "Scores per label",
        "One box per label (labels are shown for reading only; the model never saw them): "
        "the box spans the middle half of the scores, whiskers the 1st-99th percentiles.",
    ),
    "top_share.png": (
        "Who is in the top 1%",
        "Each label's share among the 1% highest-scoring images beside its share among "
        "all images: a label far above its usual share is one the model finds strange.",
    ),
    "most_anomalous.png": (
        "Most anomalous images",
        "The highest scores: input, reconstruction and per-pixel error (brighter = worse).",
    ),
    "most_typical.png": (
        "Most typical images",
        "The lowest scores, for contrast: what the model reconstructs best.",
    ),
}


def _plot(name: str, png: bytes) -> Plot:
    return Plot(name, png, *_FIGURES[name])


def plot_score_histogram(
    scores: NDArray[Any], split: NDArray[Any], threshold: float, ranks: NDArray[Any]
) -> bytes:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    bins, log_x = score_bins(scores)
    for name in SPLITS:
        group = scores[split == name]
        if group.size:
            ax.hist(
                np.clip(group, bins[0], bins[-1]),
                bins=bins.tolist(),
                weights=np.full(group.size, 1.0 / group.size),
                histtype="step",
                linewidth=1.5,
                label=f"{name} (n={group.size})",
            )
    top_cut = float(scores[ranks == max(1, round(len(scores) * TOP_SHARE))][0])
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.axvline(top_cut, color="tab:red", linestyle=":", label=f"top 1% from {top_cut:.4g}")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="anomaly score", ylabel="share of the split's images", title="Scores")
    ax.legend(fontsize="small")
    return figure_png(fig)


def plot_scores_by_label(scores: NDArray[Any], ranked: RankingSet) -> bytes:
    if ranked.label is None:
        raise ValueError("no labels to group the scores by")
    labels = np.unique(ranked.label)
    fig = Figure(figsize=(max(6.0, 0.7 * len(labels) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    ax.boxplot(
        [scores[ranked.label == label] for label in labels],
        whis=(1, 99),
        showfliers=False,
    )
    ax.set_xticks(
        range(1, len(labels) + 1),
        [_label_name(ranked, int(label)) for label in labels],
        rotation=30 if len(ranked.class_names[0]) > 2 else 0,
    )
    if scores.min() > 0 and scores.max() / scores.min() > LOG_SCALE_SPAN:
        ax.set_yscale("log")
    ax.set(xlabel="label (display only)", ylabel="anomaly score", title="Scores per label")
    ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def plot_top_share(metrics: dict[str, Any]) -> bytes:
    names = list(metrics["by_label"])
    top = [metrics["by_label"][n]["share_of_top"] for n in names]
    base = [metrics["by_label"][n]["share_of_all"] for n in names]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x - 0.2, base, width=0.4, color="tab:gray", label="share of all images")
    ax.bar(
        x + 0.2,
        top,
        width=0.4,
        color="tab:red",
        label=f"share of the top 1% (n={metrics['n_top']})",
    )
    ax.set_xticks(x, names, rotation=30 if max(len(n) for n in names) > 2 else 0)
    ax.set(ylabel="share", title="Labels among the most anomalous 1%")
    ax.legend(fontsize="small")
    return figure_png(fig)


def plot_image_grid(
    detector: AutoencoderDetector, ranked: RankingSet, scores: NDArray[Any], picked: NDArray[Any]
) -> bytes:
    """One column per picked image; rows: input, reconstruction, error map."""
    images = ranked.images[picked]
    reconstructions, errors = detector.reconstruct(images)
    rows = (displayable(images.numpy()), displayable(reconstructions), errors)
    cols = len(picked)
    fig = Figure(figsize=(1.25 * cols + 1.2, 4.6), layout="constrained")
    axes = fig.subplots(3, cols, squeeze=False)
    err_max = float(errors.max()) or 1.0
    for col, i in enumerate(picked):
        axes[0, col].set_title(
            _grid_caption(ranked, int(i), float(scores[i])),
            fontsize="x-small",
        )
        for row, (arr, cmap, vmax) in enumerate(
            zip(rows, ("gray", "gray", "magma"), (1.0, 1.0, err_max), strict=True)
        ):
            axes[row, col].imshow(arr[col], cmap=cmap, vmin=0, vmax=vmax)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    for row, name in enumerate(("input", "reconstruction", "error")):
        axes[row, 0].set_ylabel(name, fontsize="small")
    return figure_png(fig)


def _grid_caption(ranked: RankingSet, i: int, score: float) -> str:
    """Where the image came from (file name or split and index), its label, its score."""
    where = (
        Path(ranked.paths[i]).name[:18]
        if ranked.paths is not None
        else f"{ranked.split[i]} #{ranked.index[i]}"
    )
    label = "" if ranked.label is None else f"\nlabel {ranked.label[i]}"
    return f"{where}{label}\n{score:.4g}"


# ----------------------------------------------------------------------------- page


def _sections(metrics: dict[str, Any]) -> list[str]:
    counts = metrics["n_images"]
    headline = [
        (
            "images ranked",
            f"{sum(counts.values())} ({counts['train']} train, {counts['test']} test)",
        ),
        (
            "threshold",
            f"{metrics['threshold_rule']} = {format_number(metrics['threshold'], 4, 'g')}",
        ),
        *(
            (f"flagged ({split})", format_number(share))
            for split, share in metrics["flagged"].items()
        ),
        ("top 1%", f"the {metrics['n_top']} highest scores"),
    ]
    label_rows = [
        (
            name,
            str(row["n"]),
            format_number(row["mean_score"], 4, "g"),
            format_number(row["median_score"], 4, "g"),
            str(row["n_top"]),
            format_number(row["share_of_top"], 3),
            format_number(row["share_of_all"], 3),
            format_number(row["lift"], 2),
        )
        for name, row in metrics["by_label"].items()
    ]
    top_rows = [
        (
            str(r["rank"]),
            r["split"],
            str(r["index"]),
            r.get("path") or r["label"] or "",
            format_number(r["score"], 4, "g"),
        )
        for r in metrics["most_anomalous"]
    ]
    label_section = [
        "<h2>By label (for reading only)</h2>",
        '<p class="note">lift = share of the top 1% / share of all images; '
        "above 1, the label is over-represented among the strangest images.</p>",
        html_table(
            (
                "label",
                "images",
                "mean score",
                "median",
                "in top 1%",
                "share of top",
                "share of all",
                "lift",
            ),
            label_rows,
        ),
    ]
    return [
        "<h2>Headline</h2>",
        html_table(("", "value"), headline),
        *(label_section if label_rows else []),
        "<h2>Most anomalous</h2>",
        html_table(("rank", "split", "index", "file or label", "score"), top_rows),
    ]
