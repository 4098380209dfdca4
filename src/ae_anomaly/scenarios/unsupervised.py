"""The unsupervised scenario: every image of a dataset ranked, labels ignored.

All training images (labels ignored) are split into train and validation; then every
training image (validation ones included) and every test image is ranked by its
score (report/ranking.py). Labels appear in the results only to help read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ae_anomaly.scenarios.base import RankingSet, Scenario, ScenarioData

if TYPE_CHECKING:
    from ae_anomaly.config import DataConfig, RunConfig
    from ae_anomaly.data.sources import Dataset


class Unsupervised(Scenario):
    name = "unsupervised"
    description = "unsupervised (rank every image, labels ignored)"
    # The classic experiment ranks the images by their reconstruction error: conv-bn
    # and the mean squared error, the setting the README's ranking was measured with.
    recipe: ClassVar[dict[str, Any]] = {"model": "conv-bn", "detector": {"score": "mse"}}

    def check(self, config: RunConfig) -> None:
        if config.detector.threshold_data != "validation":
            raise ValueError("the unsupervised scenario has no labelled test images")

    def split(self, config: RunConfig) -> ScenarioData:
        from ae_anomaly.data.sources import load_dataset

        dataset = load_dataset(config.data.dataset, config.data.data_dir)
        return unsupervised_scenario(dataset, config.data, config.seed)


def unsupervised_scenario(dataset: Dataset, data: DataConfig, seed: int) -> ScenarioData:
    """All training images, labels ignored, split into train and validation; then every
    training image (validation ones included) and every test image is ranked."""
    from ae_anomaly.data.tensors import to_image_tensor
    from ae_anomaly.scenarios.splits import SPLIT_STREAM, TEST_STREAM, limited_order, split_normal

    train, val = split_normal(dataset.train_images, data, seed)
    train_index = limited_order(len(dataset.train_images), data.train_limit, seed, SPLIT_STREAM)
    test_index = limited_order(len(dataset.test_images), data.test_limit, seed, TEST_STREAM)
    images = np.concatenate([dataset.train_images[train_index], dataset.test_images[test_index]])
    ranked = RankingSet(
        images=to_image_tensor(images),
        split=np.array(["train"] * len(train_index) + ["test"] * len(test_index)),
        index=np.concatenate([train_index, test_index]),
        label=np.concatenate([dataset.train_labels[train_index], dataset.test_labels[test_index]]),
        class_names=dataset.class_names,
    )
    return ScenarioData(train=train, val=val, test=None, ranked=ranked)
