"""Metrics for anomaly scores: AUROC/AUPRC overall and per group, and results at a threshold.

Every group (an anomaly kind or class, and whatever groupings a scenario adds, such as
noise levels or rotation bands) is scored against *all* normal test images, so the
numbers answer "how well does the score tell this group apart from normal images?".
The normal images share one kind name: "clean" in the corruptions scenario, the normal
class's name in the one-class one.
The result is a plain, JSON-ready dict: no numpy types and ``None`` wherever a number
is undefined (e.g. AUROC of a group with one class only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

Metrics = dict[str, Any]


def evaluate(
    scores: ArrayLike,
    labels: ArrayLike,
    kinds: ArrayLike,
    threshold: float,
    *,
    kind_order: Sequence[str] | None = None,
    groups: dict[str, dict[str, NDArray[np.bool_]]] | None = None,
) -> Metrics:
    """Score the test set against its labels, per kind and per the scenario's groups.

    ``labels`` are 0 (normal) / 1 (anomalous), ``kinds`` names each image's kind or
    class (one name for all normal images, e.g. ``"clean"``). ``kind_order`` fixes the
    order of the anomalous kinds in ``by_kind`` (default: single corruptions before
    combined ones, then by name). ``groups`` maps a metrics key (e.g. ``by_noise_std``)
    to its rows: name -> which images belong to it. Predictions are ``score >
    threshold``. The result holds ``n_test``, ``n_normal``, ``n_anomalous``,
    ``threshold``, ``overall`` ({auroc, auprc}), ``by_kind``, one entry per group
    key, each mapping a row name to {n, auroc, auprc, mean_score, flagged} (the normal
    kind comes first and has no auroc/auprc; its "flagged" is the false positive
    rate), and ``at_threshold`` (see :func:`at_threshold`).
    """
    s, y, k = _check_arrays(scores, labels, kinds)
    clean = s[y == 0]
    grouped = {
        key: {name: group_stats(s[mask], clean, threshold) for name, mask in rows.items()}
        for key, rows in (groups or {}).items()
    }
    return {
        "n_test": int(s.size),
        "n_normal": int(clean.size),
        "n_anomalous": int(s.size - clean.size),
        "threshold": float(threshold),
        "overall": _separation(clean, s[y == 1]),
        "by_kind": _by_kind(s, k, y, threshold, kind_order),
        **grouped,
        "at_threshold": at_threshold(s, y, threshold),
    }


def groups_by_value(values: NDArray[Any], within: NDArray[np.bool_]) -> dict[str, NDArray[Any]]:
    """Rows by a float such as the noise std, among the images ``within``; names like
    "0.1" (float32 noise merges), in increasing order."""
    keys = np.array([value_key(v) for v in values.tolist()], dtype=str)
    order = sorted(set(keys[within].tolist()), key=float)
    return {key: within & (keys == key) for key in order}


def groups_by_band(
    values: NDArray[Any], edges: Sequence[float], within: NDArray[np.bool_]
) -> dict[str, NDArray[Any]]:
    """Rows by |value| in [lo, hi) (the last band also holds hi), among the images
    ``within``; empty bands are left out."""
    magnitude = np.abs(values)
    rows = {}
    for i, (lo, hi) in enumerate(pairwise(edges)):
        last = i == len(edges) - 2
        inside = within & (magnitude >= lo) & ((magnitude <= hi) if last else (magnitude < hi))
        if inside.any():
            rows[f"{value_key(lo)}-{value_key(hi)}"] = inside
    return rows


def at_threshold(scores: NDArray[Any], labels: NDArray[Any], threshold: float) -> Metrics:
    """Confusion matrix ``[[tn, fp], [fn, tp]]`` and the usual rates for ``score > threshold``."""
    pred = (scores > threshold).astype(int)
    cm = confusion_matrix(labels, pred, labels=[0, 1])
    (tn, fp), (_fn, tp) = cm.tolist()
    # zero_division=nan so an undefined rate becomes None rather than a misleading 0.
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, pred, labels=[0, 1], pos_label=1, average="binary", zero_division=np.nan
    )
    return {
        "confusion_matrix": cm.tolist(),
        "precision": _num(precision),
        "recall": _num(recall),
        "f1": _num(f1),
        # The mean of the normal class's F1 and the anomaly class's F1.
        "macro_f1": _num(
            precision_recall_fscore_support(
                labels, pred, labels=[0, 1], average="macro", zero_division=np.nan
            )[2]
        ),
        "accuracy": _ratio(tn + tp, int(cm.sum())),
        "false_positive_rate": _ratio(fp, fp + tn),
    }


def classification_report_text(confusion: Sequence[Sequence[int]]) -> str:
    """scikit-learn's classification report (normal / anomaly rows) for a 2x2 confusion matrix."""
    (tn, fp), (fn, tp) = confusion
    y_true = np.repeat([0, 0, 1, 1], [tn, fp, fn, tp])
    y_pred = np.repeat([0, 1, 0, 1], [tn, fp, fn, tp])
    text: str = classification_report(
        y_true,
        y_pred,
        labels=[0, 1],
        target_names=["normal", "anomaly"],
        digits=4,
        zero_division=0,
    )
    return text


