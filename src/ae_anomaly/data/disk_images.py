"""Images stored row after row in a file, read a batch at a time with ``pread``.

The image cache keeps a folder's decoded images in such a file, and an ``.npy`` holds its
array that way after its header. Reading rows through a memory mapping instead would
make every page the mapping touched count as the process's memory until the mapping is
dropped, so an epoch over the file would grow it with the number of images.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ae_anomaly.errors import UserError


class DiskImages:
    """Images (N, C, H, W) stored row after row in a file from byte ``offset`` on (the
    image cache's raw uint8 files, an .npy's data), read a batch at a time.

    Answers ``len``, ``shape``, ``dtype`` and ``[index]`` (an int, a slice or integer
    positions, then in a tuple indices into each image) like the array it stands for;
    each read is a copy in memory.

    Rows are read with ``pread``, not through a memory mapping: the pages a mapping
    touches count as the process's resident memory until it is dropped, so an epoch
    over a mapped file grew it with the number of images (a run on 20,000 colour 64x64
    images peaked at 871 MiB mapped, 642 read this way). Read this way, the pages stay
    in the kernel's page cache, which gives them up when memory is needed.
    """

    def __init__(
        self, path: Path, shape: Sequence[int], dtype: Any = np.uint8, offset: int = 0
    ) -> None:
        self.path = path
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._file: tuple[int, int] | None = None  # (process id, descriptor)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):  # rows, then indices into each image
            rows, rest = self[index[0]], index[1:]
            single = isinstance(index[0], int | np.integer)
            return rows[rest] if single else rows[(slice(None), *rest)]
        if isinstance(index, int | np.integer):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._read_rows(start, max(stop - start, 0))
            index = np.arange(start, stop, step)
        positions = np.asarray(index, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"image index out of range for {len(self)} images")
        positions = positions % max(len(self), 1)
        return self._gather(positions)

    def _gather(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions``: one read for each run of consecutive rows."""
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.dtype)
        if not len(positions):
            return out
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        firsts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(positions)]))
        flat = out.reshape(len(positions), -1)
        for first, end in zip(firsts.tolist(), ends.tolist(), strict=True):
            self._read_into(flat[first:end], int(positions[first]))
        return out

    def _read_rows(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        if count:
            self._read_into(out.reshape(count, -1), start)
        return out

    def _read_into(self, rows: np.ndarray, first: int) -> None:
        """Fill ``rows`` (contiguous) from the file's rows starting at ``first``."""
        wanted, offset = rows.nbytes, self.offset + first * self._row_bytes
        view = memoryview(rows.data).cast("B")
        while wanted:
            got = os.preadv(self._descriptor(), [view[rows.nbytes - wanted :]], offset)
            if got == 0:
                raise UserError(
                    f"{self.path} is shorter than its images need (changed while it was "
                    "read?); for the image cache, delete the file to decode the images again"
                )
            wanted, offset = wanted - got, offset + got

    def _descriptor(self) -> int:
        """The file, opened once per process (a forked process opens its own)."""
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._file[1]

    def __del__(self) -> None:
        if self._file is not None and self._file[0] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._file[1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}
