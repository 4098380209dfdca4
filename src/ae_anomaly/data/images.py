"""Reading image files: PNG, JPEG, BMP or TIFF, grey or colour, to uint8 (N, C, H, W).

A photo's EXIF orientation is applied, so images are read the way viewers show them.
Every image is converted to the chosen channel count and resized to the chosen size as
it is read, so memory holds N images of the target size, never N images of their
original size. A file Pillow cannot decode, and an image with more pixels than
``max_pixels`` (a decompression bomb, or an absurd size), is *unreadable*: with
``on_error="fail"`` the first one ends the read with a UserError naming it, with
``"skip"`` it is left out and listed in the result's ``skipped``.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ae_anomaly.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL_KIND = "normal"
# Pixels one image may have, before or after resizing: 40 megapixels is larger
# than any photo a detector here needs, and far below what would exhaust memory.
# Pillow's own guard (MAX_IMAGE_PIXELS, about 89 megapixels) is left as it is:
# this limit is checked first, from the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000


OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")
Size = tuple[int, int]  # (height, width)
PathT = TypeVar("PathT", Path, str, Path | str)

# What Pillow's decoders raise on malformed input: besides OSError (unknown
# format, truncated data) its plugins let ValueError, SyntaxError, EOFError,
# struct and zlib errors and some index / key / type errors escape.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    Image.DecompressionBombError,
)


class _TooLarge(Exception):
    """An image over the pixel limit; caught with the decoder errors and reported like them."""


# Every exception that makes one file unreadable (rather than the whole read wrong).
UNREADABLE: tuple[type[BaseException], ...] = (*_DECODE_ERRORS, _TooLarge)
_EXIF_ORIENTATION = 0x0112
# Pillow modes that hold one grey channel; every other mode is read as RGB.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class Skipped:
    """An unreadable file left out, and why."""

    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images read from files: uint8 (N, C, H, W), the file of each, the files left out."""

    images: np.ndarray
    paths: list[str]
    skipped: list[Skipped] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible_files(folder: Path) -> Iterator[Path]:
    """Every non-hidden file below ``folder``, in sorted order, symlinked folders not followed."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(current) / name


IRREGULAR = "it is not a regular file (a named pipe, socket or device), so it was skipped"


def regular_only(paths: Sequence[PathT]) -> tuple[list[PathT], list[Skipped]]:
    """``paths`` less those that are not regular files, which are skipped without being
    opened (reading a named pipe would wait forever), whatever ``on_error`` says. A path
    that cannot be looked at stays: opening it will say what is wrong."""
    kept: list[PathT] = []
    skipped: list[Skipped] = []
    for path in paths:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = True
        if regular:
            kept.append(path)
        else:
            skipped.append(Skipped(str(path), IRREGULAR))
    return kept, skipped


def iter_image_files(folder: Path | str) -> Iterator[Path]:
    """The image files below ``folder`` (recursively, sorted), one at a time."""
    return (path for path in _visible_files(Path(folder)) if is_image_file(path))


def list_image_files(folder: Path | str) -> list[Path]:
    """The image files below ``folder`` (recursively, sorted); a missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    return list(iter_image_files(folder))


# -- reading images -------------------------------------------------------------------------


def check_size(size: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS) -> Size:
    """``size`` as (height, width), after checking it is usable."""
    values = tuple(size)
    if len(values) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise UserError(
            f"an image size must be two positive whole numbers (height, width), got {size!r}"
        )
    height, width = int(values[0]), int(values[1])
    if height * width > max_pixels:
        raise UserError(
            f"image size {height}x{width} has {height * width:,} pixels, more than the limit "
            f"of {max_pixels:,}"
        )
    return height, width


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise UserError(f"images must have 1 (grey) or 3 (colour) channels, got {channels!r}")
    return channels


