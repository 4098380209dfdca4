"""The report's figures, each drawn to PNG bytes.

Figures are drawn on ``matplotlib.figure.Figure`` objects (never pyplot), so nothing
global - backend, open-figure registry - is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ae_anomaly.report.metrics import Metrics

# Scores spanning more than this ratio (max / min) get a log-scaled x axis.
LOG_SCALE_SPAN = 100.0
HIST_BINS = 50


@dataclass(frozen=True)
class Examples:
    """A few test images with what the model made of them, for ``examples.png``.

    ``images`` and ``reconstructions`` have shape (k, H, W) or (k, C, H, W), pixel
    values in [0, 1]; they are kept as ``displayable`` arrays (grey (k, H, W), or
    colour (k, H, W, 3)). ``errors`` are the per-pixel error maps, (k, H, W).
    ``captions`` holds one line per example, e.g. "noise+rotation, score 0.031".
    """

    images: NDArray[Any]
    reconstructions: NDArray[Any]
    errors: NDArray[Any]
    captions: Sequence[str]

    def __post_init__(self) -> None:
        for name in ("images", "reconstructions"):
            object.__setattr__(self, name, displayable(getattr(self, name)))
        errors = np.asarray(self.errors, dtype=np.float64)
        if errors.ndim == 4 and errors.shape[1] == 1:
            errors = errors[:, 0]
        if errors.ndim != 3:
            raise ValueError(f"Examples.errors must have shape (k, H, W), got {errors.shape}")
        object.__setattr__(self, "errors", errors)
        shapes = {self.images.shape, self.reconstructions.shape}
        if (
            len(shapes) != 1
            or self.images.shape[:3] != errors.shape
            or len(self.captions) != self.images.shape[0]
        ):
            raise ValueError(
                f"Examples arrays and captions disagree: {shapes}, {errors.shape}, "
                f"{len(self.captions)} captions"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def displayable(images: Any) -> NDArray[Any]:
    """Images (k, H, W) or (k, C, H, W) as matplotlib shows them: grey (k, H, W) for one
    channel, colour (k, H, W, 3) for three, the channels' mean for any other count."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 3:
        return arr
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (k, H, W) or (k, C, H, W), got {arr.shape}")
    if arr.shape[1] == 3:
        return np.clip(arr.transpose(0, 2, 3, 1), 0.0, 1.0)
    return arr[:, 0] if arr.shape[1] == 1 else arr.mean(axis=1)


@dataclass(frozen=True)
class Plot:
    """One rendered figure: its file name, PNG bytes, heading and how to read it."""

    name: str
    png: bytes
    heading: str
    caption: str


# ----------------------------------------------------------------------------- figures


def plot_loss(history: Sequence[dict[str, Any]], title: str = "Reconstruction loss") -> bytes:
    """Training and validation loss per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", ms=3, label="validation")
    losses = [h[key] for h in history for key in ("train_loss", "val_loss")]
    if min(losses) > 0 and max(losses) / min(losses) > LOG_SCALE_SPAN:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_png(fig)


def plot_scores(
    scores: NDArray[Any], kinds: NDArray[Any], threshold: float, colors: dict[str, str]
) -> bytes:
    """Overlaid step histograms of the scores per kind, on shared bins, plus the threshold.

    ``colors`` maps each kind to its colour, in legend order (see :func:`kind_colors`).
    """
    bins, log_x = score_bins(scores)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for kind, color in colors.items():
        group = scores[kinds == kind]
        # Weights of 1/n make each curve a share, so kinds of different size compare.
        weights = np.full(group.size, 1.0 / group.size)
        ax.hist(
            np.clip(group, bins[0], bins[-1]),
            bins=bins.tolist(),
            weights=weights,
            histtype="step",
            linewidth=1.5,
            color=color,
            label=f"{kind} (n={group.size})",
        )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    if log_x:
        ax.set_xscale("log")
    ax.set(
        xlabel="anomaly score" + (" (log scale)" if log_x else ""),
        ylabel="share of that kind's images",
        title="Score distribution per kind",
    )
    ax.legend(fontsize="small")
    return figure_png(fig)


def plot_roc_pr(
    scores: NDArray[Any], labels: NDArray[Any], kinds: NDArray[Any], colors: dict[str, str]
) -> bytes:
    """ROC (left) and precision-recall (right) curves: each kind vs normal, and overall."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    clean = labels == 0
    normal_kinds = set(kinds[clean].tolist())
    groups = [
        (kind, clean | (kinds == kind), color)
        for kind, color in colors.items()
        if kind not in normal_kinds
    ]
    groups.append(("overall", np.ones_like(clean), "black"))
    for name, mask, color in groups:
        y, s = labels[mask], scores[mask]
        if np.unique(y).size < 2:
            continue  # a curve needs both classes
        _roc_line(roc_ax, name, y, s, color)
        _pr_line(pr_ax, name, y, s, color)
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    for ax, corner in ((roc_ax, "lower right"), (pr_ax, "lower left")):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no curves (one class only): no legend
            ax.legend(fontsize="small", loc=corner)
    return figure_png(fig)


