"""From an HTTP request to the detector's input: uploaded files or base64 images, each
converted and resized as `ae-anomaly score` does, or refused in one sentence."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from ae_anomaly.data.images import DEFAULT_MAX_PIXELS, UNREADABLE, describe_error, read_image


class BadInput(Exception):
    """What a client sent wrong: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def from_json(payload: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of each base64 image of ``{"images": ["<base64>", ...]}``."""
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise BadInput(400, 'the JSON body must be {"images": ["<base64>", ...]}')
    blobs = []
    for index, text in enumerate(images):
        try:
            blobs.append((f"images[{index}]", base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise BadInput(400, f"images[{index}] is not base64") from None
    return blobs


def decode(
    blobs: list[tuple[str, bytes]], shape: tuple[int, ...], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """The images as uint8 (N, C, H, W) of the detector's ``shape`` (C, H, W)."""
    if not blobs:
        raise BadInput(400, "no image was sent: send one or more 'file' fields or images")
    channels, height, width = shape
    decoded = []
    for name, data in blobs:
        try:
            decoded.append(read_image(io.BytesIO(data), (height, width), channels, max_pixels))
        except UNREADABLE as exc:
            raise BadInput(400, f"{name}: {describe_error(exc)}") from None
    return np.stack(decoded)
