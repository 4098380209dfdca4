"""Splitting helpers every scenario shares: hold out validation images, limit a set.

Random choices draw from independent streams, so that changing one choice (say the
validation share) does not reshuffle another (the test corruptions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ae_anomaly.config import DataConfig, DatasetSection
from ae_anomaly.data.lazy_images import LazyImages, as_lazy_images
from ae_anomaly.errors import UserError
from ae_anomaly.scenarios.base import ScenarioData, TestSet

SPLIT_STREAM, TEST_STREAM = 1, 2


def labelled_test(data: ScenarioData) -> TestSet:
    """The scenario's test set; a scenario without one is a programming error here."""
    if data.test is None:
        raise ValueError("this scenario has no labelled test set")
    return data.test


def limited_order(n: int, limit: int | None, seed: int, stream: int) -> np.ndarray:
    """The indices a ``limit`` keeps (the same draw as split_normal's), in source order."""
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.permutation(n)[:limit])


def split_normal(images: Any, data: DataConfig, seed: int) -> tuple[LazyImages, LazyImages]:
    """Shuffle, keep at most ``train_limit`` images and hold out ``val_fraction`` of them:
    the images as they are stored, read a batch at a time (data/lazy_images.py)."""
    order, n_val = split_order(len(images), data, seed)
    lazy = as_lazy_images(images)
    return lazy.subset(order[n_val:]), lazy.subset(order[:n_val])


def split_labels(labels: np.ndarray, data: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labels of the images ``split_normal`` puts in train and validation, in its order."""
    order, n_val = split_order(len(labels), data, seed)
    return labels[order[n_val:]], labels[order[:n_val]]


def split_order(n: int, data: DatasetSection, seed: int) -> tuple[np.ndarray, int]:
    """A seeded order of at most ``train_limit`` of ``n`` training images, the first
    ``n_val`` of which are held out; also the digit classifier's split."""
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    order = rng.permutation(n)[: data.train_limit]
    n_val = max(1, round(len(order) * data.val_fraction))
    if n_val >= len(order):
        raise UserError(
            f"holding out val_fraction {data.val_fraction:g} of {len(order)} training images "
            "leaves none to train on"
        )
    return order, n_val
