"""End to end: real training on slices of the real MNIST, through the command and the API.

These are the slow tests of the suite (about two minutes on two CPU cores); every
test here is named ``test_e2e_*`` so that ``-k e2e`` / ``-k "not e2e"`` picks them
out. Nothing is skipped but a missing dataset; the figures asserted are real.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from safetensors import safe_open

from ae_anomaly import __version__
from ae_anomaly.cli.options import parse_overrides
from ae_anomaly.config import RunConfig, build_config, read_yaml
from ae_anomaly.data.sources import ENV_CACHE, ENV_DATA
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.nn.callbacks import Callback, EpochRecord, Fit
from ae_anomaly.nn.checkpoint import CHECKPOINT_NAME
from ae_anomaly.runs.experiment import prepare_data, run_experiment
from tests.helpers import Outcome, cli_env, run_subprocess, snapshot

CSV_COLUMNS = [
    "index",
    "source_index",
    "class",
    "kind",
    "severity",
    "noise_std",
    "angle",
    "label",
    "score",
    "predicted",
]
PLOTS = {"loss.png", "scores.png", "roc_pr.png", "confusion.png", "angle_bands.png"}

# The main run: enough training for clear-cut noise detection, small enough for ~30 s.
MAIN_FLAGS = {
    "train-limit": "3000",
    "test-limit": "1000",
    "epochs": "3",
    "batch-size": "32",  # a few hundred steps: enough for the recipe's SSIM term
    "noise-std": "0.3,0.4",
    "seed": "0",
}
# Runs compared byte for byte: as small as still exercises every step.
TINY_FLAGS = ["--train-limit", "600", "--test-limit", "200", "--epochs", "2", "--batch-size", "64"]


def flag_list(flags: dict[str, str]) -> list[str]:
    return [item for name, value in flags.items() for item in (f"--{name}", value)]


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json less the wall-clock figures, which differ between identical runs."""
    clean = json.loads(json.dumps(metrics))
    clean.pop("seconds", None)
    for record in clean["training"]["history"]:
        record.pop("seconds", None)
    return clean


# --- a. one full run through the command ---------------------------------------------------


@dataclass(frozen=True)
class MainRun:
    out: Path
    outcome: Outcome
    env: dict[str, str]
    cwd: Path


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> MainRun:
    root = tmp_path_factory.mktemp("main")
    cwd = root / "cwd"
    cwd.mkdir()
    env = cli_env(shared_data_dir, root / "cache")
    out = root / "run"
    outcome = run_subprocess(["run", "--out", str(out), *flag_list(MAIN_FLAGS)], env, cwd)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    return MainRun(out, outcome, env, cwd)


def test_e2e_run_writes_every_artefact(main_run: MainRun) -> None:
    out = main_run.out
    assert "Traceback" not in main_run.outcome.stderr
    for name in ("config.yaml", "metrics.json", "scores.csv", "report.html"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert (out / "detector" / "weights.safetensors").stat().st_size > 1000
    assert (out / "detector" / "detector.json").is_file()
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert plots >= PLOTS, plots
    for plot in (out / "plots").glob("*.png"):
        assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), plot.name
    # Complete: no work folder, no checkpoint, no old copy, no temporary file.
    siblings = {p.name for p in out.parent.iterdir()}
    assert siblings <= {"cache", "cwd", "run"}, siblings
    assert not (out / "checkpoint").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert list(main_run.cwd.iterdir()) == []  # nothing written to the working directory
    # The summary on stdout names the report it wrote.
    assert "AUROC" in main_run.outcome.stdout
    assert str(out / "report.html") in main_run.outcome.stdout.replace("\n", "")


