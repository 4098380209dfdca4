"""The guard scenario: a digit classifier behind the detector, on short real runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.report.guard import coverage_curves

SMALL = ["--train-limit", "2500", "--test-limit", "600", "--epochs", "2", "--batch-size", "64"]


def test_coverage_curves_by_hand() -> None:
    correct = np.array([True, False, True, True])
    scores = np.array([0.1, 0.9, 0.2, 0.5])  # the wrong one scores highest
    confidence = np.array([0.9, 0.95, 0.5, 0.6])  # ... and is the most confident
    curves = coverage_curves(correct, scores, confidence)
    np.testing.assert_allclose(curves["autoencoder"]["accuracy"], [1, 1, 1, 0.75])
    np.testing.assert_allclose(curves["confidence"]["accuracy"], [0, 0.5, 2 / 3, 0.75])
    np.testing.assert_allclose(curves["oracle"]["accuracy"], [1, 1, 1, 0.75])
    np.testing.assert_allclose(curves["oracle"]["coverage"], [0.25, 0.5, 0.75, 1.0])


@pytest.fixture(scope="module")
def guard_run(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guard") / "run"
    args = ["run", "--scenario", "guard", "--data-dir", str(shared_data_dir), *SMALL]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accuracy on accepted" in result.output
    return out


def test_e2e_guard_trains_a_classifier_and_rejects_noisy_digits(guard_run: Path) -> None:
    metrics = json.loads((guard_run / "metrics.json").read_text())
    by_kind = metrics["by_kind"]
    assert list(by_kind) == ["all", "clean", "noise", "rotation", "noise+rotation"]
    assert metrics["classifier"]["trained_here"] is True
    # Even a briefly trained classifier reads most clean digits ...
    assert by_kind["clean"]["accuracy"] > 0.8
    # ... the detector passes most clean digits and stops more noisy ones,
    assert by_kind["clean"]["rejected"] < 0.15
    assert by_kind["noise"]["rejected"] > by_kind["clean"]["rejected"] + 0.3
    # ... and what it accepts is read better than everything.
    assert by_kind["all"]["accuracy_accepted"] > by_kind["all"]["accuracy"]
    assert (guard_run / "classifier" / "classifier.json").is_file()
    assert {p.name for p in (guard_run / "plots").iterdir()} == {
        "loss.png",
        "accuracy_by_kind.png",
        "coverage.png",
    }


def test_e2e_guard_scores_csv_agrees_with_the_metrics(guard_run: Path) -> None:
    with (guard_run / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 600
    metrics = json.loads((guard_run / "metrics.json").read_text())
    correct = np.array([r["correct"] == "1" for r in rows])
    rejected = np.array([r["rejected"] == "1" for r in rows])
    assert correct.mean() == pytest.approx(metrics["by_kind"]["all"]["accuracy"])
    assert rejected.mean() == pytest.approx(metrics["by_kind"]["all"]["rejected"])
    assert all((r["predicted"] == r["digit"]) == (r["correct"] == "1") for r in rows)
    scores = np.array([float(r["score"]) for r in rows])
    assert ((scores > metrics["threshold"]) == rejected).all()


def test_e2e_guard_takes_a_saved_classifier(
    guard_run: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    args = ["run", "--scenario", "guard", "--data-dir", str(shared_data_dir), *SMALL]
    classifier = str(guard_run / "classifier")
    result = CliRunner().invoke(cli, [*args, "--classifier", classifier, "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = json.loads((guard_run / "metrics.json").read_text())
    again = json.loads((out / "metrics.json").read_text())
    assert again["classifier"]["trained_here"] is False
    assert again["by_kind"]["all"]["accuracy"] == first["by_kind"]["all"]["accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "guard", "--classifier", "{missing}"], "does not exist"),
        (["--classifier", "x"], "only used by the guard scenario"),
    ],
)
def test_bad_guard_requests(
    args: list[str], message: str, tmp_path: Path, shared_data_dir: Path
) -> None:
    args = [a.replace("{missing}", str(tmp_path / "nothing")) for a in args]
    result = CliRunner().invoke(
        cli,
        ["run", *args, "--data-dir", str(shared_data_dir), *SMALL, "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.incomplete").exists()
