"""Turning user arrays into model-ready tensors: float32, (N, C, H, W), values in [0, 1].

``to_image_tensor`` converts a whole set at once (small sets: the classifier's); the
detector reads large sets a batch at a time through lazy_images.py, with the same
checks and the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from ae_anomaly.data.lazy_images import UINT8_SCALE, as_lazy_images

__all__ = ["UINT8_SCALE", "to_image_tensor"]


def to_image_tensor(images: Any) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) uint8 or float array -> float32 (N, C, H, W) in [0, 1]."""
    return as_lazy_images(images)[:]
