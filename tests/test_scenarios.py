"""Tests for ae_anomaly.scenarios.splits: the corruptions split on a small slice of real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ae_anomaly.config import DataConfig
from ae_anomaly.data.corruptions import MAX_SUBPIXEL_SHIFT, random_shifts, resample
from ae_anomaly.data.sources import Dataset
from ae_anomaly.data.tensors import to_image_tensor
from ae_anomaly.scenarios.base import ScenarioData
from ae_anomaly.scenarios.base import TestSet as CorruptedTestSet
from ae_anomaly.scenarios.corruptions import (
    CORRUPTION_KINDS,
    CorruptionConfig,
    _assign_kinds,
    corrupted_test_set,
    corruptions_scenario,
)
from ae_anomaly.scenarios.splits import split_normal

TEST_LIMIT = 200
TRAIN_LIMIT = 500


def small(**kwargs: object) -> DataConfig:
    return DataConfig(train_limit=TRAIN_LIMIT, test_limit=TEST_LIMIT, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scenario(mnist: Dataset) -> ScenarioData:
    return corruptions_scenario(mnist, small(), CorruptionConfig(), seed=0)


def assert_same_test_set(a: CorruptedTestSet, b: CorruptedTestSet) -> None:
    assert torch.equal(a.images, b.images)
    for name in ("labels", "kinds", "source_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("noise_std", "angle", "shift"):
        np.testing.assert_array_equal(a.extras[name], b.extras[name])


# -- kinds ----------------------------------------------------------------------------


def test_kind_counts_follow_the_default_mix_exactly(scenario: ScenarioData) -> None:
    kinds = scenario.test.kinds
    assert len(kinds) == TEST_LIMIT
    counts = {kind: int(np.sum(kinds == kind)) for kind in CORRUPTION_KINDS}
    assert counts == {"clean": 80, "noise": 40, "rotation": 40, "noise+rotation": 40}


def test_kind_counts_use_largest_remainder(mnist: Dataset) -> None:
    # 101 digits at 0.5 / 0.3 / 0.2: exact 50.5 / 30.3 / 20.2 -> 51 / 30 / 20
    mix = {"clean": 0.5, "noise": 0.3, "rotation": 0.2}
    test = corrupted_test_set(mnist.test_images, 101, CorruptionConfig(mix=mix), seed=0)
    counts = {kind: int(np.sum(test.kinds == kind)) for kind in CORRUPTION_KINDS}
    assert counts == {"clean": 51, "noise": 30, "rotation": 20, "noise+rotation": 0}


@pytest.mark.parametrize(
    ("n", "mix", "expected"),
    [
        (10, {"clean": 0.4, "noise": 0.2, "rotation": 0.2, "noise+rotation": 0.2}, [4, 2, 2, 2]),
        # exact 2.8 / 2.1 / 2.1: floors 2 / 2 / 2, the one left over goes to the .8
        (7, {"clean": 0.4, "noise": 0.3, "rotation": 0.3}, [3, 2, 2]),
        # exact 0.7 / 0.2 / 0.1 of 3 = 2.1 / 0.6 / 0.3 -> 2 / 1 / 0
        (3, {"clean": 0.7, "noise": 0.2, "rotation": 0.1}, [2, 1, 0]),
        # 1/3 each of 100: 33.33 each, the one left over goes to the first in kind order
        (100, {"clean": 1 / 3, "noise": 1 / 3, "rotation": 1 / 3}, [34, 33, 33]),
        # zero share: the kind gets nothing
        (9, {"clean": 0.5, "noise": 0.5, "rotation": 0.0}, [5, 4, 0]),
    ],
)
def test_assign_kinds_largest_remainder(n: int, mix: dict[str, float], expected: list[int]) -> None:
    kinds = _assign_kinds(n, mix)
    assert len(kinds) == n
    counts = [int(np.sum(kinds == kind)) for kind in CORRUPTION_KINDS[: len(expected)]]
    assert counts == expected


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 199, 1000, 9999])
def test_assign_kinds_is_within_one_of_the_exact_share(n: int) -> None:
    mix = {"clean": 0.37, "noise": 0.29, "rotation": 0.21, "noise+rotation": 0.13}
    kinds = _assign_kinds(n, mix)
    assert len(kinds) == n
    for kind, share in mix.items():
        assert abs(np.sum(kinds == kind) - share * n) < 1


def test_each_test_digit_is_used_at_most_once(scenario: ScenarioData, mnist: Dataset) -> None:
    index = scenario.test.source_index
    assert len(np.unique(index)) == len(index) == TEST_LIMIT
    assert index.min() >= 0 and index.max() < len(mnist.test_images)


def test_labels_match_kinds(scenario: ScenarioData) -> None:
    test = scenario.test
    assert test.labels.dtype == np.int64
    np.testing.assert_array_equal(test.labels, (test.kinds != "clean").astype(np.int64))
    assert set(np.unique(test.labels)) == {0, 1}


def test_noise_std_is_zero_exactly_where_no_noise(scenario: ScenarioData) -> None:
    test, config = scenario.test, CorruptionConfig()
    noisy = np.isin(test.kinds, ["noise", "noise+rotation"])
    assert np.all(test.extras["noise_std"][~noisy] == 0.0)
    assert np.all(np.isin(test.extras["noise_std"][noisy], config.noise_std))
    # more than one of the configured stds is drawn
    assert len(np.unique(test.extras["noise_std"][noisy])) > 1


def test_angles_within_max_and_zero_where_not_rotated(scenario: ScenarioData) -> None:
    test, config = scenario.test, CorruptionConfig()
    rotated = np.isin(test.kinds, ["rotation", "noise+rotation"])
    assert np.all(test.extras["angle"][~rotated] == 0.0)
    assert np.all(np.abs(test.extras["angle"][rotated]) <= config.max_angle)
    assert np.all(test.extras["angle"][rotated] != 0.0)
    # both directions occur, and they spread over the range
    assert (test.extras["angle"][rotated] < -15).any() and (
        test.extras["angle"][rotated] > 15
    ).any()


def test_max_angle_setting_is_respected(mnist: Dataset) -> None:
    config = CorruptionConfig(max_angle=5.0, angle_bands=[0.0, 5.0])
    test = corrupted_test_set(mnist.test_images, 60, config, seed=0)
    rotated = np.isin(test.kinds, ["rotation", "noise+rotation"])
    assert np.all(np.abs(test.extras["angle"]) <= 5.0)
    assert np.any(np.abs(test.extras["angle"][rotated]) > 1.0)


def test_test_images_are_what_their_metadata_says(scenario: ScenarioData, mnist: Dataset) -> None:
    test, factor = scenario.test, CorruptionConfig().resample_factor
    assert test.images.shape == (TEST_LIMIT, 1, 28, 28)
    assert test.images.dtype == torch.float32
    assert float(test.images.min()) >= 0.0 and float(test.images.max()) <= 1.0
    originals = to_image_tensor(mnist.test_images[test.source_index])
    # clean and rotation-only digits are exactly the resampled original at their angle
    plain = np.isin(test.kinds, ["clean", "rotation"])
    shifts = torch.from_numpy(test.extras["shift"][plain])
    expected = resample(
        originals[plain], torch.from_numpy(test.extras["angle"][plain]).float(), factor, shifts
    )
    assert np.all(np.abs(test.extras["shift"]) <= MAX_SUBPIXEL_SHIFT) and np.any(
        test.extras["shift"] != 0
    )
    torch.testing.assert_close(test.images[plain], expected, atol=1e-6, rtol=0)
    # clean digits went through the resampling too (they are smoothed, not raw)
    clean = test.kinds == "clean"
    assert not torch.equal(test.images[clean], originals[clean])
    # noisy digits differ from their noise-free resampled version by about their std
    noisy = test.kinds == "noise"
    denoised = resample(
        originals[noisy],
        torch.zeros(int(noisy.sum())),
        factor,
        torch.from_numpy(test.extras["shift"][noisy]),
    )
    spread = (test.images[noisy] - denoised).flatten(1).std(dim=1).numpy()
    assert np.all(spread > 0.3 * test.extras["noise_std"][noisy])
    assert np.all(spread < 1.1 * test.extras["noise_std"][noisy])


# -- seeds and independence -----------------------------------------------------------


def test_same_seed_gives_identical_test_set(scenario: ScenarioData, mnist: Dataset) -> None:
    again = corruptions_scenario(mnist, small(), CorruptionConfig(), seed=0)
    assert_same_test_set(scenario.test, again.test)
    assert torch.equal(scenario.train, again.train)
    assert torch.equal(scenario.val, again.val)


def test_other_seed_gives_other_test_set(scenario: ScenarioData, mnist: Dataset) -> None:
    other = corruptions_scenario(mnist, small(), CorruptionConfig(), seed=1)
    assert not np.array_equal(other.test.source_index, scenario.test.source_index)
    assert not torch.equal(other.test.images, scenario.test.images)
    assert not np.array_equal(other.test.extras["angle"], scenario.test.extras["angle"])
    assert not torch.equal(other.train, scenario.train)


def test_val_fraction_does_not_change_the_test_set(scenario: ScenarioData, mnist: Dataset) -> None:
    other = corruptions_scenario(mnist, small(val_fraction=0.3), CorruptionConfig(), seed=0)
    assert_same_test_set(scenario.test, other.test)
    assert len(other.val) == 150
    assert len(scenario.val) == 50


def test_train_limit_does_not_change_the_test_set(scenario: ScenarioData, mnist: Dataset) -> None:
    config = DataConfig(train_limit=100, test_limit=TEST_LIMIT)
    other = corruptions_scenario(mnist, config, CorruptionConfig(), seed=0)
    assert_same_test_set(scenario.test, other.test)


# -- train / validation ---------------------------------------------------------------


def test_train_and_val_sizes_add_up_to_train_limit(scenario: ScenarioData) -> None:
    assert len(scenario.train) + len(scenario.val) == TRAIN_LIMIT
    assert len(scenario.val) == round(TRAIN_LIMIT * 0.1)
    for part in (scenario.train, scenario.val):
        assert part.shape[1:] == (1, 28, 28)
        assert part.dtype == torch.float32
        assert float(part.min()) >= 0.0 and float(part.max()) <= 1.0


def test_train_and_val_go_through_the_same_resampling(
    scenario: ScenarioData, mnist: Dataset
) -> None:
    raw_train, raw_val = split_normal(mnist.train_images, small(), seed=0)
    factor = CorruptionConfig().resample_factor
    generator = torch.Generator().manual_seed(0)
    random_shifts(len(raw_train), generator)  # the training digits' shifts come first
    val_shifts = random_shifts(len(raw_val), generator)
    expected = resample(raw_val[:], torch.zeros(len(raw_val)), factor, val_shifts)
    torch.testing.assert_close(scenario.val, expected, atol=1e-6, rtol=0)
    assert not torch.equal(scenario.train, raw_train[:])


def test_split_is_disjoint_and_covers_the_limit() -> None:
    # synthetic images whose first pixels spell their index, so each can be traced
    n = 1000
    images = np.zeros((n, 4, 4), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n) // 256
    images[:, 0, 1] = np.arange(n) % 256
    train, val = split_normal(images, DataConfig(train_limit=300, val_fraction=0.2), seed=5)

    def indices(part: torch.Tensor) -> set[int]:
        pixels = (part[:, 0, 0, :2] * 255).round().long()
        return set((pixels[:, 0] * 256 + pixels[:, 1]).tolist())

    train_ids, val_ids = indices(train), indices(val)
    assert len(train) == 240 and len(val) == 60
    assert len(train_ids) == 240 and len(val_ids) == 60  # no image twice
    assert train_ids.isdisjoint(val_ids)
    assert train_ids | val_ids <= set(range(n))


def test_split_without_limit_uses_every_image() -> None:
    images = np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2)
    train, val = split_normal(images, DataConfig(val_fraction=0.1), seed=0)
    assert (len(train), len(val)) == (45, 5)
    together = torch.cat([train[:], val[:]]).flatten(1)
    expected = to_image_tensor(images).flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, expected.tolist()))
