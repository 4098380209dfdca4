"""Scenario splits: which images the detector trains on, calibrates on and is tested on.

- "corruptions": clean training digits (labels ignored) split into train and
  validation; a test set of clean test digits plus corrupted copies of *other*
  test digits (each test digit is used once).
- "one-class": the training images of one class split into train and
  validation; the whole test split as test set, every other class an anomaly.
- "unsupervised": all training images (labels ignored) split into train and
  validation; every training and test image is then ranked (no test set).
- "folder": your own images (see data/folder.py): train/ split into train and
  validation; test/ (normal/ and one folder per anomaly kind) as test set, or,
  without test/, every training image ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ae_anomaly.config import CORRUPTION_KINDS, CorruptionConfig, DataConfig
from ae_anomaly.data.corruptions import add_gaussian_noise, random_shifts, resample
from ae_anomaly.data.folder import FolderDataset
from ae_anomaly.data.sources import Dataset
from ae_anomaly.data.tensors import to_image_tensor
from ae_anomaly.errors import UserError

# Independent random streams, so that changing one choice (say the validation
# share) does not reshuffle another (the test corruptions).
_SPLIT_STREAM, _TEST_STREAM = 1, 2


@dataclass(frozen=True)
class TestSet:
    """Test images with what was done to each; label 1 = anomaly."""

    images: torch.Tensor  # (N, C, H, W) float in [0, 1]
    labels: np.ndarray  # (N,) int64
    kinds: np.ndarray  # (N,) str: clean, noise, rotation, noise+rotation
    noise_std: np.ndarray  # (N,) float, 0 where no noise was added
    angle: np.ndarray  # (N,) float degrees, 0 where not rotated
    shift: np.ndarray  # (N, 2) sub-pixel shift (x, y) every digit got, see corruptions
    source_index: np.ndarray  # (N,) index into the dataset's test split
    source_label: np.ndarray  # (N,) the dataset's class label of each image (display only)
    paths: tuple[str, ...] | None = None  # the file of each image, for image folders

    def describe(self, index: int, sep: str = ", ") -> str:
        """What was done to image ``index``, e.g. "noise+rotation, std 0.2, +17 deg"."""
        parts = [str(self.kinds[index])]
        if self.noise_std[index] > 0:
            parts.append(f"std {self.noise_std[index]:g}")
        if self.angle[index] != 0:
            parts.append(f"{self.angle[index]:+.0f} deg")
        return sep.join(parts)


@dataclass(frozen=True)
class ScenarioData:
    train: torch.Tensor  # normal images the detector learns from
    val: torch.Tensor  # normal images for early stopping and the threshold
    test: TestSet | None  # labelled test set; None where the scenario only ranks
    kind_order: tuple[str, ...] | None = None  # report order of the anomalous kinds
    ranked: RankingSet | None = None  # the images to rank (unsupervised scenario)
    skipped: tuple[str, ...] = ()  # "path: reason" of each unreadable file left out
    # Class labels of train and val (guard scenario: the classifier learns from them).
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None


@dataclass(frozen=True)
class RankingSet:
    """Every image the unsupervised scenario ranks: the training images, then the test ones."""

    images: torch.Tensor  # (N, C, H, W) float in [0, 1]
    split: np.ndarray  # (N,) str: "train" or "test"
    index: np.ndarray  # (N,) index into that split of the dataset
    label: np.ndarray | None  # (N,) class label (display only, never used to fit); None: none
    class_names: tuple[str, ...]
    paths: tuple[str, ...] | None = None  # the file of each image, for image folders


def labelled_test(data: ScenarioData) -> TestSet:
    """The scenario's test set; a scenario without one is a programming error here."""
    if data.test is None:
        raise ValueError("this scenario has no labelled test set")
    return data.test


def corruptions_scenario(
    dataset: Dataset, data: DataConfig, corruptions: CorruptionConfig, seed: int
) -> ScenarioData:
    """Build the train / validation / test split of the corruptions scenario."""
    train, val = split_normal(dataset.train_images, data, seed)
    # Training and validation digits take the same resampling path (angle 0,
    # a random sub-pixel shift) as every test digit, so no split is smoother
    # than another.
    generator = torch.Generator().manual_seed(seed)  # train shifts first, then val
    train, val = (
        resample(
            x, torch.zeros(len(x)), corruptions.resample_factor, random_shifts(len(x), generator)
        )
        for x in (train, val)
    )
    test = corrupted_test_set(dataset.test_images, data.test_limit, corruptions, seed)
    test = replace(test, source_label=dataset.test_labels[test.source_index])
    train_labels, val_labels = split_labels(dataset.train_labels, data, seed)
    return ScenarioData(
        train=train, val=val, test=test, train_labels=train_labels, val_labels=val_labels
    )