def open_image(path: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """The opened image (header read, pixels not yet decoded), refused if it is too large."""
    with warnings.catch_warnings():
        # Pillow warns above its own limit; the explicit check below says more.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _TooLarge(
            f"it has {width}x{height} = {width * height:,} pixels, more than the limit "
            f"of {max_pixels:,}"
        )
    return image


def upright_size(image: Image.Image) -> Size:
    """(height, width) as the image is shown: EXIF orientations 5-8 turn it by 90 degrees.

    Cameras store photos as taken and record the turn in EXIF; read_image
    applies it, so the most common size must be counted the same way.
    """
    turned = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (image.width, image.height) if turned else (image.height, image.width)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"it is a possible decompression bomb ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        # Pillow's own message only repeats the path.
        return "not an image file Pillow can read (unknown format or corrupt)"
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


def image_channels(mode: str) -> int:
    """1 for Pillow's grey modes, 3 for every other mode (colour, palette, CMYK)."""
    return 1 if mode in _GREY_MODES else 3


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """The image converted to 8-bit grey ("L") or RGB."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit values instead of scaling them.
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    target = "L" if channels == 1 else "RGB"
    if image.mode in ("P", "PA") and channels == 1:
        image = image.convert("RGB")  # a palette converts to grey via its colours
    return image if image.mode == target else image.convert(target)


def _resized(image: Image.Image, size: Size) -> Image.Image:
    height, width = size
    if image.size == (width, height):
        return image
    # Shrinking averages the source pixels each target pixel covers (area);
    # growing interpolates bilinearly.
    shrinking = image.width >= width and image.height >= height
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return image.resize((width, height), resample=method)


def read_image(
    path: Path | str | BinaryIO,
    size: Size,
    channels: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """One image file (a path, or an open binary stream such as an upload) as uint8
    (C, H, W): converted to ``channels`` and resized to ``size``.

    Raises the decoder's exception (or ``_TooLarge``) for an unreadable file;
    ``read_images`` turns those into a UserError or a skip.
    """
    side = max(size)
    source = Path(path) if isinstance(path, str | Path) else path
    with open_image(source, max_pixels) as image:
        # A JPEG can decode straight to a smaller scale: much less memory for big
        # photos. Square, because the EXIF rotation below may swap the sides.
        image.draft("L" if channels == 1 else "RGB", (side, side))
        upright = ImageOps.exif_transpose(image)
        converted = _resized(_to_mode(upright, channels), size)
        pixels = np.asarray(converted, dtype=np.uint8)
    if pixels.ndim == 2:
        return pixels[None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def read_images(
    paths: Sequence[Path | str],
    size: Sequence[int],
    channels: int,
    on_error: OnError = "fail",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSet:
    """Read ``paths`` into one uint8 (N, C, H, W) array, each resized as it is read.

    Unreadable files end the read (``on_error="fail"``, a UserError naming
    the file) or are left out and listed in ``skipped`` (``"skip"``).
    """
    target = check_size(size, max_pixels)
    check_channels(channels)
    check_on_error(on_error)
    paths, skipped = regular_only(paths)
    out = np.empty((len(paths), channels, *target), dtype=np.uint8)
    kept: list[str] = []
    for path in paths:
        try:
            out[len(kept)] = read_image(path, target, channels, max_pixels)
        except UNREADABLE as exc:
            reason = describe_error(exc)
            if on_error == "fail":
                raise UserError(unreadable_sentence(path, reason)) from None
            skipped.append(Skipped(str(path), reason))
            continue
        kept.append(str(path))
    # Only when files were skipped does the array need trimming (a copy, so
    # that the unused tail is freed).
    images = out if len(kept) == len(paths) else out[: len(kept)].copy()
    return ImageSet(images, kept, skipped)


def unreadable_sentence(path: Path | str, reason: str) -> str:
    return (
        f"cannot read image {path}: {reason} (choose on-error skip to leave unreadable "
        "files out and count them)"
    )


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise UserError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
