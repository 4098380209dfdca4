"""Images kept as they are stored, and turned into model input a batch at a time.

A training or test set of N images used to become one float32 tensor: four bytes per
pixel and channel, on top of the images themselves. ``LazyImages`` keeps the images as
they came (a uint8 or float array in memory, or ``DiskImages`` in the image cache) with
the rows it stands for, and gives float32 tensors in [0, 1] only for the rows read, so
memory holds a batch however many images there are. It answers ``len``, ``shape`` and
``[index]`` like the tensor it replaces, so the training loop and the scorer take either;
a uint8 image becomes exactly the float it became before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ae_anomaly.errors import UserError

# uint8 pixels are divided by this; float input must already lie in [0, 1].
UINT8_SCALE = 255.0
# Images checked at a time for bad float values (no copy of the whole set is made).
CHECK_CHUNK = 4096


class LazyImages:
    """Rows ``rows`` (all when None) of the (N, C, H, W) images in ``store``, read as
    float32 tensors in [0, 1] on ``device``."""

    def __init__(
        self, store: Any, rows: np.ndarray | None = None, device: torch.device | None = None
    ) -> None:
        self.store = store
        self.rows = rows
        self.device = device or torch.device("cpu")

    def __len__(self) -> int:
        return len(self.store) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.store.shape[1:]))

    def __getitem__(self, index: Any) -> torch.Tensor:
        """The images at ``index`` (an int, a slice, or integer positions; in a tuple,
        followed by indices into each image) as float32."""
        if isinstance(index, tuple):
            images, rest = self[index[0]], index[1:]
            whole = isinstance(index[0], int | np.integer)
            return images[rest] if whole else images[(slice(None), *rest)]
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        if isinstance(index, int | np.integer):
            return self[np.array([index])][0]
        if isinstance(index, slice) and self.rows is None:
            return _as_input(np.asarray(self.store[index]), self.device)
        positions = np.arange(len(self))[index] if isinstance(index, slice) else index
        return _as_input(_read(self.store, self._stored(positions)), self.device)

    def subset(self, positions: Any) -> LazyImages:
        """The images at ``positions`` (of these rows), still unread."""
        if isinstance(positions, torch.Tensor):
            positions = positions.cpu().numpy()
        return LazyImages(self.store, self._stored(np.asarray(positions)), self.device)

    def to(self, device: torch.device | str) -> LazyImages:
        """The same images, read onto ``device``."""
        return LazyImages(self.store, self.rows, torch.device(device))

    def _stored(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self.rows is None else self.rows[positions]


def as_lazy_images(images: Any) -> LazyImages:
    """``images`` ((N, H, W) or (N, C, H, W): uint8, or float in [0, 1]; an array, a
    tensor, DiskImages or LazyImages) checked, and to be read a batch at a time."""
    if isinstance(images, LazyImages):
        return images
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if len(images.shape) == 3 and isinstance(images, np.ndarray):
        images = images[:, None]
    if len(images.shape) != 4:
        raise UserError(
            f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise UserError("got an empty set of images")
    if images.dtype != np.uint8:
        _check_floats(images)
    return LazyImages(images)


def _check_floats(images: Any) -> None:
    if images.dtype.kind != "f":
        raise UserError(f"images must be uint8 or float, got {images.dtype}")
    for start in range(0, len(images), CHECK_CHUNK):
        part = np.asarray(images[start : start + CHECK_CHUNK])
        if not np.isfinite(part).all():
            raise UserError("images contain NaN or infinite values")
        low, high = float(part.min()), float(part.max())
        if low < 0.0 or high > 1.0:
            raise UserError(
                f"float images must have values in [0, 1], got values in [{low:g}, {high:g}]"
            )


def _read(store: Any, positions: np.ndarray) -> np.ndarray:
    """The stored images at ``positions``, in that order (read in sorted order: a file
    on disk is then read front to back)."""
    if isinstance(store, np.ndarray):
        return store[positions]
    order = np.argsort(positions, kind="stable")
    read = np.asarray(store[positions[order]])
    out = np.empty_like(read)
    out[order] = read
    return out


def _as_input(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch of stored images as float32 in [0, 1] on ``device``."""
    # torch takes neither read-only memory nor another byte order than the machine's.
    batch = np.require(
        batch, dtype=batch.dtype.newbyteorder("="), requirements=["C_CONTIGUOUS", "WRITEABLE"]
    )
    tensor = torch.from_numpy(batch).to(device)
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / UINT8_SCALE
    return tensor.to(torch.float32, copy=True)  # never the caller's own memory
