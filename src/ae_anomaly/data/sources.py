"""Where datasets come from: the registry, the search for local copies and the download.

A dataset is looked for in ``<root>/<name>/`` under each of these roots in
turn: an explicit ``data_dir``, ``$AE_ANOMALY_DATA``, the per-user cache
(``$AE_ANOMALY_CACHE`` or the platform's cache folder) and Debian's
``/usr/share/datasets``. A root that lacks the folder or any of the four files
is skipped; a root with all four files is used, and a bad file there is an
error rather than a reason to look further, so that a broken copy is noticed.
When no root has the dataset it is downloaded from its mirrors into the cache.

Every file is checked against the SHA-256 of its *decompressed* bytes, since
mirrors recompress the .gz files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from ae_anomaly.data import idx
from ae_anomaly.errors import UserError

ENV_DATA = "AE_ANOMALY_DATA"
ENV_CACHE = "AE_ANOMALY_CACHE"
DEBIAN_ROOT = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 60.0

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

_FIX = "delete it to have it downloaded again"


@dataclass(frozen=True)
class FileSpec:
    """One of a dataset's four IDX files."""

    base: str  # file name without .gz, e.g. "train-images-idx3-ubyte"
    sha256: str  # of the decompressed bytes
    ndim: int  # 3 for images, 1 for labels


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its files, their checksums and where to download them."""

    name: str
    description: str
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def files(self) -> tuple[FileSpec, FileSpec, FileSpec, FileSpec]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, verified dataset. The arrays are read-only: copy before changing them."""

    name: str
    train_images: np.ndarray  # (N, H, W) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    location: Path  # the folder the files were read from


@dataclass(frozen=True)
class Location:
    """Where a complete set of a dataset's files was found."""

    source: str  # "--data-dir", "AE_ANOMALY_DATA", "cache", "debian" or "download"
    folder: Path
    paths: dict[str, Path]  # FileSpec.base -> the file to read (.gz preferred)


@dataclass(frozen=True)
class DatasetStatus:
    """One row of ``ae-anomaly datasets``."""

    name: str
    description: str
    source: str | None  # label of the root it was found under; None if not found
    location: Path | None
    verdict: str  # "verified", "not found" or the error sentence

    @property
    def ok(self) -> bool:
        return self.verdict == "verified"


def _spec(
    name: str,
    description: str,
    sums: tuple[str, str, str, str],
    mirrors: Sequence[str],
    class_names: Sequence[str],
) -> DatasetSpec:
    """A spec for a dataset laid out like MNIST: the same four file names, in this order."""
    return DatasetSpec(
        name=name,
        description=description,
        train_images=FileSpec(TRAIN_IMAGES, sums[0], ndim=3),
        train_labels=FileSpec(TRAIN_LABELS, sums[1], ndim=1),
        test_images=FileSpec(TEST_IMAGES, sums[2], ndim=3),
        test_labels=FileSpec(TEST_LABELS, sums[3], ndim=1),
        mirrors=tuple(mirrors),
        class_names=tuple(class_names),
    )


