"""The one-class benchmark: short real runs on MNIST slices, resuming, bad requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.config import build_config
from ae_anomaly.data.sources import Dataset
from ae_anomaly.runs.benchmark import Cell, markdown_table, summarise

SMALL = ["--train-limit", "300", "--test-limit", "300", "--epochs", "1", "--batch-size", "64"]


def invoke(args: list[str], data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["benchmark", "--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def test_e2e_benchmark_writes_tables_and_resumes(shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["--classes", "1,7", "--seeds", "2", *SMALL, "--out", str(out)]
    code, output = invoke(args, shared_data_dir)
    assert code == 0, output
    summary = json.loads((out / "benchmark.json").read_text())
    assert [row["class"] for row in summary["classes"]] == [1, 7]
    assert summary["seeds"] == [0, 1] and len(summary["cells"]) == 4
    grid = np.array([row["auroc_by_seed"] for row in summary["classes"]])
    assert summary["mean"] == pytest.approx(grid.mean())
    assert summary["mean_by_seed"] == pytest.approx(grid.mean(axis=0).tolist())
    assert "| 7 | 7 |" in output and "Published mean AUROC" in output
    assert (out / "benchmark.md").read_text() in output + "\n"
    assert (out / "plots" / "auroc_per_class.png").read_bytes().startswith(b"\x89PNG")

    # Interrupted after three cells: resume recomputes only the missing one.
    work = out.with_name("bench.incomplete")
    shutil.copytree(out, work)
    shutil.rmtree(out)
    (work / "cells" / "class7-seed1.json").unlink()
    kept = (work / "cells" / "class1-seed0.json").read_text()
    code, output = invoke(
        ["--resume", "--classes", "1,7", "--seeds", "2", "--out", str(out)], shared_data_dir
    )
    assert code == 0, output
    assert not work.exists()
    assert (out / "cells" / "class1-seed0.json").read_text() == kept  # not recomputed
    resumed = json.loads((out / "benchmark.json").read_text())
    assert resumed["cells"][:3] == summary["cells"][:3]
    # Same seed, same thread count: the recomputed cell scores as before.
    assert resumed["cells"][3]["auroc"] == pytest.approx(summary["cells"][3]["auroc"], abs=1e-6)


def test_resume_with_other_classes_is_refused(shared_data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "bench.incomplete"
    work.mkdir()
    config = build_config({}, {"scenario": "one-class", "normal_class": 0})
    (work / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    (work / "plan.json").write_text(json.dumps({"classes": [0], "seeds": [0]}))
    code, output = invoke(
        ["--resume", "--classes", "1", "--seeds", "1", "--out", str(tmp_path / "bench")],
        shared_data_dir,
    )
    assert code == 2 and "other classes or seeds" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "3,x"], "--classes takes all or class numbers"),
        (["--classes", "3,3"], "distinct class numbers"),
        (["--classes", "12"], "from 0 to 9"),
        (["--scenario", "corruptions"], "leave out --scenario"),
        (["--normal-class", "2"], "use --classes"),
        (["--seeds", "0"], "--seeds"),
        (["--model", "nope"], "unknown model"),
    ],
)
def test_bad_requests_get_one_sentence(
    args: list[str], message: str, shared_data_dir: Path, tmp_path: Path
) -> None:
    code, output = invoke([*args, *SMALL, "--out", str(tmp_path / "b")], shared_data_dir)
    assert code == 2, output
    assert message in output
    assert not list(tmp_path.iterdir())  # nothing written


def test_summary_table_from_known_cells(mnist: Dataset) -> None:
    def cell(k: int, seed: int, auroc: float) -> Cell:
        return Cell(k, seed, auroc, 0.9, 0.8, 0.7, 3, 10.0, 1.0)

    cells = [cell(0, 0, 0.99), cell(1, 0, 0.97), cell(0, 1, 0.98), cell(1, 1, 0.96)]
    config = build_config({}, {"scenario": "one-class", "normal_class": 0})
    summary = summarise(cells, mnist, config, seconds=44.0)
    assert summary["mean_by_seed"] == pytest.approx([98.0, 97.0])
    assert summary["mean"] == pytest.approx(97.5)
    assert summary["std_over_seeds"] == pytest.approx(0.5)
    assert summary["classes"][0]["mean"] == pytest.approx(98.5)
    assert summary["train_seconds"] == 40.0
    table = markdown_table(summary)
    assert "| 0 | 0 | 99.00 | 98.00 | 98.50 | 0.50 |" in table
    assert "| mean |  | **98.00** | **97.00** | **97.50** | 0.50 |" in table
    assert "Wall time 44 s for 4 detectors" in table
