"""Streaming files, folders, globs and arrays in chunks, for scoring.

Memory holds one chunk of images however many there are; each chunk is converted to
the detector's input shape as it is read.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ae_anomaly.data.arrays import ARRAY_SUFFIXES, array_length, is_array_file, stored_rows
from ae_anomaly.data.images import (
    DEFAULT_MAX_PIXELS,
    OnError,
    Skipped,
    check_channels,
    check_on_error,
    check_size,
    is_image_file,
    iter_image_files,
    read_images,
)
from ae_anomaly.errors import UserError

# Images per chunk when streaming for scoring.
DEFAULT_CHUNK_SIZE = 256


@dataclass(frozen=True, eq=False)
class ImageChunk:
    """One chunk of a stream: images (k, C, H, W), uint8 or float, and a name for each;
    ``index``: its place among all the stream's chunks (those of other shards included)."""

    images: np.ndarray
    names: list[str]
    index: int = 0


# -- listing --------------------------------------------------------------------------------

# -- streaming for scoring --------------------------------------------------------------------


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)  # type: ignore[attr-defined,no-any-return]


def iter_input_files(inputs: Iterable[Path | str]) -> Iterator[Path]:
    """The image and array files that ``inputs`` name, in order, without listing them all first.

    An input is a file, a folder (its image files, recursively) or a glob
    pattern (``**`` included). One that names nothing is an error.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from iter_image_files(path)
        elif path.is_file():
            yield path
        elif _has_magic(str(item)):
            found = False
            for match in sorted(glob.iglob(str(item), recursive=True)):
                candidate = Path(match)
                if candidate.is_file() and (
                    is_image_file(candidate) or candidate.suffix.lower() in ARRAY_SUFFIXES
                ):
                    found = True
                    yield candidate
            if not found:
                raise UserError(f"no image or array file matches {item}")
        else:
            raise UserError(f"{item} does not exist")


def count_images(inputs: Iterable[Path | str]) -> int:
    """How many images ``inputs`` hold (array files count their rows), for a progress total."""
    total = 0
    for path in iter_input_files(inputs):
        total += array_length(path) if is_array_file(path) else 1
    return total


def iter_image_chunks(
    inputs: Iterable[Path | str],
    shape: Sequence[int],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: OnError = "fail",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    skipped: list[Skipped] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[ImageChunk]:
    """Stream ``inputs`` as chunks of at most ``chunk_size`` images of ``shape`` (C, H, W).

    Image files are converted and resized to ``shape``; arrays must already
    have it (uint8 or float in [0, 1]). Only one chunk of images is held at a
    time: an ``.npy``'s rows are read from the file a chunk at a time, but an ``.npz``
    is read whole (a zip member is compressed), so very large arrays belong in ``.npy``.
    Skipped files are appended to ``skipped`` as they happen.

    ``shard`` (rank, ranks): only every ranks-th chunk, from the rank-th, is read (the
    others are only listed), so that several processes share the stream.
    """
    if chunk_size < 1:
        raise UserError(f"the chunk size must be at least 1, got {chunk_size}")
    check_on_error(on_error)
    channels = check_channels(int(shape[0]))
    size = check_size((int(shape[1]), int(shape[2])), max_pixels)
    pending: list[Path] = []
    rank, ranks = shard
    counter = iter(range(2**62))  # every chunk's index, read by this shard or not

    def mine() -> int | None:
        index = next(counter)
        return index if index % ranks == rank else None

    def flush() -> Iterator[ImageChunk]:
        if not pending:
            return
        index = mine()
        if index is None:
            pending.clear()
            return
        read = read_images(pending, size, channels, on_error, max_pixels)
        pending.clear()
        if skipped is not None:
            skipped.extend(read.skipped)
        if read.paths:
            yield ImageChunk(read.images, read.paths, index)

    for path in iter_input_files(inputs):
        if not is_array_file(path):
            pending.append(path)
            if len(pending) == chunk_size:
                yield from flush()
            continue
        yield from flush()
        array = stored_rows(path)
        if tuple(array.shape[1:]) != (channels, *size):
            raise UserError(
                f"{path} holds images of shape {tuple(array.shape[1:])} (C, H, W); the detector "
                f"takes {(channels, *size)} and arrays are not resized"
            )
        for start in range(0, len(array), chunk_size):
            if (index := mine()) is None:
                continue
            part = np.asarray(array[start : start + chunk_size])
            names = [f"{path}[{i}]" for i in range(start, start + len(part))]
            yield ImageChunk(part, names, index)
    yield from flush()
