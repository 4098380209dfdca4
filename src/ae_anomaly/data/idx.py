"""Reading IDX files, the format MNIST and Fashion-MNIST are published in.

An IDX file starts with a 4-byte magic number (two zero bytes, a type code,
the number of dimensions), then one big-endian uint32 per dimension, then the
values in C order. Files may be gzip-compressed; that is told from the first
two bytes, not from the file name. Only the unsigned-byte type (0x08) is
supported: it is the only one these datasets use.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ae_anomaly.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)

_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short",
    0x0C: "int",
    0x0D: "float",
    0x0E: "double",
}
_KINDS = {3: "image", 1: "label"}


def read_file(path: Path) -> bytes:
    """The file's bytes as stored (still compressed if it is gzip)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc})") from exc


def decompress(data: bytes, source: Path | str) -> bytes:
    """``data`` gunzipped if it starts with the gzip magic bytes, else unchanged.

    ``source`` (a path or URL) only names the data in error messages.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except EOFError as exc:
        raise UserError(f"{source} is a truncated gzip file ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{source} is a corrupt gzip file ({exc})") from exc


def parse_idx(data: bytes, source: Path | str, *, ndim: int | None = None) -> np.ndarray:
    """The uint8 array held by the decompressed IDX bytes ``data``.

    With ``ndim`` given, the magic number must be 0x0000080<ndim>. The array is
    a read-only view on ``data`` (no copy).
    """
    magic = _check_magic(data, source, ndim)
    shape = _read_shape(data, source, magic & 0xFF)
    header = 4 + 4 * len(shape)
    expected = math.prod(shape)
    if len(data) - header != expected:
        dims = "x".join(str(d) for d in shape)
        raise UserError(
            f"{source} holds {len(data) - header} bytes of data but its IDX header declares "
            f"shape {dims} ({expected} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def read_idx(path: Path, *, ndim: int | None = None) -> tuple[np.ndarray, bytes]:
    """The array in the IDX file at ``path`` and the file's decompressed bytes.

    The bytes are returned so that callers can hash exactly what was parsed.
    """
    data = decompress(read_file(path), path)
    return parse_idx(data, path, ndim=ndim), data


def read_images(path: Path) -> np.ndarray:
    """The (N, H, W) uint8 images in an IDX image file."""
    return read_idx(path, ndim=3)[0]


def read_labels(path: Path) -> np.ndarray:
    """The (N,) uint8 labels in an IDX label file."""
    return read_idx(path, ndim=1)[0]


def _check_magic(data: bytes, source: Path | str, ndim: int | None) -> int:
    """The magic number, after checking it is an IDX one of the supported type."""
    if len(data) < 4:
        raise UserError(f"{source} is not an IDX file (it holds only {len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if ndim is not None and magic != (UBYTE << 8 | ndim):
        kind = _KINDS.get(ndim, f"{ndim}-dimensional")
        raise UserError(
            f"{source} is not an IDX {kind} file "
            f"(magic number 0x{magic:08x}, expected 0x{UBYTE << 8 | ndim:08x})"
        )
    if data[0] or data[1]:
        raise UserError(
            f"{source} is not an IDX file (magic number 0x{magic:08x}, "
            f"expected two zero bytes, a type code and a dimension count)"
        )
    if data[2] != UBYTE:
        type_name = _TYPE_NAMES.get(data[2], "unknown")
        raise UserError(
            f"{source} holds IDX values of type 0x{data[2]:02x} ({type_name}); "
            f"only 0x08 (unsigned byte) is supported"
        )
    if data[3] == 0:
        raise UserError(f"{source} is not a usable IDX file (its header declares zero dimensions)")
    return magic


def _read_shape(data: bytes, source: Path | str, ndim: int) -> tuple[int, ...]:
    """The dimensions that follow the magic number."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(
            f"{source} is truncated "
            f"(its IDX header needs {header} bytes, the file holds {len(data)})"
        )
    # Python ints, so that the product of the dimensions cannot overflow.
    return tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
