"""Reading ``.npy`` / ``.npz`` arrays of images.

Arrays are read with ``np.load(allow_pickle=False)``: object arrays, which would need
unpickling, are refused. An ``.npy``'s images can be read a batch at a time from the
file (``stored_rows``), so that training and scoring stream them.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ae_anomaly.data.disk_images import DiskImages
from ae_anomaly.data.images import describe_error
from ae_anomaly.errors import UserError

ARRAY_SUFFIXES = (".npy", ".npz")
# How each array file starts: numpy's format magic, and a zip archive's.
_ARRAY_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK\x03\x04"}
# Keys tried, in order, in an .npz holding more than one array.
NPZ_KEYS = ("images", "x", "X")
# uint8 pixels are divided by this; float input must already lie in [0, 1].
UINT8_SCALE = 255.0
# Images checked at a time for bad float values, or copied to a device (no copy of the
# whole set is made on the host).
CHECK_CHUNK = 4096


def load_array(path: Path | str, *, mmap: bool = False) -> np.ndarray:
    """The image array in an ``.npy`` file, or the one in an ``.npz`` (single array or NPZ_KEYS).

    Never unpickles: object arrays are refused. With ``mmap`` an ``.npy`` is
    memory-mapped (read-only) instead of read whole.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise UserError(f"{path} is not an .npy or .npz file")
    _check_magic(path, _ARRAY_MAGIC[suffix])
    if suffix == ".npy" and not mmap:
        _check_claimed_size(path)
    try:
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                array = archive[_npz_key(path, list(archive.files))]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(
                f"{path} holds Python objects, which would have to be unpickled; "
                "only numeric arrays are read"
            ) from None
        raise UserError(f"cannot read {path}: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {path}: {describe_error(exc)}") from None
    return _checked_array(array, path)


def _check_claimed_size(path: Path) -> None:
    """Refuse an .npy whose header claims more data than the file holds, before numpy
    allocates room for what the header claims (a crafted header can claim terabytes)."""
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(handle)
            available = path.stat().st_size - handle.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {describe_error(exc)}") from None
    claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if claimed > available:
        raise UserError(
            f"cannot read {path}: its header claims an array of shape {tuple(shape)} "
            f"({claimed:,} bytes), but the file holds {available:,} bytes"
        )


def _check_magic(path: Path, magic: bytes) -> None:
    """Refuse a file that does not start like its suffix says, before numpy guesses at it.

    Given other bytes, np.load would try to read the file as a pickle.
    """
    try:
        with path.open("rb") as handle:
            start = handle.read(len(magic))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if start != magic:
        kind = "an .npy file" if magic == _ARRAY_MAGIC[".npy"] else "an .npz (zip) file"
        raise UserError(f"cannot read {path}: it is not {kind}")


def _npz_key(path: Path, keys: list[str]) -> str:
    if len(keys) == 1:
        return keys[0]
    for key in NPZ_KEYS:
        if key in keys:
            return key
    raise UserError(
        f"{path} holds arrays {', '.join(keys) or '(none)'}; store the images as its only "
        f"array or under one of the names {', '.join(NPZ_KEYS)}"
    )


def _checked_array(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim not in (3, 4):
        raise UserError(
            f"{path} holds an array of shape {array.shape}; "
            "images must be (N, H, W) or (N, C, H, W)"
        )
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise UserError(
            f"{path} holds {array.dtype} values; images must be uint8 or float in [0, 1]"
        )
    if array.shape[0] == 0:
        raise UserError(f"{path} holds no images")
    return array


def as_nchw(array: np.ndarray) -> np.ndarray:
    return array[:, None] if array.ndim == 3 else array


def stored_rows(path: Path | str) -> np.ndarray | DiskImages:
    """The images (N, C, H, W) of an array file, checked, to be read a batch at a time:
    an ``.npy``'s rows are read from the file when asked for (DiskImages; a
    Fortran-ordered one is memory-mapped), an ``.npz`` is read whole."""
    mapped = load_array(path, mmap=True)
    if isinstance(mapped, np.memmap) and mapped.flags.c_contiguous:
        shape = mapped.shape if mapped.ndim == 4 else (mapped.shape[0], 1, *mapped.shape[1:])
        return DiskImages(Path(path), shape, mapped.dtype, int(mapped.offset))
    return as_nchw(mapped)


def array_length(path: Path) -> int:
    """Rows in an array file, from its header only: an .npz member is not decompressed."""
    if path.suffix.lower() == ".npy":
        return len(load_array(path, mmap=True))
    _check_magic(path, _ARRAY_MAGIC[".npz"])
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            with archive.open(members[_npz_key(path, list(members))]) as member:
                version = np.lib.format.read_magic(member)
                reader = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = reader(member)[0]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"cannot read {path}: {describe_error(exc)}") from None
    return int(shape[0]) if shape else 0


def is_array_file(path: Path) -> bool:
    return path.suffix.lower() in ARRAY_SUFFIXES


def check_float_images(images: Any) -> None:
    """Raise a UserError unless ``images`` are floats, finite, in [0, 1] (read a chunk at a
    time, so a memory-mapped or on-disk array is never copied whole)."""
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
