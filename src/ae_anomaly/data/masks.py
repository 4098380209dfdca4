"""Ground-truth masks of where the defects are, in the MVTec AD layout.

``root/ground_truth/<kind>/<name>_mask.png`` (or ``<name>.png``) marks the defect
pixels (non-zero) of ``root/test/<kind>/<name>.<ext>``. Normal test images
(``test/good/``, ``test/normal/``) have no mask: nothing in them is a defect. A mask
is resized to the images' size by nearest neighbour, so it stays binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ae_anomaly.data.images import UNREADABLE, Size, describe_error, open_image
from ae_anomaly.errors import UserError

GROUND_TRUTH_DIR = "ground_truth"
MASK_SUFFIXES = ("_mask.png", ".png")


def read_masks(
    ground_truth: Path,
    paths: Sequence[str],
    kinds: Sequence[str],
    labels: np.ndarray,
    size: Size,
    max_pixels: int,
) -> np.ndarray:
    """(N, H, W) bool: each anomalous test image's mask, all False for normal ones."""
    masks = np.zeros((len(paths), *size), dtype=bool)
    for i, (path, kind, label) in enumerate(zip(paths, kinds, labels, strict=True)):
        if label:
            masks[i] = read_mask(_mask_path(ground_truth, kind, Path(path)), size, max_pixels)
    return masks


def _mask_path(ground_truth: Path, kind: str, image: Path) -> Path:
    candidates = [ground_truth / kind / f"{image.stem}{suffix}" for suffix in MASK_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(
        f"{image} has no mask: expected {candidates[0]} (the folder has {GROUND_TRUTH_DIR}/, "
        "so every anomalous test image needs one)"
    )


def read_mask(path: Path, size: Size, max_pixels: int) -> np.ndarray:
    """One mask file as (H, W) bool, resized to ``size`` (height, width) by nearest neighbour."""
    try:
        with open_image(path, max_pixels) as image:
            grey = image.convert("L").resize((size[1], size[0]), Image.Resampling.NEAREST)
            return np.asarray(grey) > 127
    except UNREADABLE as exc:
        raise UserError(f"cannot read mask {path}: {describe_error(exc)}") from None
