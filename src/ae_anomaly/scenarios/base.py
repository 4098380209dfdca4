"""What a scenario is: which images the detector learns from, is calibrated and tested on,
what else its evaluation reports, and what it writes.

A scenario is one module holding one ``Scenario`` subclass, registered by name in
scenarios/__init__.py. It declares its config section (if it has settings of its
own), its recipe (settings measured to suit it better than the package defaults),
its config rules, its split, the extra metric groups and scores.csv columns of its
test set, and, where it needs them, a step before training and outputs of its own.
The test set is generic: images, labels (1 = anomaly), a kind per image, and
whatever per-image numbers the scenario keeps in ``extras``.

Nothing here imports torch: the command line reads the registry before torch loads.
Each scenario imports what its split needs when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

    from ae_anomaly.config import RunConfig
    from ae_anomaly.data.lazy_images import LazyImages
    from ae_anomaly.detector.estimator import AutoencoderDetector
    from ae_anomaly.nn.callbacks import Callback
    from ae_anomaly.report.figures import Plot

    # A set of images: a float tensor, or images read a batch at a time.
    Images: TypeAlias = torch.Tensor | LazyImages


@dataclass(frozen=True)
class TestSet:
    """Labelled test images; label 1 = anomaly."""

    __test__ = False  # not a pytest class

    images: Images  # (N, C, H, W), read as float in [0, 1]
    labels: np.ndarray  # (N,) int64
    kinds: np.ndarray  # (N,) str: the group of each image (one name for all normal ones)
    source_index: np.ndarray  # (N,) index into the source's test images
    source_label: np.ndarray  # (N,) the source's class label of each image (display only)
    # Per-image numbers of the scenario's own (e.g. noise_std, angle), each (N, ...).
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    # Per image, what was done to it in words beyond its kind (e.g. "std 0.2", "+17 deg").
    notes: tuple[tuple[str, ...], ...] | None = None
    paths: tuple[str, ...] | None = None  # the file of each image, for image folders

    def describe(self, index: int, sep: str = ", ") -> str:
        """What image ``index`` is, e.g. "noise+rotation, std 0.2, +17 deg"."""
        notes = self.notes[index] if self.notes is not None else ()
        return sep.join([str(self.kinds[index]), *notes])


@dataclass(frozen=True)
class RankingSet:
    """Every image a scenario without a test set ranks (e.g. training, then test images)."""

    images: Images  # (N, C, H, W), read as float in [0, 1]
    split: np.ndarray  # (N,) str: "train" or "test"
    index: np.ndarray  # (N,) index into that split of the source
    label: np.ndarray | None  # (N,) class label (display only, never used to fit); None: none
    class_names: tuple[str, ...]
    paths: tuple[str, ...] | None = None  # the file of each image, for image folders


@dataclass(frozen=True)
class ScenarioData:
    train: Images  # normal images the detector learns from
    val: Images  # normal images for early stopping and the threshold
    test: TestSet | None  # labelled test set; None where the scenario only ranks
    kind_order: tuple[str, ...] | None = None  # report order of the anomalous kinds
    ranked: RankingSet | None = None  # the images to rank when there is no test set
    skipped: tuple[str, ...] = ()  # "path: reason" of each unreadable file left out
    # Class labels of train and val (guard scenario: the classifier learns from them).
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None


@dataclass(frozen=True)
class MetricGroup:
    """A grouping of the test images a scenario adds to the evaluation, e.g. by noise level."""

    key: str  # the metrics.json key, e.g. "by_noise_std"
    heading: str  # the report's heading
    column: str  # the name of the report table's first column
    note: str  # what was compared, under the heading
    prefix: str  # before each group's name in the terminal summary, e.g. "noise std "


class Scenario:
    """The base of every scenario; each hook's default suits a scenario with nothing special."""

    name: ClassVar[str]
    description: ClassVar[str]  # for --scenario's help
    # True: the dataset is a folder or array file of the user's own images, not a name.
    own_images: ClassVar[bool] = False
    # Settings measured to suit this scenario better than the package defaults; used to
    # fill what the config file and the command line leave unset (config.with_recipe).
    recipe: ClassVar[dict[str, Any]] = {}
    groups: ClassVar[tuple[MetricGroup, ...]] = ()
    # Optional settings (section, field) that only this scenario (of those that have
    # them) uses; set with another scenario, they are refused, not silently ignored.
    uses: ClassVar[frozenset[tuple[str, str]]] = frozenset()

    def check(self, config: RunConfig) -> None:
        """Refuse (ValueError, one sentence) settings this scenario cannot use."""

    def split(self, config: RunConfig) -> ScenarioData:
        raise NotImplementedError

    def group_masks(self, test: TestSet, config: RunConfig) -> dict[str, dict[str, np.ndarray]]:
        """For each of ``groups``, its rows: name -> which test images belong to it."""
        return {}

    def extra_metrics(
        self, test: TestSet, config: RunConfig, detector: AutoencoderDetector
    ) -> dict[str, Any]:
        """Metrics of the scenario's own, added to metrics.json (e.g. localisation)."""
        return {}

    def report_sections(self, metrics: dict[str, Any]) -> list[str]:
        """HTML sections of the scenario's own for report.html, after the group tables."""
        return []

    def report_plots(
        self,
        metrics: dict[str, Any],
        test: TestSet | None = None,
        detector: AutoencoderDetector | None = None,
        scores: np.ndarray | None = None,
    ) -> list[Plot]:
        """Figures of the scenario's own for report.html, placed before the examples."""
        return []

    def csv_columns(self, test: TestSet) -> dict[str, Sequence[str]]:
        """Extra scores.csv columns (after kind, before label), formatted."""
        return {}

    def prepare(
        self, config: RunConfig, data: ScenarioData, work: Path, callbacks: Sequence[Callback]
    ) -> Any:
        """Run before the detector trains, with what it leaves in ``work`` kept for a
        resumed run; what it returns is handed to ``write_results``."""
        return None

    def write_results(
        self,
        work: Path,
        config: RunConfig,
        data: ScenarioData,
        detector: AutoencoderDetector,
        prepared: Any,
    ) -> dict[str, Any]:
        """Score, write the detector, scores.csv and the report into ``work``; the metrics."""
        from ae_anomaly.runs.results import write_labelled_results, write_ranking

        if data.test is not None:
            return write_labelled_results(work, config, data, detector)
        return write_ranking(work, config, data, detector)