def one_class_scenario(dataset: Dataset, data: DataConfig, seed: int) -> ScenarioData:
    """Normal = the training images of ``data.normal_class``; test = the whole test split.

    Images are used as they are (no resampling): nothing is rotated here, and this
    is the standard one-class novelty protocol.
    """
    normal_class = checked_class(dataset, data.normal_class)
    train, val = split_normal(
        dataset.train_images[dataset.train_labels == normal_class], data, seed
    )
    # Sorted, so a limited test set keeps the dataset's order (and every index once).
    order = _limited_order(len(dataset.test_images), data.test_limit, seed, _TEST_STREAM)
    classes = dataset.test_labels[order]
    names = class_kinds(dataset, normal_class)
    n = len(order)
    test = TestSet(
        images=to_image_tensor(dataset.test_images[order]),
        labels=(classes != normal_class).astype(np.int64),
        kinds=np.array(names, dtype=object)[classes].astype(str),
        noise_std=np.zeros(n),
        angle=np.zeros(n),
        shift=np.zeros((n, 2)),
        source_index=order,
        source_label=classes,
    )
    if not (test.labels == 0).any():
        raise UserError(
            f"the {n} test images drawn hold no image of the normal class; raise test_limit"
        )
    return ScenarioData(train=train, val=val, test=test, kind_order=tuple(names))


def checked_class(dataset: Dataset, normal_class: int | None) -> int:
    """``normal_class`` if the dataset has it, else a UserError listing the classes."""
    count = len(dataset.class_names)
    if normal_class is None or not 0 <= normal_class < count:
        listing = ", ".join(f"{i} {name}" for i, name in enumerate(dataset.class_names))
        got = "none given" if normal_class is None else f"got {normal_class}"
        raise UserError(
            f"the one-class scenario needs normal_class, a class of {dataset.name} "
            f"from 0 to {count - 1} ({listing}); {got}"
        )
    return normal_class


def class_kinds(dataset: Dataset, normal_class: int) -> list[str]:
    """Kind names per class: the class name, marked "(normal)" for the normal one."""
    return [
        f"{name} (normal)" if i == normal_class else name
        for i, name in enumerate(dataset.class_names)
    ]


def unsupervised_scenario(dataset: Dataset, data: DataConfig, seed: int) -> ScenarioData:
    """All training images, labels ignored, split into train and validation; then every
    training image (validation ones included) and every test image is ranked."""
    train, val = split_normal(dataset.train_images, data, seed)
    train_index = _limited_order(len(dataset.train_images), data.train_limit, seed, _SPLIT_STREAM)
    test_index = _limited_order(len(dataset.test_images), data.test_limit, seed, _TEST_STREAM)
    images = np.concatenate([dataset.train_images[train_index], dataset.test_images[test_index]])
    ranked = RankingSet(
        images=to_image_tensor(images),
        split=np.array(["train"] * len(train_index) + ["test"] * len(test_index)),
        index=np.concatenate([train_index, test_index]),
        label=np.concatenate([dataset.train_labels[train_index], dataset.test_labels[test_index]]),
        class_names=dataset.class_names,
    )
    return ScenarioData(train=train, val=val, test=None, ranked=ranked)


def _limited_order(n: int, limit: int | None, seed: int, stream: int) -> np.ndarray:
    """The indices a ``limit`` keeps (the same draw as split_normal's), in dataset order."""
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.permutation(n)[:limit])


