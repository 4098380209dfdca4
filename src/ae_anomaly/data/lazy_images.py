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

from ae_anomaly.data.arrays import CHECK_CHUNK, UINT8_SCALE, check_float_images
from ae_anomaly.errors import UserError

# The share of an accelerator's free memory the images may take to be kept there.
RESIDENT_SHARE = 0.5


class LazyImages:
    """Rows ``rows`` (all when None) of the (N, C, H, W) images in ``store``, read as
    float32 tensors in [0, 1] on ``device``. The store is host memory (an array, a memmap,
    DiskImages), or one tensor already on ``device`` (``resident``)."""

    def __init__(
        self,
        store: Any,
        rows: np.ndarray | torch.Tensor | None = None,
        device: torch.device | None = None,
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
        if isinstance(self.store, torch.Tensor):
            index = _on(self.store, index)
            stored = index if self.rows is None else self.rows[index]
            return _as_input(self.store[stored], self.device)
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
        if isinstance(self.store, torch.Tensor):  # rows kept as positions on the device
            positions = _on(self.store, positions)
            rows = positions if self.rows is None else self.rows[positions]
            return LazyImages(self.store, rows, self.device)
        if isinstance(positions, torch.Tensor):
            positions = positions.cpu().numpy()
        return LazyImages(self.store, self._stored(np.asarray(positions)), self.device)

    def to(self, device: torch.device | str) -> LazyImages:
        """The same images, read onto ``device``: on an accelerator they move there once
        (``resident``) when they take at most half its free memory."""
        device = torch.device(device)
        if device.type != "cpu" and self.stored_bytes() <= _free_bytes(device) * RESIDENT_SHARE:
            return self.resident(device)
        return LazyImages(self.store, self.rows, device)

    def resident(self, device: torch.device | str) -> LazyImages:
        """These images copied to ``device`` once, as stored (uint8 stays uint8, float
        becomes float32): batches are then gathered there, with no copy from the host."""
        device = torch.device(device)
        if isinstance(self.store, torch.Tensor):  # already resident: gather the rows there
            kept = self.store if self.rows is None else self.store[self.rows]
            return LazyImages(kept.to(device), None, device)
        dtype = torch.uint8 if self.store.dtype == np.uint8 else torch.float32
        store = torch.empty(tuple(self.shape), dtype=dtype, device=device)
        for start in range(0, len(self), CHECK_CHUNK):
            positions = np.arange(start, min(start + CHECK_CHUNK, len(self)))
            part = _host_tensor(_read(self.store, self._stored(positions)))
            store[start : start + len(part)] = part.to(device=device, dtype=dtype)
        return LazyImages(store, None, device)

    def stored_bytes(self) -> int:
        """The bytes these rows take as stored."""
        return len(self) * int(np.prod(self.store.shape[1:])) * self.store.dtype.itemsize

    def _stored(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self.rows is None else np.asarray(self.rows)[positions]


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
        check_float_images(images)
    return LazyImages(images)


def _free_bytes(device: torch.device) -> int:
    """Free memory on an accelerator (0 where torch cannot say)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return 0


def _on(store: torch.Tensor, index: Any) -> Any:
    """``index`` as a device-resident store takes it: positions on the store's device."""
    if isinstance(index, torch.Tensor | np.ndarray | list):
        return torch.as_tensor(index, device=store.device)
    return index


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


def _host_tensor(batch: np.ndarray) -> torch.Tensor:
    """Stored images as a tensor sharing their memory where torch can."""
    # torch takes neither read-only memory nor another byte order than the machine's.
    batch = np.require(
        batch, dtype=batch.dtype.newbyteorder("="), requirements=["C_CONTIGUOUS", "WRITEABLE"]
    )
    return torch.from_numpy(batch)


def _as_input(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of stored images as float32 in [0, 1] on ``device``."""
    tensor = (_host_tensor(batch) if isinstance(batch, np.ndarray) else batch).to(device)
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / UINT8_SCALE
    return tensor.to(torch.float32, copy=True)  # never the caller's own memory
