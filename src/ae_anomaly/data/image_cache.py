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
from ae_anomaly.data.disk_images import DiskImages
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