REGISTRY: dict[str, DatasetSpec] = {
    "mnist": _spec(
        "mnist",
        "MNIST handwritten digits: 60,000 train + 10,000 test, 28x28 grey, 10 classes",
        (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        [str(d) for d in range(10)],
    ),
    "fashion-mnist": _spec(
        "fashion-mnist",
        "Fashion-MNIST clothing (Zalando): 60,000 train + 10,000 test, 28x28 grey, 10 classes",
        (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    ),
}


# --- registry -------------------------------------------------------------------------


def dataset_names() -> list[str]:
    return list(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown dataset '{name}'; choose one of: {', '.join(REGISTRY)}") from None


# --- where to look --------------------------------------------------------------------


def cache_root() -> Path:
    """The per-user cache folder that downloads go to."""
    override = os.environ.get(ENV_CACHE)
    return Path(override or platformdirs.user_cache_dir("ae-anomaly")).expanduser()


def search_roots(data_dir: Path | str | None = None) -> list[tuple[str, Path]]:
    """The roots searched for ``<root>/<name>/``, in order, each with a label."""
    candidates: list[tuple[str, Path]] = []
    if data_dir is not None:
        candidates.append(("--data-dir", _existing_folder(Path(data_dir), "--data-dir")))
    if env := os.environ.get(ENV_DATA):
        candidates.append((ENV_DATA, _existing_folder(Path(env), ENV_DATA)))
    candidates.append(("cache", cache_root()))
    candidates.append(("debian", DEBIAN_ROOT))
    # The same folder given twice (say --data-dir and the env var) is looked at once.
    seen: set[Path] = set()
    roots = []
    for label, root in candidates:
        key = root.resolve()
        if key not in seen:
            seen.add(key)
            roots.append((label, root))
    return roots


def _existing_folder(path: Path, named_by: str) -> Path:
    # A folder the user names explicitly must exist: a typo there should not
    # quietly fall through to the cache or a download.
    path = path.expanduser()
    if not path.is_dir():
        raise UserError(f"the data folder {path} given by {named_by} does not exist")
    return path


def locate_dataset(name: str, data_dir: Path | str | None = None) -> Location | None:
    """The first root holding all four files of dataset ``name``, without reading them."""
    return _search(get_spec(name), data_dir)[0]


def _search(spec: DatasetSpec, data_dir: Path | str | None) -> tuple[Location | None, list[str]]:
    """The first complete location, and the folders looked at (with why each was skipped)."""
    looked: list[str] = []
    for label, root in search_roots(data_dir):
        folder = root / spec.name
        paths, missing = _scan(spec, folder)
        if not missing:
            return Location(label, folder, paths), looked
        looked.append(f"{folder} (incomplete, no {missing[0]})" if folder.is_dir() else str(folder))
    return None, looked


def _scan(spec: DatasetSpec, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The files present in ``folder`` (.gz preferred) and the base names missing."""
    paths: dict[str, Path] = {}
    missing = []
    for fs in spec.files:
        gz, raw = folder / f"{fs.base}.gz", folder / fs.base
        if gz.is_file():
            paths[fs.base] = gz
        elif raw.is_file():
            paths[fs.base] = raw
        else:
            missing.append(fs.base)
    return paths, missing


# --- loading --------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> Dataset:
    """Find dataset ``name`` (downloading it if allowed and needed), verify it and load it."""
    spec = get_spec(name)
    location, looked = _search(spec, data_dir)
    if location is not None:
        return _read_dataset(spec, location)
    where = ", ".join(looked)
    hint = f"pass --data-dir or set {ENV_DATA} to a folder holding {spec.name}/"
    if not download:
        raise UserError(f"dataset '{name}' not found in {where}; {hint}")
    try:
        from ae_anomaly.data.download import download_dataset

        folder = download_dataset(name, mirrors)
    except UserError as exc:
        raise UserError(
            f"dataset '{name}' not found in {where}, and could not be downloaded ({exc}); {hint}"
        ) from exc
    paths, _ = _scan(spec, folder)
    return _read_dataset(spec, Location("download", folder, paths))


@dataclass(frozen=True, eq=False)
class _Part:
    """One file read and parsed, with the hash of its decompressed bytes."""

    path: Path
    array: np.ndarray
    sha256: str


def _read_dataset(spec: DatasetSpec, location: Location) -> Dataset:
    """Read the four files and check them; structure and counts first, then checksums.

    Counts are checked before checksums so that a mismatch between images and
    labels is reported as such rather than as an anonymous checksum failure.
    """
    parts = {fs.base: _read_part(location.paths[fs.base], fs.ndim) for fs in spec.files}
    train_x, train_y = parts[spec.train_images.base], parts[spec.train_labels.base]
    test_x, test_y = parts[spec.test_images.base], parts[spec.test_labels.base]
    _check_counts(location.folder, train_x, train_y)
    _check_counts(location.folder, test_x, test_y)
    _check_image_sizes(location.folder, train_x, test_x)
    for fs in spec.files:
        _check_digest(spec, fs, parts[fs.base])
    return Dataset(
        name=spec.name,
        train_images=train_x.array,
        train_labels=_labels(train_y.array),
        test_images=test_x.array,
        test_labels=_labels(test_y.array),
        class_names=spec.class_names,
        location=location.folder,
    )


def _read_part(path: Path, ndim: int) -> _Part:
    raw = idx.read_file(path)
    try:
        data = idx.decompress(raw, path)
        array = idx.parse_idx(data, path, ndim=ndim)
    except UserError as exc:
        raise UserError(f"{exc}; {_FIX}") from exc
    return _Part(path, array, hashlib.sha256(data).hexdigest())


def _labels(array: np.ndarray) -> np.ndarray:
    labels = array.astype(np.int64)
    labels.flags.writeable = False  # like the images, which are views on read-only bytes
    return labels


def _check_counts(folder: Path, images: _Part, labels: _Part) -> None:
    n_images, n_labels = len(images.array), len(labels.array)
    if n_images != n_labels:
        raise UserError(
            f"the files in {folder} do not belong together: {images.path.name} holds "
            f"{n_images} images but {labels.path.name} holds {n_labels} labels; "
            f"delete them to have them downloaded again"
        )


def _check_image_sizes(folder: Path, train: _Part, test: _Part) -> None:
    train_hw, test_hw = train.array.shape[1:], test.array.shape[1:]
    if train_hw != test_hw:
        raise UserError(
            f"the files in {folder} do not belong together: {train.path.name} holds "
            f"{'x'.join(map(str, train_hw))} images but {test.path.name} holds "
            f"{'x'.join(map(str, test_hw))} images; delete them to have them downloaded again"
        )


def _check_digest(spec: DatasetSpec, fs: FileSpec, part: _Part) -> None:
    if part.sha256 != fs.sha256:
        raise UserError(
            f"{part.path} is not the published {spec.name} {fs.base} file (SHA-256 of its "
            f"decompressed bytes is {part.sha256}, expected {fs.sha256}); {_FIX}"
        )


# --- status ---------------------------------------------------------------------------


def dataset_status(data_dir: Path | str | None = None) -> list[DatasetStatus]:
    """For each registered dataset: where it would be loaded from and whether it verifies.

    Never downloads; reads and hashes every file found.
    """
    rows = []
    for spec in REGISTRY.values():
        location, _ = _search(spec, data_dir)
        if location is None:
            rows.append(DatasetStatus(spec.name, spec.description, None, None, "not found"))
            continue
        try:
            _read_dataset(spec, location)
            verdict = "verified"
        except UserError as exc:
            verdict = str(exc)
        rows.append(
            DatasetStatus(spec.name, spec.description, location.source, location.folder, verdict)
        )
    return rows