def group_stats(group: NDArray[Any], clean: NDArray[Any], threshold: float) -> Metrics:
    """One group's size, AUROC/AUPRC against ``clean``, mean score and share flagged."""
    return {"n": int(group.size), **_separation(clean, group), **_score_stats(group, threshold)}


def summary_rows(metrics: Metrics) -> list[tuple[str, str]]:
    """A short (name, value) table of the headline numbers, for a terminal or a log."""
    at = metrics["at_threshold"]
    rows = [
        (
            "test images",
            f"{metrics['n_test']} ({metrics['n_normal']} normal, "
            f"{metrics['n_anomalous']} anomalous)",
        ),
        ("threshold", format_number(metrics["threshold"], 4, "g")),
        ("AUROC", format_number(metrics["overall"]["auroc"])),
        ("AUPRC", format_number(metrics["overall"]["auprc"])),
        ("precision", format_number(at["precision"])),
        ("recall", format_number(at["recall"])),
        ("F1", format_number(at["f1"])),
        ("false positive rate", format_number(at["false_positive_rate"])),
    ]
    for kind, stats in metrics["by_kind"].items():
        if "auroc" in stats:  # the normal kind is the reference and has none
            rows.append((f"AUROC {kind}", format_number(stats["auroc"])))
    return rows


def format_number(value: float | None, digits: int = 4, style: str = "f") -> str:
    """``value`` with ``digits`` decimals (or significant digits for style "g"); "n/a" if None."""
    return "n/a" if value is None else f"{value:.{digits}{style}}"


def _check_arrays(*arrays: ArrayLike) -> tuple[NDArray[Any], ...]:
    """Flat numpy arrays of one length, scores finite, clean kinds matching label 0."""
    scores, labels, kinds = (np.asarray(a).reshape(-1) for a in arrays)
    lengths = {a.size for a in (scores, labels, kinds)}
    if len(lengths) != 1:
        raise ValueError(f"scores, labels and kinds differ in length: {lengths}")
    if scores.size == 0:
        raise ValueError("no test images to evaluate")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("anomaly scores contain NaN or infinity (did training diverge?)")
    labels = labels.astype(int)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    kinds = kinds.astype(str)
    # Groups are compared against label-0 images, so the two views must agree.
    normal = set(kinds[labels == 0].tolist())
    if len(normal) > 1 or normal & set(kinds[labels == 1].tolist()):
        raise ValueError("one kind name must mark exactly the images with label 0")
    return scores, labels, kinds


def _by_kind(
    scores: NDArray[Any],
    kinds: NDArray[Any],
    labels: NDArray[Any],
    threshold: float,
    kind_order: Sequence[str] | None,
) -> dict[str, Metrics]:
    """The normal kind first (no AUROC: it is the reference), then each anomalous kind."""
    out: dict[str, Metrics] = {}
    clean = scores[labels == 0]
    if clean.size:
        out[str(kinds[labels == 0][0])] = {"n": int(clean.size), **_score_stats(clean, threshold)}
    present = set(kinds[labels == 1].tolist())
    if kind_order is None:
        # Single corruptions before combined ones ("noise", "rotation", "noise+rotation").
        ordered = sorted(present, key=lambda k: (k.count("+"), k))
    else:
        ordered = [k for k in kind_order if k in present]
        ordered += sorted(present - set(ordered))
    for kind in ordered:
        out[kind] = group_stats(scores[kinds == kind], clean, threshold)
    return out


def value_key(value: float) -> str:
    """A short, stable text key for a float: 0.1 -> "0.1", 10.0 -> "10"."""
    return f"{float(value):g}"


def _score_stats(scores: NDArray[Any], threshold: float) -> Metrics:
    return {
        "mean_score": _num(scores.mean()) if scores.size else None,
        "flagged": _ratio(int((scores > threshold).sum()), int(scores.size)),
    }


def _separation(negatives: NDArray[Any], positives: NDArray[Any]) -> Metrics:
    """AUROC and AUPRC of positives vs negatives; both None when either side is empty."""
    if negatives.size == 0 or positives.size == 0:
        return {"auroc": None, "auprc": None}
    y = np.concatenate([np.zeros(negatives.size), np.ones(positives.size)])
    s = np.concatenate([negatives, positives])
    return {
        "auroc": _num(roc_auc_score(y, s)),
        "auprc": _num(average_precision_score(y, s)),
    }


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _num(value: Any) -> float | None:
    """A plain float, or None for NaN (JSON has no NaN)."""
    out = float(value)
    return None if math.isnan(out) else out