def plot_confusion(metrics: Metrics) -> bytes:
    """The 2x2 confusion matrix at the threshold with counts written in the cells."""
    cm = np.asarray(metrics["at_threshold"]["confusion_matrix"])
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0)
    for (row, col), count in np.ndenumerate(cm):
        # Dark cells get white text so the count stays readable.
        dark = count > cm.max() / 2
        ax.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=14,
            color="white" if dark else "black",
        )
    names = ["normal", "anomaly"]
    ax.set_xticks([0, 1], [f"predicted\n{n}" for n in names])
    ax.set_yticks([0, 1], [f"true\n{n}" for n in names])
    ax.set_title(f"At threshold {metrics['threshold']:.4g}")
    return figure_png(fig)


def plot_examples(examples: Examples) -> bytes:
    """One row per example: caption | input | reconstruction | error map."""
    rows = len(examples)
    fig = Figure(figsize=(9, 1.6 * rows + 0.5), layout="constrained")
    # A text column of its own keeps long captions inside the figure.
    axes = fig.subplots(rows, 4, squeeze=False, width_ratios=[1.4, 1, 1, 1])
    # One error scale for all rows, so a clean digit's map looks calmer than a corrupted one's.
    err_max = float(examples.errors.max()) or 1.0
    panels = (
        (examples.images, "gray", 1.0),
        (examples.reconstructions, "gray", 1.0),
        (examples.errors, "magma", err_max),
    )
    for row, (text_ax, *img_axs) in enumerate(axes):
        text_ax.axis("off")
        # "$" would switch matplotlib to math mode; captions are plain text.
        caption = examples.captions[row].replace("$", r"\$")
        text_ax.text(1.0, 0.5, caption, ha="right", va="center", wrap=True)
        for ax, (arr, cmap, vmax) in zip(img_axs, panels, strict=True):
            shown = ax.imshow(arr[row], cmap=cmap, vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, heading in zip(axes[0, 1:], ("input", "reconstruction", "error"), strict=True):
        ax.set_title(heading, fontsize="medium")
    # `shown` is the last panel drawn: an error map, so the bar carries the error scale.
    fig.colorbar(shown, ax=axes[:, 3], shrink=0.8, label="pixel error")
    return figure_png(fig)


def plot_localisation(examples: Examples, masks: NDArray[Any]) -> bytes:
    """One row per example: caption | input | reconstruction | error map over the input |
    the ground-truth mask (white = defect)."""
    rows = len(examples)
    fig = Figure(figsize=(10.5, 1.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, 5, squeeze=False, width_ratios=[1.4, 1, 1, 1, 1])
    err_max = float(examples.errors.max()) or 1.0
    for row, (text_ax, image_ax, recon_ax, heat_ax, mask_ax) in enumerate(axes):
        text_ax.axis("off")
        caption = examples.captions[row].replace("$", r"\$")
        text_ax.text(1.0, 0.5, caption, ha="right", va="center", wrap=True)
        image_ax.imshow(examples.images[row], cmap="gray", vmin=0, vmax=1)
        recon_ax.imshow(examples.reconstructions[row], cmap="gray", vmin=0, vmax=1)
        heat_ax.imshow(examples.images[row], cmap="gray", vmin=0, vmax=1)
        shown = heat_ax.imshow(examples.errors[row], cmap="magma", alpha=0.6, vmin=0, vmax=err_max)
        mask_ax.imshow(masks[row], cmap="gray", vmin=0, vmax=1)
        for ax in (image_ax, recon_ax, heat_ax, mask_ax):
            ax.set_xticks([])
            ax.set_yticks([])
    headings = ("input", "reconstruction", "error over input", "mask")
    for ax, heading in zip(axes[0, 1:], headings, strict=True):
        ax.set_title(heading, fontsize="medium")
    fig.colorbar(shown, ax=axes[:, 3], shrink=0.8, label="pixel error")
    return figure_png(fig)


def _roc_line(ax: Axes, name: str, y: NDArray[Any], s: NDArray[Any], color: str) -> None:
    fpr, tpr, _ = roc_curve(y, s)
    ax.plot(
        fpr,
        tpr,
        color=color,
        linewidth=2 if name == "overall" else 1.2,
        label=f"{name} (AUROC {roc_auc_score(y, s):.3f})",
    )


def _pr_line(ax: Axes, name: str, y: NDArray[Any], s: NDArray[Any], color: str) -> None:
    precision, recall, _ = precision_recall_curve(y, s)
    ax.step(
        recall,
        precision,
        where="post",
        color=color,
        linewidth=2 if name == "overall" else 1.2,
        label=f"{name} (AUPRC {average_precision_score(y, s):.3f})",
    )


def score_bins(scores: NDArray[Any]) -> tuple[NDArray[Any], bool]:
    """Shared histogram edges; log-spaced when the scores are all positive and span orders of
    magnitude. Combined scores (sums of z-scores) are negative for typical normal images:
    on a log axis they would all pile into the first bin, so they get a linear one."""
    if scores.size and scores.min() > 0 and scores.max() / scores.min() > LOG_SCALE_SPAN:
        return np.geomspace(scores.min(), scores.max(), HIST_BINS + 1), True
    lo, hi = float(scores.min()), float(scores.max())
    if lo == hi:  # all scores equal: give the one bar some width
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, HIST_BINS + 1), False


def kind_colors(order: Sequence[str]) -> dict[str, str]:
    """A colour per kind, in the order given (the normal kind first, as in
    ``metrics["by_kind"]``), so that a kind has the same colour in every figure."""
    return {kind: f"C{i % 10}" for i, kind in enumerate(order)}


def figure_png(fig: Figure) -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
