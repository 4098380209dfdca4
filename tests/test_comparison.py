"""The architecture comparison: every model through the same detector, data and budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.config import build_config
from ae_anomaly.nn.models import parameter_count
from ae_anomaly.runs.comparison import compare_models


@pytest.fixture(scope="module")
def comparison(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fc-small against conv-bn on a real MNIST slice, two epochs each."""
    config = build_config(
        {},
        {
            "data_dir": str(shared_data_dir),
            "train_limit": 2000,
            "test_limit": 600,
            "epochs": 2,
            "batch_size": 64,
            "noise_std": [0.1, 0.3],
        },
        recipe=False,  # as `ae-anomaly compare` builds it
    )
    out = tmp_path_factory.mktemp("compare") / "out"
    compare_models(config, ["fc-small", "conv-bn"], out)
    return out


def test_every_artefact_is_written(comparison: Path) -> None:
    names = {p.relative_to(comparison).as_posix() for p in comparison.rglob("*") if p.is_file()}
    assert {
        "config.yaml",
        "comparison.json",
        "comparison.md",
        "plots/reconstructions.png",
        "plots/auroc_vs_noise.png",
        "models/fc-small/detector.json",
        "models/conv-bn/weights.safetensors",
    } <= names
    for png in comparison.glob("plots/*.png"):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not comparison.with_name("out.incomplete").exists()


def test_table_has_one_row_per_model_with_every_figure(comparison: Path) -> None:
    rows = json.loads((comparison / "comparison.json").read_text())["models"]
    assert [row["model"] for row in rows] == ["fc-small", "conv-bn"]
    for row in rows:
        assert set(row["mean_error"]) == {"clean", "noise", "rotation", "noise+rotation"}
        assert set(row["auroc"]) == {"noise", "rotation", "noise+rotation"}
        assert set(row["auroc_by_noise_std"]) == {"0.1", "0.3"}
        assert row["epochs_run"] == 2  # the same budget for every model
        assert row["train_seconds"] > 0
    assert rows[0]["parameters"] == 220_320
    assert rows[1]["parameters"] == 12_049


def test_the_known_story_shows(comparison: Path) -> None:
    """The convolutional model reconstructs better and separates strong noise more clearly."""
    small, conv = json.loads((comparison / "comparison.json").read_text())["models"]
    assert conv["mean_error"]["clean"] < small["mean_error"]["clean"]
    assert conv["auroc_by_noise_std"]["0.3"] > small["auroc_by_noise_std"]["0.3"]
    assert conv["auroc_by_noise_std"]["0.3"] >= 0.95


def test_markdown_table_lists_each_model(comparison: Path) -> None:
    text = (comparison / "comparison.md").read_text()
    assert text.count("| fc-small |") == 2 and text.count("| conv-bn |") == 2
    assert "AUROC noise+rotation" in text


def test_models_command_lists_every_architecture() -> None:
    result = CliRunner().invoke(cli, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("fc-small", "fc-deep", "conv-strided", "conv-bn", "conv-keras", "lenet"):
        assert name in result.output
    assert "220,320" in result.output


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("fc-small,resnet", "unknown model 'resnet'"),
        ("conv-bn,conv-bn", "names a model twice"),
        (",", "at least one model"),
    ],
)
def test_bad_model_lists_fail_in_one_sentence(models: str, message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["compare", "--models", models, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_parameter_count_counts_every_parameter() -> None:
    from torch import nn

    assert parameter_count(nn.Linear(3, 2)) == 8


def test_a_failed_comparison_leaves_nothing_behind(
    shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ae_anomaly.runs import comparison

    def fail(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "_train_and_score", fail)
    config = build_config(
        {}, {"data_dir": str(shared_data_dir), "train_limit": 200, "test_limit": 100}
    )
    with pytest.raises(KeyboardInterrupt):
        compare_models(config, ["fc-small"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
