"""Scenarios are plug-ins: one defined outside the package, registered by name, runs end to
end with its own split, metric group, scores.csv column and config rule."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ae_anomaly import scenarios
from ae_anomaly.config import RunConfig, build_config
from ae_anomaly.errors import UserError
from ae_anomaly.runs.experiment import run_experiment
from ae_anomaly.scenarios import register_scenario
from ae_anomaly.scenarios.base import MetricGroup, Scenario, ScenarioData, TestSet


class EvenDigits(Scenario):
    """Even digits are normal, odd ones anomalies; reported per digit too."""

    name = "even-digits"
    description = "even-digits (a test scenario)"
    groups = (MetricGroup("by_digit", "By digit", "digit", "Each digit.", "digit "),)

    def check(self, config: RunConfig) -> None:
        if config.data.test_limit is None:
            raise ValueError("the even-digits scenario needs data.test_limit")

    def split(self, config: RunConfig) -> ScenarioData:
        from ae_anomaly.data.sources import load_dataset
        from ae_anomaly.data.tensors import to_image_tensor
        from ae_anomaly.scenarios.splits import split_normal

        dataset = load_dataset(config.data.dataset, config.data.data_dir)
        even = dataset.train_labels % 2 == 0
        train, val = split_normal(dataset.train_images[even], config.data, config.seed)
        index = np.arange(config.data.test_limit or 0)
        digits = dataset.test_labels[index]
        test = TestSet(
            images=to_image_tensor(dataset.test_images[index]),
            labels=(digits % 2).astype(np.int64),
            kinds=np.where(digits % 2 == 0, "even", "odd"),
            source_index=index,
            source_label=digits,
            extras={"digit": digits},
        )
        return ScenarioData(train=train, val=val, test=test)

    def group_masks(self, test: TestSet, config: RunConfig) -> dict[str, dict[str, np.ndarray]]:
        digits = test.extras["digit"]
        return {"by_digit": {str(d): (digits == d) & (test.labels == 1) for d in (1, 3)}}

    def csv_columns(self, test: TestSet) -> dict[str, Sequence[str]]:
        return {"digit": [str(d) for d in test.extras["digit"]]}


@pytest.fixture
def registered() -> Iterator[None]:
    register_scenario(EvenDigits())
    yield
    del scenarios.SCENARIOS[EvenDigits.name]


def quick(data_dir: Path, **overrides: Any) -> RunConfig:
    flags = {
        "scenario": "even-digits",
        "data_dir": str(data_dir),
        "train_limit": 400,
        "test_limit": 200,
        "epochs": 1,
        "batch_size": 32,
    }
    return build_config({}, {**flags, **overrides})


def test_a_registered_scenario_runs_end_to_end(
    registered: None, shared_data_dir: Path, tmp_path: Path
) -> None:
    result = run_experiment(quick(shared_data_dir), tmp_path / "run")
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert list(metrics["by_kind"]) == ["even", "odd"]
    assert set(metrics["by_digit"]) == {"1", "3"}
    assert metrics["by_digit"]["1"]["n"] > 0
    with (result.folder / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert list(rows[0])[:6] == ["index", "source_index", "class", "kind", "digit", "label"]
    page = (result.folder / "report.html").read_text()
    assert "By digit" in page


def test_a_registered_scenarios_rules_apply(registered: None, shared_data_dir: Path) -> None:
    with pytest.raises(UserError, match=r"needs data\.test_limit"):
        build_config({}, {"scenario": "even-digits", "data_dir": str(shared_data_dir)})
    with pytest.raises(UserError, match="unknown scenario"):
        build_config({}, {"scenario": "odd-digits"})
    with pytest.raises(ValueError, match="already registered"):
        register_scenario(EvenDigits())
