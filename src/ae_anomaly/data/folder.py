"""Bring your own images: image folders and ``.npy`` / ``.npz`` arrays.

A dataset folder is laid out like this (sub-folders below ``train/`` and
below each test kind are searched too; hidden files and files with other
suffixes are ignored)::

    root/
      train/            normal images, the only ones trained on
      test/normal/      optional: normal test images (label 0)
      test/<kind>/      optional: anomalies of that kind (label 1), any name but "normal"

Images may be PNG, JPEG, BMP or TIFF, grey or colour; a photo's EXIF
orientation is applied, so images are read the way viewers show them. Every image is
converted to the chosen channel count (by default the one all training
images share; a mix is refused) and resized to the chosen size (by default
the most common size in ``train/``) as it is read, so memory holds N images
of the target size, never N images of their original size. Images come out
as uint8 arrays of shape (N, C, H, W).

A file Pillow cannot decode, and an image with more pixels than
``max_pixels`` (a decompression bomb, or an absurd size), is *unreadable*:
with ``on_error="fail"`` the first one ends the read with a UserError naming
it, with ``"skip"`` it is left out and listed in the result's ``skipped``.

Arrays are read with ``np.load(allow_pickle=False)``: object arrays, which
would need unpickling, are refused. ``.npy`` files are memory-mapped, so
that scoring streams them chunk by chunk.

``load_image_source`` is the entry point for training: given a dataset
folder or an array file it returns the training images and, for a folder
with ``test/``, the labelled test set. ``iter_image_chunks`` streams files,
folders, globs and arrays in chunks for scoring.
"""

from __future__ import annotations

import glob
import os
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ae_anomaly.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".npz")
# How each array file starts: numpy's format magic, and a zip archive's.
_ARRAY_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK\x03\x04"}
# Keys tried, in order, in an .npz holding more than one array.
NPZ_KEYS = ("images", "x", "X")
TRAIN_DIR = "train"
TEST_DIR = "test"
NORMAL_KIND = "normal"
# Pixels one image may have, before or after resizing: 40 megapixels is larger
# than any photo a detector here needs, and far below what would exhaust memory.
# Pillow's own guard (MAX_IMAGE_PIXELS, about 89 megapixels) is left as it is:
# this limit is checked first, from the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Images per chunk when streaming for scoring.
DEFAULT_CHUNK_SIZE = 256

OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")
Size = tuple[int, int]  # (height, width)

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
_UNREADABLE: tuple[type[BaseException], ...] = (*_DECODE_ERRORS, _TooLarge)
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


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """A test set: images (N, C, H, W) uint8, labels (1 = anomaly), kind and file of each."""

    images: np.ndarray
    labels: np.ndarray  # (N,) int64
    kinds: list[str]  # the test/ sub-folder each image came from
    paths: list[str]


@dataclass(frozen=True, eq=False)
class FolderDataset:
    """What ``load_image_source`` read: training images and the optional test set."""

    source: Path
    train_images: np.ndarray  # (N, C, H, W) uint8 (array files: as stored, uint8 or float)
    train_paths: list[str]
    test: LabelledImages | None
    skipped: list[Skipped]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        _, c, h, w = self.train_images.shape
        return (int(c), int(h), int(w))


@dataclass(frozen=True, eq=False)
class ImageChunk:
    """One chunk of a stream: images (k, C, H, W), uint8 or float, and a name for each."""

    images: np.ndarray
    names: list[str]


