"""Where the defect is: pixel-level AUROC and AUPRO of error maps against ground-truth masks.

- Pixel AUROC: every pixel of every test image is a sample (defect = positive).
- AUPRO, as the MVTec AD papers and anomalib compute it: at each threshold, the
  per-region overlap (PRO) is the mean, over the connected defect regions of all
  test images, of the share of the region's pixels above the threshold, and the
  false-positive rate is the share of defect-free pixels above it. The area under
  PRO against FPR, up to an FPR of 0.3, divided by 0.3.

Both are computed with sorted values and binary search, so the cost grows with the
number of pixels (a sort), not with the number of thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from sklearn.metrics import roc_auc_score

MAX_FPR = 0.3
# Points of the PRO curve between FPR 0 and MAX_FPR.
PRO_POINTS = 1000


def pixel_auroc(maps: NDArray[Any], masks: NDArray[np.bool_]) -> float | None:
    """AUROC of every pixel's error against its mask; None without both kinds of pixel."""
    truth = masks.reshape(-1)
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, maps.reshape(-1)))


def aupro(maps: NDArray[Any], masks: NDArray[np.bool_], max_fpr: float = MAX_FPR) -> float | None:
    """The normalised area under the per-region-overlap curve up to ``max_fpr``; None
    without defect regions or defect-free pixels."""
    normal = np.sort(maps[~masks].astype(np.float64))
    regions = [
        maps[i][labelled == k]
        for i, labelled, count in _regions(masks)
        for k in range(1, count + 1)
    ]
    if normal.size == 0 or not regions:
        return None
    # Thresholds at evenly spaced false-positive rates, from the defect-free pixels' values.
    thresholds = np.quantile(normal, 1.0 - np.linspace(0.0, max_fpr, PRO_POINTS))
    fpr = 1.0 - np.searchsorted(normal, thresholds, side="right") / normal.size
    pro = np.zeros(PRO_POINTS)
    for values in regions:
        ordered = np.sort(values.astype(np.float64))
        pro += 1.0 - np.searchsorted(ordered, thresholds, side="right") / ordered.size
    pro /= len(regions)
    inside = fpr <= max_fpr
    fpr, pro = np.append(fpr[inside], max_fpr), np.append(pro[inside], pro[inside][-1])
    order = np.argsort(fpr, kind="stable")
    x, y = fpr[order], pro[order]
    area = np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)  # the trapezoid rule
    return float(area / max_fpr)


def _regions(masks: NDArray[np.bool_]) -> list[tuple[int, NDArray[Any], int]]:
    """(image index, labelled regions, region count) of each image with a defect."""
    found = []
    for i, mask in enumerate(masks):
        if mask.any():
            labelled, count = ndimage.label(mask)
            found.append((i, labelled, int(count)))
    return found


def localisation_metrics(
    maps: NDArray[Any], masks: NDArray[np.bool_], kinds: NDArray[Any], labels: NDArray[Any]
) -> dict[str, Any]:
    """Pixel AUROC and AUPRO over all test images, and per anomalous kind (its images
    against the normal ones)."""
    normal = labels == 0
    by_kind = {}
    for kind in sorted(set(kinds[labels == 1].tolist())):
        chosen = normal | (kinds == kind)
        by_kind[kind] = {
            "pixel_auroc": pixel_auroc(maps[chosen], masks[chosen]),
            "aupro": aupro(maps[chosen], masks[chosen]),
        }
    return {
        "pixel_auroc": pixel_auroc(maps, masks),
        "aupro": aupro(maps, masks),
        "max_fpr": MAX_FPR,
        "by_kind": by_kind,
    }
