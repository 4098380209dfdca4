"""The evaluation report: one self-contained HTML page with the figures (figures.py).

Each PNG is written atomically, and the same bytes are embedded as base64 in
``report.html``, which therefore needs no other file, network access or JavaScript
to display. The tables are the metrics' (metrics.py), with the groups the scenario
adds (Scenario.groups) and its figures (Scenario.report_plots).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ae_anomaly import fileio
from ae_anomaly.report.figures import (
    Examples,
    Plot,
    kind_colors,
    plot_confusion,
    plot_examples,
    plot_loss,
    plot_roc_pr,
    plot_scores,
)
from ae_anomaly.report.metrics import Metrics, classification_report_text, format_number

if TYPE_CHECKING:
    from ae_anomaly.scenarios.base import MetricGroup


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
    groups: Sequence[MetricGroup] = (),
    extra_plots: Sequence[Plot] = (),
    extra_sections: Sequence[str] = (),
) -> list[Path]:
    """Write ``out_dir/plots/*.png`` and ``out_dir/report.html``; return the paths written.

    ``metrics`` is the dict from :func:`ae_anomaly.report.metrics.evaluate`; ``history`` holds
    {"epoch", "train_loss", "val_loss"} per epoch. Plots without data (empty history, no
    examples, no rotation bands) are left out rather than drawn empty.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(int).reshape(-1)
    k = np.asarray(kinds).astype(str).reshape(-1)
    plots = _render_plots(metrics, history, s, y, k, threshold, examples, extra_plots)
    page = render_html(title, metrics, plots, config_text, groups, extra_sections)
    return write_page(out_dir, plots, page)


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
    extra_plots: Sequence[Plot],
) -> list[Plot]:
    """Render every figure that has data (``None`` marks one left out); the scenario's own
    figures, ``extra_plots``, go before the examples."""
    colors = kind_colors(list(metrics["by_kind"]))
    renderers: dict[str, Callable[[], bytes] | None] = {
        "loss.png": (lambda: plot_loss(history)) if history else None,
        "scores.png": lambda: plot_scores(scores, kinds, threshold, colors),
        "roc_pr.png": lambda: plot_roc_pr(scores, labels, kinds, colors),
        "confusion.png": lambda: plot_confusion(metrics),
    }
    plots = [
        Plot(name, render(), *_FIGURE_TEXT[name])
        for name, render in renderers.items()
        if render is not None
    ]
    plots += extra_plots
    if examples:
        plots.append(Plot("examples.png", plot_examples(examples), *_FIGURE_TEXT["examples.png"]))
    return plots


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


def render_html(
    title: str,
    metrics: Metrics,
    plots: Sequence[Plot],
    config_text: str,
    groups: Sequence[MetricGroup] = (),
    extra_sections: Sequence[str] = (),
) -> str:
    """The whole report page as a string; every piece of text is HTML-escaped (the
    scenario's ``extra_sections`` come escaped)."""
    sections = [
        "<h2>Headline</h2>",
        _headline_table(metrics),
        *_group_sections(metrics, groups),
        *extra_sections,
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
            (
                "detector",
                f"{detector['model']}, score {detector['score']}, "
                f"on {detector.get('input', 'whole images')}",
            ),
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


def _group_sections(metrics: Metrics, groups: Sequence[MetricGroup]) -> list[str]:
    """One table per grouping that has any rows: by kind, then the scenario's groups."""
    sections = [
        (
            "by_kind",
            "By kind",
            "kind",
            "Each kind against all normal images; for the normal kind, 'flagged' is the "
            "false positive rate.",
        ),
        *((group.key, group.heading, group.column, group.note) for group in groups),
    ]
    out = []
    for key, heading, first, note in sections:
        rows_by_name = metrics.get(key) or {}
        if rows_by_name:
            rows = [
                (name, *(_cell(col, stats.get(col)) for col in _GROUP_COLUMNS))
                for name, stats in rows_by_name.items()
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
