"""Turning user arrays into model-ready tensors: float32, (N, C, H, W), values in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from ae_anomaly.errors import UserError

# uint8 pixels are divided by this; float input must already lie in [0, 1].
UINT8_SCALE = 255.0


def to_image_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) uint8 or float array -> float32 (N, C, H, W) in [0, 1]."""
    if isinstance(images, np.ndarray):
        # torch takes neither read-only memory nor negative strides (flipped views), nor
        # another byte order than the machine's (a big-endian .npy).
        images = np.require(
            images, dtype=images.dtype.newbyteorder("="), requirements=["C_CONTIGUOUS", "WRITEABLE"]
        )
    tensor = torch.as_tensor(images)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 4:
        raise UserError(
            f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise UserError("got an empty set of images")
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / UINT8_SCALE
    if not tensor.is_floating_point():
        raise UserError(f"images must be uint8 or float, got {tensor.dtype}")
    tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise UserError("images contain NaN or infinite values")
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0.0 or high > 1.0:
        raise UserError(
            f"float images must have values in [0, 1], got values in [{low:g}, {high:g}]"
        )
    return tensor
