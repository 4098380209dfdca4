"""Scenario splits: which images the detector trains on, calibrates on and is tested on.

The "corruptions" scenario: clean MNIST training digits (labels ignored) split
into train and validation; a test set of clean test digits plus corrupted
copies of *other* test digits (each test digit is used once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ae_anomaly.config import CORRUPTION_KINDS, CorruptionConfig, DataConfig
from ae_anomaly.data.corruptions import add_gaussian_noise, random_shifts, resample
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
    test: TestSet


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
    return ScenarioData(train=train, val=val, test=test)


def split_normal(
    images: np.ndarray, data: DataConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle, keep at most ``train_limit`` images and hold out ``val_fraction`` of them."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    order = rng.permutation(len(images))[: data.train_limit]
    n_val = max(1, round(len(order) * data.val_fraction))
    if n_val >= len(order):
        raise UserError(
            f"holding out val_fraction {data.val_fraction:g} of {len(order)} training images "
            "leaves none to train on"
        )
    tensor = to_image_tensor(images[order])
    return tensor[n_val:], tensor[:n_val]


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
