"""The evaluation report: PNG figures and one self-contained HTML page.

Figures are drawn on ``matplotlib.figure.Figure`` objects (never pyplot), so nothing
global - backend, open-figure registry - is touched. Each PNG is rendered to bytes,
written atomically, and the same bytes are embedded as base64 in ``report.html``, which
therefore needs no other file, network access or JavaScript to display.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ae_anomaly import fileio
from ae_anomaly.report.metrics import Metrics, classification_report_text, format_number

# Scores spanning more than this ratio (max / min) get a log-scaled x axis.
LOG_SCALE_SPAN = 100.0
HIST_BINS = 50


@dataclass(frozen=True)
class Examples:
    """A few test images with what the model made of them, for ``examples.png``.

    ``images``, ``reconstructions`` and ``errors`` (per-pixel error maps) have shape
    (k, H, W) or (k, 1, H, W); pixel values in [0, 1]. ``captions`` holds one line per
    example, e.g. "noise+rotation, score 0.031".
    """

    images: NDArray[Any]
    reconstructions: NDArray[Any]
    errors: NDArray[Any]
    captions: Sequence[str]

    def __post_init__(self) -> None:
        # Accept channel-first model output; store plain (k, H, W) arrays.
        for name in ("images", "reconstructions", "errors"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim == 4 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 3:
                raise ValueError(f"Examples.{name} must have shape (k, H, W), got {arr.shape}")
            object.__setattr__(self, name, arr)
        shapes = {self.images.shape, self.reconstructions.shape, self.errors.shape}
        if len(shapes) != 1 or len(self.captions) != self.images.shape[0]:
            raise ValueError(
                f"Examples arrays and captions disagree: {shapes}, {len(self.captions)} captions"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class Plot:
    """One rendered figure: its file name, PNG bytes, heading and how to read it."""

    name: str
    png: bytes
    heading: str
    caption: str


def write_report(
    out_dir: Path,
    *,
    title: str,
    metrics: Metrics,
    history: Sequence[dict[str, Any]],
    scores: ArrayLike,
    labels: ArrayLike,
    kinds: ArrayLike,
    threshold: float,
    examples: Examples | None,
    config_text: str,
) -> list[Path]:
    """Write ``out_dir/plots/*.png`` and ``out_dir/report.html``; return the paths written.

    ``metrics`` is the dict from :func:`ae_anomaly.report.metrics.evaluate`; ``history`` holds
    {"epoch", "train_loss", "val_loss"} per epoch. Plots without data (empty history, no
    examples, no rotation bands) are left out rather than drawn empty.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(int).reshape(-1)
    k = np.asarray(kinds).astype(str).reshape(-1)
    plots = _render_plots(metrics, history, s, y, k, threshold, examples)
    return write_page(out_dir, plots, render_html(title, metrics, plots, config_text))


def write_page(out_dir: Path, plots: Sequence[Plot], page_html: str) -> list[Path]:
    """Write each plot to ``out_dir/plots/`` and the page to ``out_dir/report.html``."""
    written = []
    for plot in plots:
        path = out_dir / "plots" / plot.name
        fileio.write_bytes(path, plot.png)
        written.append(path)
    page = out_dir / "report.html"
    fileio.write_text(page, page_html)
    written.append(page)
    return written


# Heading and a one-line "how to read it" caption per figure, in page order.
_FIGURE_TEXT: dict[str, tuple[str, str]] = {
    "loss.png": (
        "Training curve",
        "Mean reconstruction loss per epoch; validation uses held-out normal images, so a "
        "validation curve that turns upwards means overfitting.",
    ),
    "scores.png": (
        "Score distributions",
        "Share of each kind's images per score bin; images right of the dashed threshold "
        "are flagged. The less a kind overlaps the normal one, the easier it is to detect.",
    ),
    "roc_pr.png": (
        "ROC and PR curves",
        "Each anomalous kind against all normal images. ROC: closer to the top-left corner "
        "is better (dotted diagonal = chance). PR: higher is better.",
    ),
    "confusion.png": (
        "Confusion matrix",
        "Counts at the threshold. Rows: true class; columns: prediction. "
        "Off-diagonal cells are errors.",
    ),
    "angle_bands.png": (
        "AUROC by rotation angle",
        "Rotated digits only, grouped by |angle|, each band against all clean images. "
        "The dashed line at 0.5 is chance.",
    ),
    "examples.png": (
        "Examples",
        "One test image per row: input, reconstruction and per-pixel error "
        "(brighter = worse; one colour scale for all rows).",
    ),
}


def _render_plots(
    metrics: Metrics,
    history: Sequence[dict[str, Any]],
    scores: NDArray[Any],
    labels: NDArray[Any],
    kinds: NDArray[Any],
    threshold: float,
    examples: Examples | None,
) -> list[Plot]:
    """Render every figure that has data; ``None`` marks one left out."""
    colors = kind_colors(list(metrics["by_kind"]))
    renderers: dict[str, Callable[[], bytes] | None] = {
        "loss.png": (lambda: plot_loss(history)) if history else None,
        "scores.png": lambda: plot_scores(scores, kinds, threshold, colors),
        "roc_pr.png": lambda: plot_roc_pr(scores, labels, kinds, colors),
        "confusion.png": lambda: plot_confusion(metrics),
        "angle_bands.png": (
            (lambda: plot_angle_bands(metrics)) if metrics.get("by_angle_band") else None
        ),
        "examples.png": (lambda: plot_examples(examples)) if examples else None,
    }
    return [
        Plot(name, render(), *_FIGURE_TEXT[name])
        for name, render in renderers.items()
        if render is not None
    ]


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


def plot_angle_bands(metrics: Metrics) -> bytes:
    """Bar chart of AUROC per |angle| band, with chance (0.5) dashed."""
    bands = metrics["by_angle_band"]
    names = [f"{band}°" for band in bands]
    aurocs = [stats["auroc"] for stats in bands.values()]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(names, [0.0 if a is None else a for a in aurocs], color="tab:gray")
    for x, (auroc, stats) in enumerate(zip(aurocs, bands.values(), strict=True)):
        ax.text(
            x,
            (auroc or 0.0) + 0.02,
            f"{format_number(auroc, 3)}\nn={stats['n']}",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
    ax.set(
        xlabel="|rotation angle|",
        ylabel="AUROC vs clean",
        ylim=(0, 1.15),
        title="Detecting rotations by angle",
    )
    ax.legend(loc="lower right")
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
    """Shared histogram edges; log-spaced when positive scores span orders of magnitude."""
    positive = scores[scores > 0]
    if positive.size and positive.max() / positive.min() > LOG_SCALE_SPAN:
        return np.geomspace(positive.min(), positive.max(), HIST_BINS + 1), True
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


# ----------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
figure { margin: 1em 0 2em; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.95em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.9em; }
.note { color: #555; }
"""

_GROUP_COLUMNS = ("n", "auroc", "auprc", "mean_score", "flagged")
_GROUP_HEADINGS = ("images", "AUROC", "AUPRC", "mean score", "flagged")


def render_html(title: str, metrics: Metrics, plots: Sequence[Plot], config_text: str) -> str:
    """The whole report page as a string; every piece of text is HTML-escaped."""
    sections = [
        "<h2>Headline</h2>",
        _headline_table(metrics),
        *_group_sections(metrics),
        "<h2>Confusion matrix at the threshold</h2>",
        _confusion_table(metrics),
        f"<pre>{html.escape(classification_report_text(metrics['at_threshold']['confusion_matrix']))}</pre>",
    ]
    return render_page(title, sections, plots, config_text)


def render_page(
    title: str, sections: Sequence[str], plots: Sequence[Plot], config_text: str
) -> str:
    """A page: title, ``sections`` (HTML already escaped), the figures, the config."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        *sections,
        "<h2>Figures</h2>",
        *(_figure(plot) for plot in plots),
        "<h2>Configuration</h2>",
        f"<pre>{esc(config_text)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _headline_table(metrics: Metrics) -> str:
    at = metrics["at_threshold"]
    detector = metrics.get("detector")
    described = (
        [
            ("detector", f"{detector['model']}, score {detector['score']}"),
            ("assumes", detector["assumes"]),
        ]
        if detector
        else []
    )
    rows = [
        *described,
        (
            "test images",
            f"{metrics['n_test']} ({metrics['n_normal']} normal, "
            f"{metrics['n_anomalous']} anomalous)",
        ),
        ("AUROC (all anomalies vs normal)", format_number(metrics["overall"]["auroc"])),
        ("AUPRC (all anomalies vs normal)", format_number(metrics["overall"]["auprc"])),
        ("threshold", format_number(metrics["threshold"], 4, "g")),
        ("precision", format_number(at["precision"])),
        ("recall", format_number(at["recall"])),
        ("F1", format_number(at["f1"])),
        ("accuracy", format_number(at["accuracy"])),
        ("false positive rate", format_number(at["false_positive_rate"])),
    ]
    return html_table(("metric", "value"), rows)


def _group_sections(metrics: Metrics) -> list[str]:
    """One table per grouping that has any rows; headings say what was compared."""
    sections = [
        (
            "by_kind",
            "By kind",
            "kind",
            "Each kind against all normal images; for the normal kind, 'flagged' is the "
            "false positive rate.",
        ),
        (
            "by_noise_std",
            "By noise level",
            "noise std",
            "Images with Gaussian noise only, grouped by its standard deviation.",
        ),
        (
            "by_angle_band",
            "By rotation angle",
            "|angle| (degrees)",
            "Rotated images only, grouped by |angle| in [low, high); the last band includes high.",
        ),
    ]
    out = []
    for key, heading, first, note in sections:
        groups = metrics.get(key) or {}
        if groups:
            rows = [
                (name, *(_cell(col, stats.get(col)) for col in _GROUP_COLUMNS))
                for name, stats in groups.items()
            ]
            out += [
                f"<h2>{html.escape(heading)}</h2>",
                f'<p class="note">{html.escape(note)}</p>',
                html_table((first, *_GROUP_HEADINGS), rows),
            ]
    return out


def _confusion_table(metrics: Metrics) -> str:
    (tn, fp), (fn, tp) = metrics["at_threshold"]["confusion_matrix"]
    return html_table(
        ("", "predicted normal", "predicted anomaly"),
        [("true normal", str(tn), str(fp)), ("true anomaly", str(fn), str(tp))],
    )


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    alt = html.escape(plot.heading)
    return (
        f"<h3>{alt}</h3><figure>"
        f'<img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>"
    )


def html_table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(column: str, value: Any) -> str:
    """Counts as integers, scores to 4 significant digits, rates to 4 decimals, None as n/a."""
    if isinstance(value, int):
        return str(value)
    # Reconstruction errors are often ~1e-3, where fixed decimals would hide the digits.
    return format_number(value, 4, "g" if column == "mean_score" else "f")
