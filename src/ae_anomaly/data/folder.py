"""Bring your own images: image folders and ``.npy`` / ``.npz`` arrays.

A dataset folder is laid out like this (sub-folders below ``train/`` and
below each test kind are searched too; hidden files and files with other
suffixes are ignored)::

    root/
      train/            normal images, the only ones trained on (MVTec AD: train/good/)
      test/normal/      optional: normal test images (label 0); test/good/ in MVTec AD
      test/<kind>/      optional: anomalies of that kind (label 1), any name but those two
      ground_truth/<kind>/<name>_mask.png
                        optional (MVTec AD): where the defect is, per anomalous test image

Images are read by images.py, arrays by arrays.py. By default every image is converted
to the channel count all training images share (a mix is refused) and resized to the
most common size in ``train/``. ``load_image_source`` is the entry point for training:
given a dataset folder or an array file it returns the training images and, for a
folder with ``test/``, the labelled test set. Scoring streams its inputs (stream.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ae_anomaly.data.arrays import ARRAY_SUFFIXES, stored_rows
from ae_anomaly.data.image_cache import DiskImages, cached_images, remembered
from ae_anomaly.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    UNREADABLE,
    OnError,
    Size,
    Skipped,
    check_channels,
    check_on_error,
    check_size,
    describe_error,
    image_channels,
    is_image_file,
    list_image_files,
    open_image,
    regular_only,
    unreadable_sentence,
    upright_size,
)
from ae_anomaly.data.masks import GROUND_TRUTH_DIR, read_masks
from ae_anomaly.errors import UserError

TRAIN_DIR = "train"
TEST_DIR = "test"
NORMAL_KIND = "normal"
# The names of the test/ folder of normal images: ours, and the MVTec AD layout's.
NORMAL_KINDS = (NORMAL_KIND, "good")


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """A test set: images (N, C, H, W) uint8, labels (1 = anomaly), kind and file of each."""

    images: np.ndarray | DiskImages
    labels: np.ndarray  # (N,) int64
    kinds: list[str]  # the test/ sub-folder each image came from
    paths: list[str]
    masks: np.ndarray | None = None  # (N, H, W) bool defect pixels, with ground_truth/


@dataclass(frozen=True, eq=False)
class FolderDataset:
    """What ``load_image_source`` read: training images and the optional test set."""

    source: Path
    # (N, C, H, W) uint8 in the image cache (array files: as stored, uint8 or float)
    train_images: np.ndarray | DiskImages
    train_paths: list[str]
    test: LabelledImages | None
    skipped: list[Skipped]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        _, c, h, w = self.train_images.shape
        return (int(c), int(h), int(w))


# -- a dataset folder ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    path: Path
    channels: int
    size: Size  # (height, width)


def _headers(
    paths: Sequence[Path], on_error: OnError, max_pixels: int
) -> tuple[list[_Header], list[Skipped]]:
    """Mode and size of each file, read from its header only (no pixels are decoded), and
    remembered in the image cache: a later run on the same files opens none of them."""
    paths, skipped = regular_only(paths)

    def read() -> dict[str, list[list[Any]]]:
        rows: list[list[Any]] = []
        unreadable: list[list[str]] = []
        for path in paths:
            try:
                with open_image(path, max_pixels) as image:
                    rows.append([str(path), image_channels(image.mode), *upright_size(image)])
            except UNREADABLE as exc:
                unreadable.append([str(path), describe_error(exc)])
        return {"headers": rows, "unreadable": unreadable}

    found = remembered(image_cache_folder(), paths, ["headers", max_pixels], read)
    unreadable = [Skipped(path, reason) for path, reason in found["unreadable"]]
    if unreadable and on_error == "fail":  # the first in the files' order, as before
        raise UserError(unreadable_sentence(unreadable[0].path, unreadable[0].reason))
    skipped += unreadable
    headers = [_Header(Path(path), channels, (h, w)) for path, channels, h, w in found["headers"]]
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
    """Read a dataset folder: ``train/`` and, if present, ``test/normal/`` (or ``good/``),
    ``test/<kind>/`` and the masks in ``ground_truth/`` (data/masks.py).

    ``size`` (height, width) defaults to the most common size in ``train/``;
    ``channels`` (1 or 3) to the one all training images share.
    """
    root = Path(root)
    check_on_error(on_error)
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
    check_channels(channels)
    target = check_size(size if size is not None else _most_common_size(headers), max_pixels)
    test_files = _test_files(root / TEST_DIR) if (root / TEST_DIR).is_dir() else None
    # Decoded once into the image cache (on disk), read from there a batch at a time.
    train = cached_images(
        [h.path for h in headers], target, channels, on_error, max_pixels, image_cache_folder()
    )
    skipped += train.skipped
    if len(train.paths) == 0:
        raise _unreadable_folder(train_dir, skipped)
    test = None
    if test_files is not None:
        test, test_skipped = _load_test(test_files, target, channels, on_error, max_pixels)
        skipped += test_skipped
        if (root / GROUND_TRUTH_DIR).is_dir():
            masks = read_masks(
                root / GROUND_TRUTH_DIR, test.paths, test.kinds, test.labels, target, max_pixels
            )
            test = replace(test, masks=masks)
    return FolderDataset(root, train.images, train.paths, test, skipped)


@dataclass(frozen=True)
class _TestFiles:
    """The image files of a test/ folder: those in a kind's sub-folder, with their kinds,
    and those outside any (which _load_test refuses)."""

    folder: Path
    paths: list[Path]
    kinds: list[str]
    loose: list[Path]


def _test_files(folder: Path) -> _TestFiles:
    loose = [path for path in folder.iterdir() if path.is_file() and is_image_file(path)]
    paths: list[Path] = []
    kinds: list[str] = []
    for kind_dir in sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        files = list_image_files(kind_dir)
        paths += files
        kinds += [kind_dir.name] * len(files)
    return _TestFiles(folder, paths, kinds, loose)


def _load_test(
    listed: _TestFiles, size: Size, channels: int, on_error: OnError, max_pixels: int
) -> tuple[LabelledImages, list[Skipped]]:
    folder, paths, kinds, loose = listed.folder, listed.paths, listed.kinds, listed.loose
    if loose:
        raise UserError(
            f"{folder} holds images outside a sub-folder (e.g. {loose[0].name}); put them in "
            f"{folder / NORMAL_KIND} or {folder}/<anomaly kind>/"
        )
    if not paths:
        raise UserError(
            f"{folder} holds no images; put normal test images in {folder / NORMAL_KIND} and "
            f"anomalies in {folder}/<anomaly kind>/, or remove it"
        )
    read = cached_images(paths, size, channels, on_error, max_pixels, image_cache_folder())
    if not read.paths:
        raise _unreadable_folder(folder, read.skipped)
    kind_of = dict(zip(map(str, paths), kinds, strict=True))
    kept_kinds = [kind_of[p] for p in read.paths]
    labels = np.array([int(k.lower() not in NORMAL_KINDS) for k in kept_kinds], dtype=np.int64)
    return LabelledImages(read.images, labels, kept_kinds, read.paths), read.skipped


# -- the entry point for training -------------------------------------------------------------


def image_cache_folder() -> Path:
    """Where decoded images are kept (image_cache.py): under the package's cache folder."""
    from ae_anomaly.data.sources import cache_root

    return cache_root() / "images"


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
        # Not read yet: the images are read a batch at a time (.npz: read whole).
        images = stored_rows(path)
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