def test_e2e_noise_is_detected(main_run: MainRun) -> None:
    metrics = json.loads((main_run.out / "metrics.json").read_text())
    by_kind = metrics["by_kind"]
    assert set(by_kind) == {"clean", "noise", "rotation", "noise+rotation"}
    assert by_kind["noise"]["auroc"] >= 0.95, by_kind["noise"]
    assert by_kind["noise+rotation"]["auroc"] >= 0.95, by_kind["noise+rotation"]
    assert metrics["n_test"] == 1000
    assert metrics["threshold_rule"] == "percentile:95"
    # The corruptions recipe: the generic narrow-code model and combined score.
    assert metrics["detector"]["model"] == "conv-dense"
    assert metrics["detector"]["score"] == "ssim+latent"
    assert metrics["detector"]["assumes"].startswith("generic")
    assert metrics["training"]["epochs_run"] == 3
    assert 1 <= metrics["training"]["best_epoch"] <= 3
    # Training got somewhere: the validation loss fell.
    history = metrics["training"]["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_e2e_scores_csv_has_one_consistent_row_per_test_image(main_run: MainRun) -> None:
    metrics = json.loads((main_run.out / "metrics.json").read_text())
    rows = read_scores(main_run.out / "scores.csv")
    threshold = metrics["threshold"]
    assert len(rows) == metrics["n_test"] == 1000
    assert [int(r["index"]) for r in rows] == list(range(1000))
    sources = [int(r["source_index"]) for r in rows]
    assert len(set(sources)) == 1000  # each test digit used once
    assert all(0 <= s < 10_000 for s in sources)
    # The default mix: 40% clean and 20% of each corruption.
    assert Counter(r["kind"] for r in rows) == {
        "clean": 400,
        "noise": 200,
        "rotation": 200,
        "noise+rotation": 200,
    }
    near = 0
    for row in rows:
        kind, std, angle = row["kind"], float(row["noise_std"]), float(row["angle"])
        assert int(row["label"]) == (kind != "clean"), row
        assert 0 <= int(row["source_index"]) < 10_000
        assert (std > 0) == kind.startswith("noise"), row
        if std > 0:
            assert std in (0.3, 0.4), row
        if kind.endswith("rotation"):
            assert abs(angle) <= 30, row
        else:
            assert row["angle"] == "0.00", row
        expected_severity = std if std > 0 else abs(angle)
        assert float(row["severity"]) == pytest.approx(expected_severity, abs=0.006), row
        score = float(row["score"])
        # The default score sums z-scores (ssim+latent), so it may be negative.
        assert math.isfinite(score)
        # The score is written with 6 significant digits: only a score that rounds
        # onto the threshold may look like it disagrees with its prediction.
        if abs(score - threshold) <= 1e-5 * max(abs(threshold), 1e-3):
            near += 1
            continue
        assert int(row["predicted"]) == (score > threshold), (row, threshold)
    assert near <= 2
    flagged = sum(int(r["predicted"]) for r in rows)
    at = metrics["at_threshold"]["confusion_matrix"]
    assert flagged == at[0][1] + at[1][1]


def test_e2e_clean_false_positive_rate_is_near_the_percentile(main_run: MainRun) -> None:
    """percentile:95 on clean validation digits: about 5% of clean test digits flagged."""
    metrics = json.loads((main_run.out / "metrics.json").read_text())
    rows = read_scores(main_run.out / "scores.csv")
    clean = [r for r in rows if r["kind"] == "clean"]
    fpr = sum(int(r["predicted"]) for r in clean) / len(clean)
    assert 0.0 <= fpr <= 0.15, fpr
    assert metrics["by_kind"]["clean"]["flagged"] == pytest.approx(fpr)
    # Nearly every noisy digit is above the threshold (measured 0.90 after these 3 epochs).
    noisy = [r for r in rows if r["kind"] == "noise"]
    assert sum(int(r["predicted"]) for r in noisy) / len(noisy) >= 0.85


def test_e2e_config_yaml_round_trips(main_run: MainRun) -> None:
    written = read_yaml(main_run.out / "config.yaml")
    from_file = build_config(written, {})
    from_flags = build_config({}, parse_overrides(_snake(MAIN_FLAGS)))
    assert from_file.threads == 1  # the count the run used (the tests' one thread)
    assert from_file == from_flags.model_copy(update={"threads": 1})
    assert from_file.to_dict() == written  # every field written, nothing extra
    assert from_file.data.train_limit == 3000
    assert from_file.corruptions.noise_std == [0.3, 0.4]


def _snake(flags: dict[str, str]) -> dict[str, str | None]:
    return {name.replace("-", "_"): value for name, value in flags.items()}


def test_e2e_detector_json_describes_the_detector(main_run: MainRun) -> None:
    meta = json.loads((main_run.out / "detector" / "detector.json").read_text())
    metrics = json.loads((main_run.out / "metrics.json").read_text())
    assert meta["package_version"] == __version__
    assert meta["model"] == "conv-dense"  # the architecture (the corruptions recipe)
    assert isinstance(meta["model_args"], dict)
    assert meta["input_shape"] == [1, 28, 28]
    assert meta["normalisation"]["uint8_scale"] == 255
    assert meta["normalisation"]["pixel_range"] == [0.0, 1.0]
    assert meta["score"] == "ssim+latent"
    assert meta["threshold"]["rule"] == "percentile:95"
    assert meta["threshold"]["value"] == pytest.approx(metrics["threshold"], rel=1e-12)
    assert len(meta["training"]["history"]) == 3


def test_e2e_saved_detector_reproduces_the_scores(
    main_run: MainRun, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading detector/ and scoring the rebuilt test set gives scores.csv again."""
    monkeypatch.setenv(ENV_DATA, str(shared_data_dir))
    monkeypatch.setenv(ENV_CACHE, str(main_run.out.parent / "cache"))
    config = build_config(read_yaml(main_run.out / "config.yaml"), {})
    test = prepare_data(config).test
    detector = AutoencoderDetector.load(main_run.out / "detector")
    rows = read_scores(main_run.out / "scores.csv")
    assert [int(r["source_index"]) for r in rows] == test.source_index.tolist()
    assert [r["kind"] for r in rows] == test.kinds.tolist()
    scores = detector.decision_function(test.images)
    np.testing.assert_allclose(scores, [float(r["score"]) for r in rows], rtol=1e-5)


def test_e2e_report_is_self_contained(main_run: MainRun) -> None:
    html = (main_run.out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r"""\bsrc\s*=\s*["']([^"']*)["']""", html)
    assert sources, "no images in the report"
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
    assert "<script src" not in html
    embedded = sorted(base64.b64decode(s.split(",", 1)[1]) for s in sources)
    files = sorted(p.read_bytes() for p in (main_run.out / "plots").glob("*.png"))
    assert embedded == files  # one embedded image per plot file, byte for byte


# --- b. same command, same bytes; --quiet; --config round trip ---------------------------


def test_e2e_same_command_twice_gives_identical_scores(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    env = cli_env(shared_data_dir, tmp_path / "cache")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        outcome = run_subprocess(["run", "--out", str(out), "--quiet", *TINY_FLAGS], env, tmp_path)
        assert outcome.returncode == 0, outcome.stderr[-3000:]
        assert outcome.stdout == "", "--quiet printed on stdout"
        assert outcome.stderr == "", "--quiet printed on stderr"
        runs.append(out)
    a, b = runs
    assert (a / "scores.csv").read_bytes() == (b / "scores.csv").read_bytes()
    assert (a / "config.yaml").read_bytes() == (b / "config.yaml").read_bytes()
    metrics_a = json.loads((a / "metrics.json").read_text())
    metrics_b = json.loads((b / "metrics.json").read_text())
    assert without_timings(metrics_a) == without_timings(metrics_b)

    # Feeding config.yaml back through --config reproduces the run.
    c = tmp_path / "c"
    outcome = run_subprocess(
        ["run", "--config", str(a / "config.yaml"), "--out", str(c), "--quiet"], env, tmp_path
    )
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert (c / "config.yaml").read_bytes() == (a / "config.yaml").read_bytes()
    assert (c / "scores.csv").read_bytes() == (a / "scores.csv").read_bytes()


def test_e2e_the_thread_count_is_recorded_and_a_rerun_from_the_config_repeats_it(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """Another thread count sums in another order (README); the config a run leaves names
    the count it used, so a rerun from it is exact even where the default differs."""
    env = cli_env(shared_data_dir, tmp_path / "cache")  # one thread by default
    one, two, again = tmp_path / "one", tmp_path / "two", tmp_path / "again"
    for out, extra in ((one, []), (two, ["--threads", "2"])):
        outcome = run_subprocess(
            ["run", "--out", str(out), "-q", *TINY_FLAGS, *extra], env, tmp_path
        )
        assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert yaml.safe_load((one / "config.yaml").read_text())["threads"] == 1
    assert yaml.safe_load((two / "config.yaml").read_text())["threads"] == 2
    assert (one / "scores.csv").read_bytes() != (two / "scores.csv").read_bytes()
    command = ["run", "--config", str(two / "config.yaml"), "--out", str(again), "-q"]
    outcome = run_subprocess(command, env, tmp_path)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert (again / "scores.csv").read_bytes() == (two / "scores.csv").read_bytes()


# --- c. interrupt and resume ---------------------------------------------------------------


class Interrupt(Callback):
    """A training callback that raises KeyboardInterrupt, as Ctrl-C would, at a set point."""

    def __init__(self, *, at_start_of: int | None = None, at_end_of: int | None = None) -> None:
        self.at_start_of = at_start_of
        self.at_end_of = at_end_of
        self.epochs_ended: list[int] = []

    def on_epoch_start(self, fit: Fit, epoch: int, n_batches: int) -> None:
        if epoch == self.at_start_of:
            raise KeyboardInterrupt

    def on_epoch_end(self, fit: Fit, record: EpochRecord) -> None:
        self.epochs_ended.append(record.epoch)
        if record.epoch == self.at_end_of:
            raise KeyboardInterrupt


def resume_config(data_dir: Path) -> RunConfig:
    return build_config(
        {},
        {
            "data_dir": str(data_dir),
            "train_limit": 600,
            "test_limit": 200,
            "epochs": 3,
            "patience": 3,
            "batch_size": 64,
        },
    )


@dataclass(frozen=True)
class Interrupted:
    reference: Path  # a finished, uninterrupted run of the same config
    work: Path  # <out>.incomplete of a run stopped after its first epoch
    root: Path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Interrupted:
    root = tmp_path_factory.mktemp("resume")
    config = resume_config(shared_data_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_DATA, raising=False)
        mp.setenv(ENV_CACHE, str(root / "cache"))
        reference = run_experiment(config, root / "reference").folder
        out = root / "stopped"
        listener = Interrupt(at_end_of=1)  # Ctrl-C as epoch 1 is reported done
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, out, callbacks=[listener])
    assert listener.epochs_ended == [1]
    assert not out.exists()
    return Interrupted(reference, root / "stopped.incomplete", root)


def copy_interrupted(interrupted: Interrupted, dest: Path) -> Path:
    """A private copy of the interrupted run; returns its --out path."""
    shutil.copytree(interrupted.work, dest / "run.incomplete")
    return dest / "run"


def test_e2e_interrupted_run_leaves_a_checkpoint(interrupted: Interrupted) -> None:
    """Stopped by its listener in end_epoch(1): epoch 1 is kept, in <out>.incomplete only."""
    checkpoint = interrupted.work / "checkpoint" / CHECKPOINT_NAME
    assert checkpoint.is_file()
    assert (interrupted.work / "config.yaml").is_file()
    assert not (interrupted.work / "scores.csv").exists()
    with safe_open(str(checkpoint), framework="pt") as handle:
        progress = json.loads(handle.metadata()["progress"])
    assert [r["epoch"] for r in progress["history"]] == [1]


def test_e2e_resume_ends_with_the_scores_of_an_uninterrupted_run(
    interrupted: Interrupted, tmp_path: Path, shared_data_dir: Path
) -> None:
    out = copy_interrupted(interrupted, tmp_path)
    env = cli_env(shared_data_dir, tmp_path / "cache")
    outcome = run_subprocess(["run", "--resume", "--out", str(out), "--quiet"], env, tmp_path)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (out / "checkpoint").exists()
    ref = interrupted.reference
    assert (out / "scores.csv").read_bytes() == (ref / "scores.csv").read_bytes()
    resumed = json.loads((out / "metrics.json").read_text())
    reference = json.loads((ref / "metrics.json").read_text())
    assert resumed["training"]["epochs_run"] == 3
    assert without_timings(resumed) == without_timings(reference)
    assert (out / "config.yaml").read_bytes() == (ref / "config.yaml").read_bytes()


def test_e2e_resume_with_a_changed_config_is_refused(
    interrupted: Interrupted, tmp_path: Path, shared_data_dir: Path
) -> None:
    out = copy_interrupted(interrupted, tmp_path)
    before = snapshot(tmp_path)
    env = cli_env(shared_data_dir, tmp_path / "cache")
    outcome = run_subprocess(["run", "--resume", "--out", str(out), "--seed", "1"], env, tmp_path)
    assert outcome.returncode == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("Error: cannot resume"), lines[0]
    assert "seed" in lines[0]
    assert snapshot(tmp_path) == before


def test_e2e_interrupt_before_any_checkpoint_leaves_nothing(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped before the first epoch ends there is nothing to resume, so no folder stays."""
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(resume_config(shared_data_dir), out, callbacks=[Interrupt(at_start_of=1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