def split_normal(
    images: np.ndarray, data: DataConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle, keep at most ``train_limit`` images and hold out ``val_fraction`` of them."""
    order, n_val = _split_order(len(images), data, seed)
    tensor = to_image_tensor(images[order])
    return tensor[n_val:], tensor[:n_val]


def split_labels(labels: np.ndarray, data: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labels of the images ``split_normal`` puts in train and validation, in its order."""
    order, n_val = _split_order(len(labels), data, seed)
    return labels[order[n_val:]], labels[order[:n_val]]


def _split_order(n: int, data: DataConfig, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    order = rng.permutation(n)[: data.train_limit]
    n_val = max(1, round(len(order) * data.val_fraction))
    if n_val >= len(order):
        raise UserError(
            f"holding out val_fraction {data.val_fraction:g} of {len(order)} training images "
            "leaves none to train on"
        )
    return order, n_val


def corrupted_test_set(
    images: np.ndarray, test_limit: int | None, corruptions: CorruptionConfig, seed: int
) -> TestSet:
    """Assign each test digit a kind, draw its noise std and angle, and apply them."""
    rng = np.random.default_rng([seed, _TEST_STREAM])
    order = rng.permutation(len(images))[:test_limit]
    kinds = _assign_kinds(len(order), corruptions.mix)
    noisy = np.isin(kinds, ["noise", "noise+rotation"])
    rotated = np.isin(kinds, ["rotation", "noise+rotation"])
    noise_std = np.where(noisy, rng.choice(np.asarray(corruptions.noise_std), len(order)), 0.0)
    angles = rng.uniform(-corruptions.max_angle, corruptions.max_angle, len(order))
    angles = np.where(rotated, angles, 0.0)

    clean = to_image_tensor(images[order])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    shifts = random_shifts(len(order), generator)
    resampled = resample(
        clean, torch.from_numpy(angles).float(), corruptions.resample_factor, shifts
    )
    corrupted = add_gaussian_noise(resampled, torch.from_numpy(noise_std).float(), generator)
    return TestSet(
        images=corrupted,
        labels=(kinds != "clean").astype(np.int64),
        kinds=kinds,
        noise_std=noise_std,
        angle=angles,
        shift=shifts.numpy(),
        source_index=order,
        source_label=np.full(len(order), -1),  # set by the caller, which has the labels
    )


def _assign_kinds(n: int, mix: dict[str, float]) -> np.ndarray:
    """Exactly round(n * share) images per kind (largest remainder), in a fixed order.

    The test digits are already shuffled, so giving the first block to "clean",
    the next to "noise" and so on is a random assignment.
    """
    names = [kind for kind in CORRUPTION_KINDS if mix.get(kind, 0) > 0]
    exact = np.array([mix[k] * n for k in names])
    counts = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - counts), kind="stable")
    counts[remainder_order[: n - counts.sum()]] += 1
    return np.repeat(np.array(names, dtype=object), counts).astype(str)


NORMAL_KIND = "normal"


def folder_scenario(source: FolderDataset, data: DataConfig, seed: int) -> ScenarioData:
    """Your own images: train/ split into train and validation; test/ as the test set.

    Without test/, there is nothing labelled to test on: every training image
    (validation ones included) is ranked instead, which shows the oddest of the
    images you called normal.
    """
    train, val = split_normal(source.train_images, data, seed)
    skipped = tuple(f"{s.path}: {s.reason}" for s in source.skipped)
    if source.test is None:
        order = _limited_order(len(source.train_images), data.train_limit, seed, _SPLIT_STREAM)
        ranked = RankingSet(
            images=to_image_tensor(source.train_images[order]),
            split=np.full(len(order), "train"),
            index=order,
            label=None,
            class_names=(),
            paths=tuple(source.train_paths[i] for i in order),
        )
        return ScenarioData(train=train, val=val, test=None, ranked=ranked, skipped=skipped)
    labelled = source.test
    order = _limited_order(len(labelled.images), data.test_limit, seed, _TEST_STREAM)
    kinds = np.array(labelled.kinds, dtype=object)[order].astype(str)
    labels = labelled.labels[order]
    kinds = np.where(labels == 0, NORMAL_KIND, kinds)
    names = sorted(set(kinds.tolist()) - {NORMAL_KIND})
    n = len(order)
    test = TestSet(
        images=to_image_tensor(labelled.images[order]),
        labels=labels.astype(np.int64),
        kinds=kinds,
        noise_std=np.zeros(n),
        angle=np.zeros(n),
        shift=np.zeros((n, 2)),
        source_index=order,
        # The kind's number (0 = normal), so the class column stays numeric.
        source_label=np.array([0 if k == NORMAL_KIND else 1 + names.index(k) for k in kinds]),
        paths=tuple(labelled.paths[i] for i in order),
    )
    return ScenarioData(train=train, val=val, test=test, kind_order=tuple(names), skipped=skipped)
