"""The image cache: a folder's images decoded once into a uint8 file on disk.

Decoding and resizing image files is the slow part of reading a folder, and holding
every decoded image in memory is what limits its size. ``cached_images`` decodes the
files a chunk at a time, appends each chunk to one raw file (N, C, H, W uint8) in the
cache folder (data/decoding.py: in worker processes for a large folder), and returns
``DiskImages`` over it, which reads the rows asked for. The
file is named by a digest of what went into it (each file's path, size and modification
time; the size and channels asked for), so a second run on the same folder reads no
image file, and any change to the folder makes a new entry. An entry is complete or
absent: its pixels, then its description (JSON), are each written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ae_anomaly.data.decoding import decoded_chunks
from ae_anomaly.data.images import (
    ImageSet,
    OnError,
    Skipped,
    regular_only,
    unreadable_sentence,
)
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import atomic_write, write_text

CACHE_FORMAT = 1


class DiskImages:
    """uint8 images (N, C, H, W) in a raw file, read a batch at a time.

    Answers ``len``, ``shape``, ``dtype`` and ``[index]`` (an int, a slice or integer
    positions) like the array it stands for; each read is a copy in memory.

    Rows are read with ``pread``, not through a memory mapping: the pages a mapping
    touches count as the process's resident memory until it is dropped, so an epoch
    over a mapped file grew it with the number of images (a run on 20,000 colour 64x64
    images peaked at 871 MiB mapped, 642 read this way). Read this way, the pages stay
    in the kernel's page cache, which gives them up when memory is needed.
    """

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        self.path = path
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(np.uint8)
        self._row_bytes = int(np.prod(self.shape[1:]))
        self._file: tuple[int, int] | None = None  # (process id, descriptor)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
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
        out = np.empty((len(positions), *self.shape[1:]), dtype=np.uint8)
        if not len(positions):
            return out
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        firsts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(positions)]))
        flat = out.reshape(len(positions), self._row_bytes)
        for first, end in zip(firsts.tolist(), ends.tolist(), strict=True):
            self._read_into(flat[first:end], int(positions[first]))
        return out

    def _read_rows(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self.shape[1:]), dtype=np.uint8)
        if count:
            self._read_into(out.reshape(count, self._row_bytes), start)
        return out

    def _read_into(self, rows: np.ndarray, first: int) -> None:
        """Fill ``rows`` (contiguous) from the file's rows starting at ``first``."""
        wanted, offset = rows.nbytes, first * self._row_bytes
        view = memoryview(rows.data).cast("B")
        while wanted:
            got = os.preadv(self._descriptor(), [view[rows.nbytes - wanted :]], offset)
            if got == 0:
                raise UserError(
                    f"the image cache file {self.path} is shorter than it should be; "
                    "delete it to decode the images again"
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


def cached_images(
    paths: Sequence[Path],
    size: tuple[int, int],
    channels: int,
    on_error: OnError,
    max_pixels: int,
    folder: Path,
) -> ImageSet:
    """``read_images`` of ``paths``, through the cache in ``folder``."""
    paths, not_regular = regular_only(paths)
    key = _digest(paths, list(size), channels)
    entry = _read_entry(folder, key)
    if entry is None:
        entry = _write_entry(folder, key, paths, size, channels, on_error, max_pixels)
    images, kept, skipped = entry
    skipped = not_regular + skipped
    if skipped and on_error == "fail":
        raise UserError(unreadable_sentence(skipped[0].path, skipped[0].reason))
    return ImageSet(images, kept, skipped)  # type: ignore[arg-type]


def remembered(
    folder: Path, paths: Sequence[Path], what: list[Any], compute: Callable[[], Any]
) -> Any:
    """``compute()`` (a JSON value), or what it gave before for the same files (each
    one's path, size and modification time) and ``what``, kept in the cache ``folder``.

    For what a folder's files say without being decoded (their headers), so that a
    later run on the same folder opens none of them. A cache that cannot be written
    only costs the time to compute it again."""
    file = folder / f"{_digest(paths, *what)}.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compute()
    with contextlib.suppress(OSError):
        file.parent.mkdir(parents=True, exist_ok=True)
        write_text(file, json.dumps({"value": value}))
    return value


def _digest(paths: Sequence[Path], *what: Any) -> str:
    """A key for ``paths`` as they are now (path, size, modification time) and ``what``."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, *what]).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


Entry = tuple[DiskImages, list[str], list[Skipped]]


def _read_entry(folder: Path, key: str) -> Entry | None:
    description, pixels = folder / f"{key}.json", folder / f"{key}.u8"
    try:
        meta = json.loads(description.read_text(encoding="utf-8"))
        shape = tuple(meta["shape"])
        if pixels.stat().st_size != int(np.prod(shape)) or len(meta["paths"]) != shape[0]:
            return None  # damaged: decode again
        skipped = [Skipped(path, reason) for path, reason in meta["skipped"]]
        return DiskImages(pixels, shape), list(meta["paths"]), skipped
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_entry(
    folder: Path,
    key: str,
    paths: Sequence[Path],
    size: tuple[int, int],
    channels: int,
    on_error: OnError,
    max_pixels: int,
) -> Entry:
    """Decode ``paths`` chunk by chunk into a new cache entry; an unreadable file ends it
    (``on_error`` fail) or is left out and recorded (skip)."""
    _check_disk(folder, len(paths) * channels * size[0] * size[1])
    pixels = folder / f"{key}.u8"
    kept: list[str] = []
    skipped: list[Skipped] = []

    def decode_into(tmp: Path) -> None:
        with tmp.open("wb") as stream:
            for read in decoded_chunks(paths, size, channels, on_error, max_pixels):
                stream.write(read.images.tobytes())
                kept.extend(read.paths)
                skipped.extend(read.skipped)

    try:
        atomic_write(pixels, decode_into)
        shape = (len(kept), channels, *size)
        meta = {"shape": shape, "paths": kept, "skipped": [[s.path, s.reason] for s in skipped]}
        write_text(folder / f"{key}.json", json.dumps(meta))
    except OSError as exc:
        message = f"cannot write the image cache in {folder}: {exc.strerror or exc}"
        raise UserError(message) from None
    return DiskImages(pixels, shape), kept, skipped


def free_bytes(folder: Path) -> int:
    """Bytes free on the disk holding ``folder``."""
    return shutil.disk_usage(folder).free


def _check_disk(folder: Path, needed: int) -> None:
    """Refuse, before decoding, images that cannot fit on the cache's disk."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = free_bytes(folder)
    except OSError as exc:
        raise UserError(f"cannot use the image cache in {folder}: {exc.strerror}") from None
    if needed > free:
        raise UserError(
            f"the decoded images would need {needed / 2**30:.1f} GiB in the image cache "
            f"{folder}, more than the {free / 2**30:.1f} GiB free; use a smaller --image-size "
            "or fewer images, or point AE_ANOMALY_CACHE at a larger disk"
        )