# -- listing --------------------------------------------------------------------------------


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible_files(folder: Path) -> Iterator[Path]:
    """Every non-hidden file below ``folder``, in sorted order, symlinked folders not followed."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(current) / name


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


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise UserError(f"images must have 1 (grey) or 3 (colour) channels, got {channels!r}")
    return channels


def _open(path: Path, max_pixels: int) -> Image.Image:
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


def _upright_size(image: Image.Image) -> Size:
    """(height, width) as the image is shown: EXIF orientations 5-8 turn it by 90 degrees.

    Cameras store photos as taken and record the turn in EXIF; read_image
    applies it, so the most common size must be counted the same way.
    """
    turned = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (image.width, image.height) if turned else (image.height, image.width)


def _describe(exc: BaseException) -> str:
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
    path: Path | str, size: Size, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """One image file as uint8 (C, H, W): converted to ``channels`` and resized to ``size``.

    Raises the decoder's exception (or ``_TooLarge``) for an unreadable file;
    ``read_images`` turns those into a UserError or a skip.
    """
    side = max(size)
    with _open(Path(path), max_pixels) as image:
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
    _check_channels(channels)
    _check_on_error(on_error)
    out = np.empty((len(paths), channels, *target), dtype=np.uint8)
    kept: list[str] = []
    skipped: list[Skipped] = []
    for path in paths:
        try:
            out[len(kept)] = read_image(path, target, channels, max_pixels)
        except _UNREADABLE as exc:
            reason = _describe(exc)
            if on_error == "fail":
                raise UserError(_unreadable_sentence(path, reason)) from None
            skipped.append(Skipped(str(path), reason))
            continue
        kept.append(str(path))
    # Only when files were skipped does the array need trimming (a copy, so
    # that the unused tail is freed).
    images = out if len(kept) == len(paths) else out[: len(kept)].copy()
    return ImageSet(images, kept, skipped)


def _unreadable_sentence(path: Path | str, reason: str) -> str:
    return (
        f"cannot read image {path}: {reason} (choose on-error skip to leave unreadable "
        "files out and count them)"
    )


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise UserError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


# -- a dataset folder ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    path: Path
    channels: int
    size: Size  # (height, width)


def _headers(
    paths: Sequence[Path], on_error: OnError, max_pixels: int
) -> tuple[list[_Header], list[Skipped]]:
    """Mode and size of each file, read from its header only (no pixels are decoded)."""
    headers: list[_Header] = []
    skipped: list[Skipped] = []
    for path in paths:
        try:
            with _open(path, max_pixels) as image:
                headers.append(_Header(path, image_channels(image.mode), _upright_size(image)))
        except _UNREADABLE as exc:
            if on_error == "fail":
                raise UserError(_unreadable_sentence(path, _describe(exc))) from None
            skipped.append(Skipped(str(path), _describe(exc)))
    return headers, skipped


def _shared_channels(headers: Sequence[_Header], folder: Path) -> int:
    """The channel count every training image has; a mix of grey and colour is refused."""
    counts = Counter(h.channels for h in headers)
    if len(counts) == 1:
        return next(iter(counts))
    grey = next(h.path for h in headers if h.channels == 1)
    colour = next(h.path for h in headers if h.channels == 3)
    raise UserError(
        f"{folder} mixes grey ({counts[1]} files, e.g. {grey.name}) and colour images "
        f"({counts[3]} files, e.g. {colour.name}); choose channels 1 or 3 to convert them all"
    )


def _most_common_size(headers: Sequence[_Header]) -> Size:
    """The most common (height, width); a tie goes to the size met first in sorted order."""
    return Counter(h.size for h in headers).most_common(1)[0][0]


def _unreadable_folder(folder: Path, skipped: Sequence[Skipped]) -> UserError:
    first = skipped[0]
    return UserError(
        f"none of the {len(skipped)} image files in {folder} could be read "
        f"(e.g. {Path(first.path).name}: {first.reason})"
    )


def load_image_folder(
    root: Path | str,
    *,
    size: Sequence[int] | None = None,
    channels: int | None = None,
    on_error: OnError = "fail",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FolderDataset:
    """Read a dataset folder: ``train/`` and, if present, ``test/normal/`` and ``test/<kind>/``.

    ``size`` (height, width) defaults to the most common size in ``train/``;
    ``channels`` (1 or 3) to the one all training images share.
    """
    root = Path(root)
    _check_on_error(on_error)
    train_dir = root / TRAIN_DIR
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    if not train_dir.is_dir():
        raise UserError(
            f"{root} has no {TRAIN_DIR}/ folder; put the normal training images in {train_dir}"
        )
    files = list_image_files(train_dir)
    if not files:
        raise UserError(f"{train_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    headers, skipped = _headers(files, on_error, max_pixels)
    if not headers:
        raise _unreadable_folder(train_dir, skipped)
    channels = _shared_channels(headers, train_dir) if channels is None else channels
    _check_channels(channels)
    target = check_size(size if size is not None else _most_common_size(headers), max_pixels)
    train = read_images([h.path for h in headers], target, channels, on_error, max_pixels)
    skipped += train.skipped
    if len(train.paths) == 0:
        raise _unreadable_folder(train_dir, skipped)
    test = None
    if (root / TEST_DIR).is_dir():
        test, test_skipped = _load_test(root / TEST_DIR, target, channels, on_error, max_pixels)
        skipped += test_skipped
    return FolderDataset(root, train.images, train.paths, test, skipped)


def _load_test(
    folder: Path, size: Size, channels: int, on_error: OnError, max_pixels: int
) -> tuple[LabelledImages, list[Skipped]]:
    loose = [path for path in folder.iterdir() if path.is_file() and is_image_file(path)]
    if loose:
        raise UserError(
            f"{folder} holds images outside a sub-folder (e.g. {loose[0].name}); put them in "
            f"{folder / NORMAL_KIND} or {folder}/<anomaly kind>/"
        )
    paths: list[Path] = []
    kinds: list[str] = []
    for kind_dir in sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        files = list_image_files(kind_dir)
        paths += files
        kinds += [kind_dir.name] * len(files)
    if not paths:
        raise UserError(
            f"{folder} holds no images; put normal test images in {folder / NORMAL_KIND} and "
            f"anomalies in {folder}/<anomaly kind>/, or remove it"
        )
    read = read_images(paths, size, channels, on_error, max_pixels)
    if not read.paths:
        raise _unreadable_folder(folder, read.skipped)
    kind_of = dict(zip(map(str, paths), kinds, strict=True))
    kept_kinds = [kind_of[p] for p in read.paths]
    labels = np.array([int(k.lower() != NORMAL_KIND) for k in kept_kinds], dtype=np.int64)
    return LabelledImages(read.images, labels, kept_kinds, read.paths), read.skipped


# -- arrays -----------------------------------------------------------------------------------


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
        raise UserError(f"cannot read {path}: {_describe(exc)}") from None
    return _checked_array(array, path)


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


def _as_nchw(array: np.ndarray) -> np.ndarray:
    return array[:, None] if array.ndim == 3 else array


# -- the entry point for training -------------------------------------------------------------


def load_image_source(
    path: Path | str,
    *,
    size: Sequence[int] | None = None,
    channels: int | None = None,
    on_error: OnError = "fail",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FolderDataset:
    """Training images (and the test set, if any) from a dataset folder or an array file.

    A folder is read with ``load_image_folder``; an ``.npy`` / ``.npz`` gives
    training images only (test None), as stored: ``size`` and ``channels``
    must then match the array or be left out.
    """
    path = Path(path)
    if path.is_dir():
        return load_image_folder(
            path, size=size, channels=channels, on_error=on_error, max_pixels=max_pixels
        )
    if path.suffix.lower() in ARRAY_SUFFIXES:
        if not path.is_file():
            raise UserError(f"{path} does not exist")
        images = _as_nchw(load_array(path))
        _, c, h, w = images.shape
        if (size is not None and tuple(size) != (h, w)) or (channels not in (None, c)):
            raise UserError(
                f"{path} holds images of {c} channel(s) and size {h}x{w}; arrays are not "
                "resized or converted"
            )
        names = [f"{path}[{i}]" for i in range(len(images))]
        return FolderDataset(path, images, names, None, [])
    if not path.exists():
        raise UserError(f"{path} does not exist")
    raise UserError(f"{path} is neither a folder of images nor an .npy / .npz file")


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
        total += _array_length(path) if _is_array(path) else 1
    return total


def _array_length(path: Path) -> int:
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
        raise UserError(f"cannot read {path}: {_describe(exc)}") from None
    return int(shape[0]) if shape else 0


def _is_array(path: Path) -> bool:
    return path.suffix.lower() in ARRAY_SUFFIXES


def iter_image_chunks(
    inputs: Iterable[Path | str],
    shape: Sequence[int],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: OnError = "fail",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    skipped: list[Skipped] | None = None,
) -> Iterator[ImageChunk]:
    """Stream ``inputs`` as chunks of at most ``chunk_size`` images of ``shape`` (C, H, W).

    Image files are converted and resized to ``shape``; arrays must already
    have it (uint8 or float in [0, 1]). Only one chunk of images is held at a
    time: ``.npy`` files are memory-mapped, but an ``.npz`` is read whole (a
    zip member cannot be mapped), so very large arrays belong in ``.npy``.
    Skipped files are appended to ``skipped`` as they happen.
    """
    if chunk_size < 1:
        raise UserError(f"the chunk size must be at least 1, got {chunk_size}")
    _check_on_error(on_error)
    channels = _check_channels(int(shape[0]))
    size = check_size((int(shape[1]), int(shape[2])), max_pixels)
    pending: list[Path] = []

    def flush() -> Iterator[ImageChunk]:
        read = read_images(pending, size, channels, on_error, max_pixels)
        pending.clear()
        if skipped is not None:
            skipped.extend(read.skipped)
        if read.paths:
            yield ImageChunk(read.images, read.paths)

    for path in iter_input_files(inputs):
        if not _is_array(path):
            pending.append(path)
            if len(pending) == chunk_size:
                yield from flush()
            continue
        yield from flush()
        array = _as_nchw(load_array(path, mmap=True))
        if tuple(array.shape[1:]) != (channels, *size):
            raise UserError(
                f"{path} holds images of shape {tuple(array.shape[1:])} (C, H, W); the detector "
                f"takes {(channels, *size)} and arrays are not resized"
            )
        for start in range(0, len(array), chunk_size):
            part = np.array(array[start : start + chunk_size])  # a copy: the mmap stays cold
            names = [f"{path}[{i}]" for i in range(start, start + len(part))]
            yield ImageChunk(part, names)
    yield from flush()
