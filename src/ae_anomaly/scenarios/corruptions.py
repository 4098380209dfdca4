"""The corruptions scenario (the main job): clean digits are normal; noisy, rotated and
noisy + rotated copies of other test digits are the anomalies.

Clean training digits (labels ignored) are split into train and validation; the test
set is clean test digits plus corrupted copies of *other* test digits (each test
digit is used once). Every digit, clean ones included, takes the same resampling
path (fair rotation, data/corruptions.py). Its evaluation adds AUROC per noise
level and per rotation-angle band; scores.csv gets each image's noise std and angle.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field, StrictInt, field_validator, model_validator

from ae_anomaly.params import Section
from ae_anomaly.scenarios.base import MetricGroup, Scenario, ScenarioData, TestSet

if TYPE_CHECKING:
    from ae_anomaly.config import DataConfig, RunConfig
    from ae_anomaly.data.sources import Dataset
    from ae_anomaly.detector.estimator import AutoencoderDetector
    from ae_anomaly.report.figures import Plot

CORRUPTION_KINDS = ("clean", "noise", "rotation", "noise+rotation")


class CorruptionConfig(Section):
    mix: dict[str, float] = Field(
        default_factory=lambda: {
            "clean": 0.4,
            "noise": 0.2,
            "rotation": 0.2,
            "noise+rotation": 0.2,
        },
        description="share of test digits per kind: clean, noise, rotation, noise+rotation",
    )
    noise_std: list[float] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3],
        min_length=1,
        description="Gaussian noise standard deviations (pixels in [0, 1]), one per noisy digit",
    )
    max_angle: float = Field(
        30.0, gt=0, le=180, description="rotations are drawn uniformly in +-max_angle degrees"
    )
    angle_bands: list[float] = Field(
        default_factory=lambda: [0.0, 10.0, 20.0, 30.0],
        min_length=2,
        description="edges of the |angle| bands that rotation AUROC is reported for",
    )
    resample_factor: StrictInt = Field(
        2,
        ge=1,
        le=8,
        description="upsampling factor of the resampling every digit goes through (fair rotation)",
    )

    @field_validator("mix")
    @classmethod
    def _valid_mix(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mix) - set(CORRUPTION_KINDS))
        if unknown:
            raise ValueError(
                f"unknown kind {unknown[0]!r}; kinds are {', '.join(CORRUPTION_KINDS)}"
            )
        if any(not math.isfinite(share) or share < 0 for share in mix.values()):
            raise ValueError("shares must be finite and not negative")
        if abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"shares must add up to 1, they add up to {sum(mix.values()):g}")
        if mix.get("clean", 0) == 0 or sum(v for k, v in mix.items() if k != "clean") == 0:
            raise ValueError("the mix needs both clean and corrupted digits")
        return mix

    @field_validator("noise_std")
    @classmethod
    def _valid_noise(cls, stds: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in stds):
            raise ValueError("each noise std must lie in (0, 1]")
        return stds

    @field_validator("angle_bands")
    @classmethod
    def _valid_bands(cls, edges: list[float]) -> list[float]:
        if (
            not all(math.isfinite(edge) for edge in edges)
            or edges[0] < 0
            or any(b <= a for a, b in itertools.pairwise(edges))
        ):
            raise ValueError("band edges must be finite, non-negative and increasing")
        return edges

    @model_validator(mode="after")
    def _bands_cover_angles(self) -> CorruptionConfig:
        if self.angle_bands[-1] < self.max_angle:
            raise ValueError(
                f"corruptions.angle_bands must reach corruptions.max_angle ({self.max_angle:g})"
            )
        return self


class Corruptions(Scenario):
    name = "corruptions"
    description = "corruptions (synthetic anomalies)"
    # docs/rotation.md: the narrow code makes rotation visible, SSIM keeps noise at
    # AUROC 1.0, the code's density adds about 0.03 at 20-30 degrees.
    recipe: ClassVar[dict[str, Any]] = {
        "model": "conv-dense",
        "model_args": {"code": 16},
        "training": {"epochs": 10},
        "detector": {"score": "ssim+latent"},
    }
    groups: ClassVar[tuple[MetricGroup, ...]] = (
        MetricGroup(
            "by_noise_std",
            "By noise level",
            "noise std",
            "Images with Gaussian noise only, grouped by its standard deviation.",
            "noise std ",
        ),
        MetricGroup(
            "by_angle_band",
            "By rotation angle",
            "|angle| (degrees)",
            "Rotated images only, grouped by |angle| in [low, high); the last band includes high.",
            "rotation ",
        ),
    )

    def split(self, config: RunConfig) -> ScenarioData:
        from ae_anomaly.data.sources import load_dataset

        dataset = load_dataset(config.data.dataset, config.data.data_dir)
        return corruptions_scenario(dataset, config.data, config.corruptions, config.seed)

    def group_masks(self, test: TestSet, config: RunConfig) -> dict[str, dict[str, np.ndarray]]:
        from ae_anomaly.report.metrics import groups_by_band, groups_by_value

        noise, rotation = test.kinds == "noise", test.kinds == "rotation"
        return {
            "by_noise_std": groups_by_value(test.extras["noise_std"], noise),
            "by_angle_band": groups_by_band(
                test.extras["angle"], config.corruptions.angle_bands, rotation
            ),
        }

    def report_plots(
        self,
        metrics: dict[str, Any],
        test: TestSet | None = None,
        detector: AutoencoderDetector | None = None,
        scores: np.ndarray | None = None,
    ) -> list[Plot]:
        from ae_anomaly.report.figures import Plot

        if not metrics.get("by_angle_band"):
            return []
        caption = (
            "Rotated digits only, grouped by |angle|, each band against all clean images. "
            "The dashed line at 0.5 is chance."
        )
        png = plot_angle_bands(metrics)
        return [Plot("angle_bands.png", png, "AUROC by rotation angle", caption)]

    def csv_columns(self, test: TestSet) -> dict[str, Sequence[str]]:
        noise_std, angle = test.extras["noise_std"], test.extras["angle"]
        # Severity: the noise std where noise was added, else |angle| in degrees.
        severity = np.where(noise_std > 0, noise_std, np.abs(angle))
        return {
            "severity": [f"{v:g}" for v in severity],
            "noise_std": [f"{v:g}" for v in noise_std],
            # +0.0 turns a rounded -0.00 into 0.00.
            "angle": [f"{round(v, 2) + 0.0:.2f}" for v in angle],
        }


def corruptions_scenario(
    dataset: Dataset, data: DataConfig, corruptions: CorruptionConfig, seed: int
) -> ScenarioData:
    """Build the train / validation / test split of the corruptions scenario."""
    import torch

    from ae_anomaly.data.corruptions import random_shifts, resample
    from ae_anomaly.scenarios.splits import split_labels, split_normal

    stored = split_normal(dataset.train_images, data, seed)
    # Training and validation digits take the same resampling path (angle 0,
    # a random sub-pixel shift) as every test digit, so no split is smoother
    # than another. (Resampled as whole tensors: digits are small.)
    generator = torch.Generator().manual_seed(seed)  # train shifts first, then val
    train, val = (
        resample(
            x[:], torch.zeros(len(x)), corruptions.resample_factor, random_shifts(len(x), generator)
        )
        for x in stored
    )
    test = corrupted_test_set(dataset.test_images, data.test_limit, corruptions, seed)
    test = replace(test, source_label=dataset.test_labels[test.source_index])
    train_labels, val_labels = split_labels(dataset.train_labels, data, seed)
    return ScenarioData(
        train=train, val=val, test=test, train_labels=train_labels, val_labels=val_labels
    )


def corrupted_test_set(
    images: np.ndarray, test_limit: int | None, corruptions: CorruptionConfig, seed: int
) -> TestSet:
    """Assign each test digit a kind, draw its noise std and angle, and apply them."""
    import torch

    from ae_anomaly.data.corruptions import add_gaussian_noise, random_shifts, resample
    from ae_anomaly.data.tensors import to_image_tensor
    from ae_anomaly.scenarios.splits import TEST_STREAM

    rng = np.random.default_rng([seed, TEST_STREAM])
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
        source_index=order,
        source_label=np.full(len(order), -1),  # set by the caller, which has the labels
        # shift: the sub-pixel shift (x, y) every digit got (see data/corruptions.py).
        extras={"noise_std": noise_std, "angle": angles, "shift": shifts.numpy()},
        notes=tuple(_notes(std, angle) for std, angle in zip(noise_std, angles, strict=True)),
    )


def _notes(noise_std: float, angle: float) -> tuple[str, ...]:
    """What was done to a digit beyond its kind, e.g. ("std 0.2", "+17 deg")."""
    notes = []
    if noise_std > 0:
        notes.append(f"std {noise_std:g}")
    if angle != 0:
        notes.append(f"{angle:+.0f} deg")
    return tuple(notes)


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


def plot_angle_bands(metrics: dict[str, Any]) -> bytes:
    """Bar chart of AUROC per |angle| band, with chance (0.5) dashed."""
    from matplotlib.figure import Figure

    from ae_anomaly.report.figures import figure_png
    from ae_anomaly.report.metrics import format_number

    bands = metrics["by_angle_band"]
    names = [f"{band}°" for band in bands]
    aurocs = [stats["auroc"] for stats in bands.values()]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(names, [0.0 if a is None else a for a in aurocs], color="tab:gray")
    for x, (auroc, stats) in enumerate(zip(aurocs, bands.values(), strict=True)):
        ax.text(
            x,
            (auroc or 0.0) + 0.02,
            f"{format_number(auroc, 3)}\nn={stats['n']}",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
    ax.set(
        xlabel="|rotation angle|",
        ylabel="AUROC vs clean",
        ylim=(0, 1.15),
        title="Detecting rotations by angle",
    )
    ax.legend(loc="lower right")
    return figure_png(fig)
