"""The one-class scenario: split, config rules and a short real run on Fashion-MNIST."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.config import DataConfig, build_config
from ae_anomaly.data.sources import Dataset
from ae_anomaly.errors import UserError
from ae_anomaly.report.metrics import classification_report_text, evaluate
from ae_anomaly.scenarios.one_class import one_class_scenario

SNEAKER = 7


def test_split_trains_on_the_normal_class_only(fashion: Dataset) -> None:
    data = one_class_scenario(fashion, DataConfig(normal_class=SNEAKER), seed=0)
    n_sneakers = int((fashion.train_labels == SNEAKER).sum())
    assert len(data.train) + len(data.val) == n_sneakers == 6000
    assert len(data.val) == 600
    # Every training image is a sneaker: compare pixel sums with the dataset's sneakers.
    sneaker_sums = set(fashion.train_images[fashion.train_labels == SNEAKER].sum(axis=(1, 2)))
    train_sums = np.rint(data.train[:].numpy().sum(axis=(1, 2, 3)) * 255).astype(int)
    assert set(train_sums.tolist()) <= {int(v) for v in sneaker_sums}
    test = data.test
    assert test is not None
    assert len(test.labels) == 10_000
    assert (test.labels == (test.source_label != SNEAKER)).all()
    assert set(test.kinds[test.labels == 0]) == {"Sneaker (normal)"}
    assert data.kind_order is not None and data.kind_order[SNEAKER] == "Sneaker (normal)"
    assert test.source_index.tolist() == list(range(10_000))


def test_a_limited_test_set_keeps_normal_and_anomalous_images(fashion: Dataset) -> None:
    data = one_class_scenario(fashion, DataConfig(normal_class=0, test_limit=500), seed=3)
    assert data.test is not None
    assert len(data.test.labels) == 500
    assert 0 < data.test.labels.sum() < 500
    assert (np.diff(data.test.source_index) > 0).all()  # dataset order, no repeats


def test_a_class_the_dataset_lacks_is_refused_with_the_list(fashion: Dataset) -> None:
    with pytest.raises(UserError, match=r"from 0 to 9 \(0 T-shirt/top, 1 Trouser.*got 10"):
        one_class_scenario(fashion, DataConfig(normal_class=10), seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scenario": "one-class"}, "needs data.normal_class"),
        ({"normal_class": 3}, "only used by the one-class scenario"),
        ({"scenario": "unsupervised", "threshold_data": "test-normal"}, "no labelled test"),
        ({"scenario": "one-class", "normal_class": -1}, "normal_class"),
        ({"threshold_data": "test"}, "threshold_data"),
        ({"scenario": "two-class"}, "scenario"),
    ],
)
def test_config_rules(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_config({}, overrides)


def test_kind_order_and_classification_report() -> None:
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    kinds = np.array(["Sneaker (normal)", "Sneaker (normal)", "Bag", "Trouser", "Bag"])
    labels = (kinds != "Sneaker (normal)").astype(int)
    m = evaluate(scores, labels, kinds, 0.25, kind_order=["Trouser", "Bag"])
    assert list(m["by_kind"]) == ["Sneaker (normal)", "Trouser", "Bag"]
    assert m["by_kind"]["Bag"]["auroc"] == 1.0
    # F1 of normal = 1.0 (2 of 2), of anomaly = 1.0; macro = their mean.
    assert m["at_threshold"]["macro_f1"] == 1.0
    # The reference Sneaker project's matrix gives its published figures.
    text = classification_report_text([[958, 42], [1713, 7287]])
    normal = next(line for line in text.splitlines() if line.strip().startswith("normal"))
    assert normal.split()[1:3] == ["0.3587", "0.9580"]
    assert "0.8245" in next(line for line in text.splitlines() if "accuracy" in line)


def test_e2e_one_class_run_with_the_threshold_from_normal_test_images(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    """The reference project's recipe (threshold on the normal *test* errors), in short."""
    out = tmp_path / "run"
    flags = [
        "run", "--scenario", "one-class", "--dataset", "fashion-mnist", "--normal-class", "7",
        "--score", "mae", "--threshold", "mean+2std", "--threshold-data", "test-normal",
        "--data-dir", str(shared_data_dir), "--train-limit", "1500", "--test-limit", "2000",
        "--epochs", "3", "--batch-size", "32", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, flags, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "macro avg" in result.output and "confusion matrix" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold_data"] == "test-normal"
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "index",
        "source_index",
        "class",
        "kind",
        "label",
        "score",
        "predicted",
    ]
    normal = np.array([float(r["score"]) for r in rows if r["label"] == "0"])
    assert metrics["threshold"] == pytest.approx(normal.mean() + 2 * normal.std(), rel=1e-5)
    # Three short epochs on 1350 sneakers separates them from most other clothes.
    assert metrics["overall"]["auroc"] > 0.8, metrics["overall"]
    assert metrics["by_kind"]["Trouser"]["auroc"] > 0.8
    saved = json.loads((out / "detector" / "detector.json").read_text())
    assert saved["threshold"]["value"] == pytest.approx(metrics["threshold"])
