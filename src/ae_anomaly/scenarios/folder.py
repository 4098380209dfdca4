"""The folder scenario: your own images (data/folder.py), the default when the dataset
is a path.

train/ is split into train and validation; test/ (normal/ and one folder per anomaly
kind) is the test set. Without test/, there is nothing labelled to test on: every
training image (validation ones included) is ranked instead, which shows the oddest
of the images you called normal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ae_anomaly.errors import UserError
from ae_anomaly.scenarios.base import RankingSet, Scenario, ScenarioData, TestSet

if TYPE_CHECKING:
    from ae_anomaly.config import DataConfig, RunConfig
    from ae_anomaly.data.folder import FolderDataset
    from ae_anomaly.detector.estimator import AutoencoderDetector
    from ae_anomaly.report.figures import Plot

NORMAL_KIND = "normal"
# Test images per error-map pass, for the localisation metrics.
MAP_BATCH = 256
# The most anomalous test images shown with their masks.
LOCALISED_EXAMPLES = 8


class Folder(Scenario):
    name = "folder"
    description = "folder (your own images; the default when dataset is a path)"
    own_images = True

    def split(self, config: RunConfig) -> ScenarioData:
        return folder_scenario(load_own_images(config.data), config.data, config.seed)

    def extra_metrics(
        self, test: TestSet, config: RunConfig, detector: AutoencoderDetector
    ) -> dict[str, Any]:
        """With masks (ground_truth/): how well the error maps find the defect pixels."""
        if "mask" not in test.extras:
            return {}
        from ae_anomaly.report.localisation import localisation_metrics

        maps = np.concatenate(
            [
                detector.reconstruct(test.images[start : start + MAP_BATCH])[1]
                for start in range(0, len(test.images), MAP_BATCH)
            ]
        )
        masks = test.extras["mask"]
        return {"localisation": localisation_metrics(maps, masks, test.kinds, test.labels)}

    def report_plots(
        self,
        metrics: dict[str, Any],
        test: TestSet | None = None,
        detector: AutoencoderDetector | None = None,
        scores: np.ndarray | None = None,
    ) -> list[Plot]:
        """With masks: the most anomalous test images and the two most normal ones, with
        their error maps over them and their masks."""
        if test is None or detector is None or scores is None or "mask" not in test.extras:
            return []
        from ae_anomaly.report.figures import Examples, Plot, plot_localisation

        order = np.argsort(-scores, kind="stable")
        normal = order[test.labels[order] == 0]
        picked = np.concatenate([order[:LOCALISED_EXAMPLES], normal[-2:][::-1]])
        reconstructions, errors = detector.reconstruct(test.images[picked])
        captions = [f"#{i} {test.describe(int(i))}, score {scores[i]:.4g}" for i in picked]
        examples = Examples(test.images[picked].numpy(), reconstructions, errors, captions)
        png = plot_localisation(examples, test.extras["mask"][picked])
        caption = (
            "The highest-scoring test images, then the two lowest-scoring normal ones: input, "
            "reconstruction, the error map over the input (brighter = worse), and the mask."
        )
        return [Plot("localisation.png", png, "Where the defects are", caption)]

    def report_sections(self, metrics: dict[str, Any]) -> list[str]:
        found = metrics.get("localisation")
        if not found:
            return []
        from ae_anomaly.report.metrics import format_number
        from ae_anomaly.report.page import html_table

        rows = [("all", found), *found["by_kind"].items()]
        return [
            "<h2>Where the defects are</h2>",
            '<p class="note">Error maps against the ground-truth masks: pixel AUROC over '
            f"every pixel, and AUPRO (per-region overlap) up to a false-positive rate of "
            f"{found['max_fpr']:g}.</p>",
            html_table(
                ("kind", "pixel AUROC", "AUPRO"),
                [
                    (name, format_number(row["pixel_auroc"]), format_number(row["aupro"]))
                    for name, row in rows
                ],
            ),
        ]


def load_own_images(data: DataConfig) -> FolderDataset:
    """The folder or array file named by ``data.dataset``, read as the config says."""
    from ae_anomaly.data.folder import load_image_source
    from ae_anomaly.data.sources import dataset_names

    path = Path(data.dataset).expanduser()
    if not path.exists():
        raise UserError(
            f"unknown dataset {data.dataset!r}: not one of {', '.join(dataset_names())}, "
            f"and there is no folder or file at {path}"
        )
    return load_image_source(
        path, size=data.image_size, channels=data.channels, on_error=data.on_unreadable
    )


def folder_scenario(source: FolderDataset, data: DataConfig, seed: int) -> ScenarioData:
    """train/ split into train and validation; test/ as the test set, else a ranking."""
    from ae_anomaly.data.lazy_images import LazyImages
    from ae_anomaly.scenarios.splits import SPLIT_STREAM, TEST_STREAM, limited_order, split_normal

    train, val = split_normal(source.train_images, data, seed)
    skipped = tuple(f"{s.path}: {s.reason}" for s in source.skipped)
    if source.test is None:
        order = limited_order(len(source.train_images), data.train_limit, seed, SPLIT_STREAM)
        ranked = RankingSet(
            images=LazyImages(source.train_images, order),
            split=np.full(len(order), "train"),
            index=order,
            label=None,
            class_names=(),
            paths=tuple(source.train_paths[i] for i in order),
        )
        return ScenarioData(train=train, val=val, test=None, ranked=ranked, skipped=skipped)
    labelled = source.test
    order = limited_order(len(labelled.images), data.test_limit, seed, TEST_STREAM)
    kinds = np.array(labelled.kinds, dtype=object)[order].astype(str)
    labels = labelled.labels[order]
    kinds = np.where(labels == 0, NORMAL_KIND, kinds)
    names = sorted(set(kinds.tolist()) - {NORMAL_KIND})
    test = TestSet(
        images=LazyImages(labelled.images, order),
        labels=labels.astype(np.int64),
        kinds=kinds,
        source_index=order,
        # The kind's number (0 = normal), so the class column stays numeric.
        source_label=np.array([0 if k == NORMAL_KIND else 1 + names.index(k) for k in kinds]),
        paths=tuple(labelled.paths[i] for i in order),
        extras={} if labelled.masks is None else {"mask": labelled.masks[order]},
    )
    return ScenarioData(train=train, val=val, test=test, kind_order=tuple(names), skipped=skipped)
