"""Bad input to ``ae-anomaly run``: one sentence on stderr, exit status 2, nothing left behind.

Every case runs the real command, with ``$AE_ANOMALY_DATA`` pointing
at a temporary copy of MNIST (corrupted where the case is about the data),
``$AE_ANOMALY_CACHE`` at an empty folder and every proxy variable at a closed
port on 127.0.0.1, so that a download attempt fails at once instead of waiting
on the network. Each case must fail before training starts; the quick limits
keep the few steps before that (loading, splitting) short.

Most cases run the command in-process through click's test runner (torch and
friends are imported once, not per case); a few run it as a real subprocess,
to show that what a user's shell sees is the same.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.data.sources import (
    DEBIAN_ROOT,
    ENV_DATA,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
)
from tests.helpers import Outcome, cli_env, run_subprocess, snapshot

BASES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
# Small enough that nothing before training takes long; training itself must not start.
QUICK = ["--train-limit", "100", "--test-limit", "100"]
CLOSED_PORT = "http://127.0.0.1:9"
EXIT_USER_ERROR = 2
LABELS_GZ = f"{TEST_LABELS}.gz"


# --- running the command ------------------------------------------------------------------


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_cli(args: list[str], *, env: dict[str, str], cwd: Path) -> Outcome:
    """The command in-process; an exception escaping it is shown as a traceback would be."""
    started = time.perf_counter()
    # Only the variables this test sets or removes; the runner restores them afterwards.
    changes: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changes |= {k: None for k in os.environ if k not in env}
    with _working_directory(cwd):
        result = CliRunner().invoke(cli, args, env=changes, prog_name="ae-anomaly")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return Outcome(result.exit_code, result.stdout, stderr, time.perf_counter() - started)


def assert_one_sentence(outcome: Outcome, *fragments: str) -> None:
    """Exit status 2, no traceback, one non-empty line on stderr holding every fragment."""
    both = outcome.stdout + outcome.stderr
    assert "Traceback" not in both, both
    assert outcome.returncode == EXIT_USER_ERROR, both
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{outcome.stderr}"
    assert outcome.stderr.startswith("Error: "), "nothing may come before the sentence"
    assert lines[0].startswith("Error: "), lines[0]
    assert len(lines[0]) > len("Error: ") + 10, lines[0]
    assert outcome.stdout.strip() == "", outcome.stdout
    for fragment in fragments:
        assert fragment.lower() in outcome.message.lower(), outcome.message


# --- data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    """A writable copy of the real MNIST files: ``<root>/mnist/*.gz``; returns the root."""
    root = tmp_path_factory.mktemp("data")
    (root / "mnist").mkdir()
    for base in BASES:
        shutil.copyfile(shared_data_dir / "mnist" / f"{base}.gz", root / "mnist" / f"{base}.gz")
    return root


@pytest.fixture(scope="module")
def test_labels(mnist_copy: Path) -> np.ndarray:
    raw = gzip.decompress((mnist_copy / "mnist" / LABELS_GZ).read_bytes())
    return np.frombuffer(raw, dtype=np.uint8, offset=8).copy()


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (with a different magic number if given)."""
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@dataclass
class Sandbox:
    """A test's folders: data root, empty cache, empty working directory, output parent."""

    root: Path
    data: Path
    cache: Path
    cwd: Path
    runs: Path

    @property
    def out(self) -> Path:
        return self.runs / "out"

    @property
    def env(self) -> dict[str, str]:
        return cli_env(self.data, self.cache)

    def run(self, *args: str) -> Outcome:
        """``ae-anomaly run`` with the quick limits and then ``args`` (later flags win)."""
        return run_cli(["run", *QUICK, *args], env=self.env, cwd=self.cwd)

    def use_mnist(
        self, mnist_copy: Path, replace: dict[str, bytes] | None = None, omit: str = ""
    ) -> None:
        """``data/mnist`` links to the copied files, except the one named ``omit`` and
        those in ``replace`` (file name -> bytes written instead)."""
        replace = replace or {}
        folder = self.data / "mnist"
        folder.mkdir(parents=True)
        for base in BASES:
            name = f"{base}.gz"
            if name == omit:
                continue
            if name in replace:
                (folder / name).write_bytes(replace[name])
            else:
                (folder / name).symlink_to(mnist_copy / "mnist" / name)

    def assert_nothing_left(self) -> None:
        assert sorted(p.name for p in self.runs.iterdir()) == [], "an output folder was left"
        assert sorted(p.name for p in self.cwd.iterdir()) == [], "something written to cwd"
        assert not self.cache.exists() or not any(self.cache.rglob("*")), "cache written"


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(
        tmp_path, tmp_path / "data", tmp_path / "cache", tmp_path / "cwd", tmp_path / "runs"
    )
    for folder in (sandbox.data, sandbox.cwd, sandbox.runs):
        folder.mkdir()
    return sandbox


@pytest.fixture
def good(box: Sandbox, mnist_copy: Path) -> Sandbox:
    """A sandbox whose data root holds an intact MNIST."""
    box.use_mnist(mnist_copy)
    return box


def test_module_entry_point_runs(good: Sandbox) -> None:
    """``python -m ae_anomaly.cli`` is the same command as the ``ae-anomaly`` script."""
    outcome = run_subprocess(["run", "--help"], env=good.env, cwd=good.cwd)
    assert outcome.returncode == 0, outcome.stderr
    assert "--overwrite" in outcome.stdout
    assert "--epochs" in outcome.stdout


# --- missing and damaged data -------------------------------------------------------------


@pytest.mark.skipif(
    (DEBIAN_ROOT / "mnist").is_dir(), reason=f"{DEBIAN_ROOT}/mnist exists on this machine"
)
@pytest.mark.parametrize("partial", [False, True], ids=["no-folder", "three-of-four-files"])
def test_missing_dataset_fails_offline_in_one_sentence(
    box: Sandbox, mnist_copy: Path, partial: bool
) -> None:
    if partial:
        box.use_mnist(mnist_copy, omit=LABELS_GZ)
    outcome = box.run("--out", str(box.out))
    assert_one_sentence(outcome, "mnist", "not found", "download", ENV_DATA)
    if partial:
        assert TEST_LABELS in outcome.message  # says which file is missing
    assert outcome.seconds < 60, "the failed download should not wait on the network"
    box.assert_nothing_left()


def _truncated(gz: bytes, labels: np.ndarray) -> bytes:
    return gz[: len(gz) // 2]


def _bad_crc(gz: bytes, labels: np.ndarray) -> bytes:
    data = bytearray(gz)
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    return bytes(data)


def _bad_method(gz: bytes, labels: np.ndarray) -> bytes:
    data = bytearray(gz)
    data[2] = 0x07  # compression method: only 8 (deflate) exists
    return bytes(data)


def _image_magic(gz: bytes, labels: np.ndarray) -> bytes:
    return gzip.compress(idx_bytes(labels, magic=0x00000803), mtime=0)


def _garbage_magic(gz: bytes, labels: np.ndarray) -> bytes:
    return gzip.compress(idx_bytes(labels, magic=0x12345678), mtime=0)


def _changed_label(gz: bytes, labels: np.ndarray) -> bytes:
    changed = labels.copy()
    changed[0] = (changed[0] + 1) % 10
    return gzip.compress(idx_bytes(changed), mtime=0)


def _one_label_short(gz: bytes, labels: np.ndarray) -> bytes:
    return gzip.compress(idx_bytes(labels[:-1]), mtime=0)


def _header_longer_than_data(gz: bytes, labels: np.ndarray) -> bytes:
    return gzip.compress(idx_bytes(labels)[:-1], mtime=0)


def _empty_file(gz: bytes, labels: np.ndarray) -> bytes:
    return b""


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        pytest.param(_truncated, ["truncated", "gzip"], id="truncated-gzip"),
        pytest.param(_bad_crc, ["corrupt", "gzip"], id="corrupt-gzip-crc"),
        pytest.param(_bad_method, ["corrupt", "gzip"], id="corrupt-gzip-header"),
        pytest.param(_image_magic, ["not an IDX label file", "0x00000803"], id="wrong-magic"),
        pytest.param(_garbage_magic, ["not an IDX", "0x12345678"], id="garbage-magic"),
        pytest.param(_changed_label, ["not the published", "SHA-256"], id="checksum-mismatch"),
        pytest.param(_one_label_short, ["10000 images", "9999 labels"], id="count-mismatch"),
        pytest.param(_header_longer_than_data, ["header", "9999"], id="short-data"),
        pytest.param(_empty_file, ["not an IDX file", "0 bytes"], id="empty-file"),
    ],
)
def test_damaged_dataset_file_fails_in_one_sentence(
    box: Sandbox,
    mnist_copy: Path,
    test_labels: np.ndarray,
    damage: Callable[[bytes, np.ndarray], bytes],
    fragments: list[str],
) -> None:
    original = (mnist_copy / "mnist" / LABELS_GZ).read_bytes()
    box.use_mnist(mnist_copy, {LABELS_GZ: damage(original, test_labels)})
    outcome = box.run("--out", str(box.out))
    # The sentence names the damaged file and what to do about it.
    assert_one_sentence(outcome, *fragments, TEST_LABELS, "delete")
    box.assert_nothing_left()


def test_damaged_file_is_not_replaced_by_a_download(box: Sandbox, mnist_copy: Path) -> None:
    """A bad file in a complete copy is an error, not a reason to look further."""
    box.use_mnist(mnist_copy, {LABELS_GZ: b"\x1f\x8b\x08" + b"\x00" * 20})
    outcome = box.run("--out", str(box.out))
    assert_one_sentence(outcome, TEST_LABELS, "gzip")
    assert "not found" not in outcome.message
    assert "could not be downloaded" not in outcome.message
    box.assert_nothing_left()


# --- names and config values --------------------------------------------------------------


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["--dataset", "foo"], ["unknown dataset 'foo'", "mnist"], id="dataset"),
        pytest.param(["--model", "foo"], ["unknown model 'foo'", "conv-bn"], id="model"),
        pytest.param(["--epochs", "0"], ["training.epochs", "(got 0)"], id="epochs-0"),
        pytest.param(["--epochs", "abc"], ["training.epochs", "'abc'"], id="epochs-type"),
        pytest.param(["--batch-size", "1.5"], ["training.batch_size"], id="batch-float"),
        pytest.param(["--learning-rate", "fast"], ["training.learning_rate"], id="lr-type"),
        pytest.param(["--seed", "-1"], ["seed"], id="seed-negative"),
        pytest.param(
            ["--threshold", "percentile:150"],
            ["detector.threshold", "between 0 and 100"],
            id="threshold-150",
        ),
        pytest.param(["--threshold", "median"], ["detector.threshold", "median"], id="threshold"),
        pytest.param(
            ["--mix", "{clean: 0.5, noise: 0.4}"],
            ["corruptions.mix", "add up to 1", "0.9"],
            id="mix-sum",
        ),
        pytest.param(
            ["--mix", "{clean: 0.5, blur: 0.5}"], ["corruptions.mix", "'blur'"], id="mix-kind"
        ),
        pytest.param(["--mix", "{noise: 1.0}"], ["corruptions.mix", "clean"], id="mix-no-clean"),
        pytest.param(["--noise-std", "0.1,2"], ["corruptions.noise_std"], id="noise-range"),
        pytest.param(["--noise-std", "[0.1"], ["--noise-std", "[0.1"], id="flag-not-yaml"),
        pytest.param(["--max-angle", "45"], ["angle_bands", "45"], id="bands-short"),
        pytest.param(["--angle-bands", "0,20,10"], ["corruptions.angle_bands"], id="bands"),
        pytest.param(["--val-fraction", "1"], ["data.val_fraction"], id="val-fraction"),
        pytest.param(["--train-limit", "5"], ["data.train_limit"], id="train-limit"),
        pytest.param(
            ["--train-limit", "20", "--val-fraction", "0.99"],
            ["val_fraction 0.99", "leaves none to train on"],
            id="empty-train-split",
        ),
        pytest.param(["--device", "tpu"], ["device"], id="device-name"),
        pytest.param(["--scenario", "other"], ["scenario"], id="scenario"),
        pytest.param(["--model-args", "[16, 32]"], ["model_args"], id="model-args-type"),
        pytest.param(
            ["--model-args", "{foo: 1}"],
            ["bad arguments", "conv-dense", "foo"],
            id="model-args-key",
        ),
        pytest.param(
            ["--model", "conv-bn", "--model-args", "{channels: []}"],
            ["conv-bn channels", "non-empty"],
            id="model-no-stages",
        ),
        pytest.param(
            ["--model-args", "{channels: [-1]}"],
            ["channel"],
            id="model-channels-negative",
        ),
        pytest.param(
            ["--model-args", "{channels: [0]}"],
            ["channel"],
            id="model-channels-zero",
        ),
        pytest.param(
            ["--device", "cuda"],
            ["cuda", "not available"],
            id="device-cuda-absent",
            marks=pytest.mark.skipif(CUDA, reason="CUDA is available here"),
        ),
    ],
)
def test_bad_value_fails_in_one_sentence(
    good: Sandbox, args: list[str], fragments: list[str]
) -> None:
    outcome = good.run("--out", str(good.out), *args)
    assert_one_sentence(outcome, *fragments)
    good.assert_nothing_left()


# --- config files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "flags", "fragments"),
    [
        pytest.param("training:\n  epoch: 3\n", [], ["training.epoch", "unknown key"], id="key"),
        pytest.param("epochs: 3\n", [], ["epochs", "unknown key"], id="key-wrong-level"),
        pytest.param(
            "training:\n  batch_size: many\n", [], ["training.batch_size", "'many'"], id="type"
        ),
        pytest.param("training: 5\n", [], ["training"], id="section-type"),
        pytest.param("training: 5\n", ["--epochs", "2"], ["training"], id="section-type-flag"),
        pytest.param(
            "detector:\n  threshold: percentile:150\n",
            [],
            ["detector.threshold", "between 0 and 100"],
            id="threshold-150",
        ),
        pytest.param(
            "corruptions:\n  mix: {clean: 0.7, noise: 0.7}\n",
            [],
            ["corruptions.mix", "add up to 1", "1.4"],
            id="mix-sum",
        ),
        pytest.param("- 1\n- 2\n", [], ["mapping"], id="not-a-mapping"),
        pytest.param("data: [mnist\n", [], ["not valid YAML"], id="not-yaml"),
        pytest.param("training:\n\tepochs: 2\n", [], ["not valid YAML"], id="tab"),
    ],
)
def test_bad_config_file_fails_in_one_sentence(
    good: Sandbox, text: str, flags: list[str], fragments: list[str]
) -> None:
    config = good.root / "config.yaml"
    config.write_text(text, encoding="utf-8")
    outcome = good.run("--config", str(config), "--out", str(good.out), *flags)
    assert_one_sentence(outcome, *fragments)
    good.assert_nothing_left()


def test_valid_config_file_is_read(good: Sandbox) -> None:
    """Control for the cases above: the same route with a good file gets past the config."""
    config = good.root / "config.yaml"
    config.write_text("training:\n  epochs: 1\nmodel: nonesuch\n", encoding="utf-8")
    outcome = good.run("--config", str(config), "--out", str(good.out))
    assert_one_sentence(outcome, "unknown model 'nonesuch'")
    good.assert_nothing_left()


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_unreadable_config_file_fails_in_one_sentence(good: Sandbox, kind: str) -> None:
    config = good.root / "config.yaml"
    if kind == "folder":
        config.mkdir()
    outcome = good.run("--config", str(config), "--out", str(good.out))
    assert_one_sentence(outcome, "config file", str(config))
    good.assert_nothing_left()


def test_config_file_not_utf8_fails_in_one_sentence(good: Sandbox) -> None:
    config = good.root / "config.yaml"
    config.write_bytes(b"seed: 0  # caf\xe9\n")
    outcome = good.run("--config", str(config), "--out", str(good.out))
    assert_one_sentence(outcome, "config file", str(config))
    good.assert_nothing_left()


# --- output folders -----------------------------------------------------------------------


def test_existing_output_folder_is_refused_and_untouched(good: Sandbox) -> None:
    good.out.mkdir()
    (good.out / "metrics.json").write_text('{"old": true}\n')
    (good.out / "plots").mkdir()
    (good.out / "plots" / "loss.png").write_bytes(b"old")
    before = snapshot(good.runs)
    outcome = good.run("--out", str(good.out))
    assert_one_sentence(outcome, "already exists", str(good.out), "--overwrite")
    assert snapshot(good.runs) == before
    assert sorted(p.name for p in good.cwd.iterdir()) == []


def test_existing_regular_file_as_output_is_refused(good: Sandbox) -> None:
    good.out.write_text("not a run\n")
    before = snapshot(good.runs)
    outcome = good.run("--out", str(good.out))
    assert_one_sentence(outcome, str(good.out))
    assert snapshot(good.runs) == before


def test_interrupted_run_needs_resume_or_overwrite(good: Sandbox) -> None:
    work = good.runs / "out.incomplete"
    (work / "checkpoint").mkdir(parents=True)
    (work / "config.yaml").write_text("seed: 0\n")
    (work / "checkpoint" / "checkpoint.safetensors").write_bytes(b"state")
    before = snapshot(good.runs)
    outcome = good.run("--out", str(good.out))
    assert_one_sentence(outcome, "interrupted run", str(work), "--resume", "--overwrite")
    assert snapshot(good.runs) == before
    assert not good.out.exists()


def test_resume_with_nothing_to_resume(good: Sandbox) -> None:
    outcome = good.run("--resume", "--out", str(good.out))
    assert_one_sentence(outcome, "no interrupted run", str(good.out))
    good.assert_nothing_left()


def test_resume_needs_out(good: Sandbox) -> None:
    outcome = good.run("--resume")
    assert_one_sentence(outcome, "--resume", "--out")
    good.assert_nothing_left()


@pytest.mark.parametrize("with_config", [False, True], ids=["own-config", "explicit-config"])
def test_resume_of_a_complete_run_is_refused(good: Sandbox, with_config: bool) -> None:
    good.out.mkdir()
    (good.out / "config.yaml").write_text("seed: 0\n")
    (good.out / "scores.csv").write_text("index\n")
    before = snapshot(good.runs)
    extra = ["--config", str(good.out / "config.yaml")] if with_config else []
    outcome = good.run("--resume", "--out", str(good.out), *extra)
    assert_one_sentence(outcome, str(good.out))
    assert snapshot(good.runs) == before


def test_output_under_a_regular_file_is_refused(good: Sandbox) -> None:
    blocker = good.runs / "file.txt"
    blocker.write_text("x\n")
    out = blocker / "run"
    outcome = good.run("--out", str(out))
    assert_one_sentence(outcome, "cannot create output folder", str(blocker))
    assert sorted(p.name for p in good.runs.iterdir()) == ["file.txt"]
    assert blocker.read_text() == "x\n"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_output_in_a_read_only_folder_is_refused(good: Sandbox) -> None:
    locked = good.runs / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        outcome = good.run("--out", str(locked / "run"))
        listing = sorted(p.name for p in locked.iterdir())
    finally:
        locked.chmod(0o700)
    assert_one_sentence(outcome, "output folder", str(locked))
    assert listing == []


def test_current_folder_as_output_with_overwrite_is_refused(good: Sandbox) -> None:
    """``--out . --overwrite`` must not replace a working directory that is not a run."""
    (good.cwd / "keep.txt").write_text("mine\n")
    outcome = good.run("--out", ".", "--overwrite", "--epochs", "1")
    assert (good.cwd / "keep.txt").read_text() == "mine\n"
    assert sorted(p.name for p in good.cwd.iterdir()) == ["keep.txt"]
    assert_one_sentence(outcome, "--out must name a folder", "not the current folder")
    assert sorted(p.name for p in good.root.iterdir()) == ["cwd", "data", "runs"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(good: Sandbox) -> None:
    good.out.mkdir()
    (good.out / "thesis.tex").write_text("years of work\n")
    before = snapshot(good.runs)
    outcome = good.run("--out", str(good.out), "--overwrite", "--epochs", "1")
    assert_one_sentence(outcome, "refusing to overwrite", str(good.out))
    assert snapshot(good.runs) == before


def test_overwrite_replaces_existing_and_interrupted_runs(good: Sandbox) -> None:
    """The one case here that trains (tiny): --overwrite clears both folders and finishes."""
    good.out.mkdir()
    (good.out / "config.yaml").write_text("seed: 0\n")  # what marks it as an earlier run
    (good.out / "stale.txt").write_text("old run\n")
    (good.runs / "out.incomplete").mkdir()
    (good.runs / "out.incomplete" / "config.yaml").write_text("seed: 0\n")
    (good.runs / "out.incomplete" / "stale.txt").write_text("old interrupted run\n")
    outcome = good.run("--out", str(good.out), "--overwrite", "--quiet", "--epochs", "1")
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert sorted(p.name for p in good.runs.iterdir()) == ["out"]
    assert not (good.out / "stale.txt").exists()
    for name in ("config.yaml", "metrics.json", "scores.csv", "report.html"):
        assert (good.out / name).is_file(), name
    assert (good.out / "detector" / "weights.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["--epochs", "0"], ["training.epochs", "(got 0)"], id="bad-value"),
        pytest.param(["--dataset", "nope"], ["unknown dataset 'nope'"], id="unknown-dataset"),
    ],
)
def test_real_process_fails_in_one_sentence(
    good: Sandbox, args: list[str], fragments: list[str]
) -> None:
    """The same contract holds for the command run from a shell."""
    outcome = run_subprocess(
        ["run", *QUICK, "--out", str(good.out), *args], env=good.env, cwd=good.cwd
    )
    assert_one_sentence(outcome, *fragments)
    good.assert_nothing_left()


def test_real_process_damaged_file_fails_in_one_sentence(box: Sandbox, mnist_copy: Path) -> None:
    original = (mnist_copy / "mnist" / LABELS_GZ).read_bytes()
    box.use_mnist(mnist_copy, {LABELS_GZ: original[: len(original) // 2]})
    outcome = run_subprocess(["run", *QUICK, "--out", str(box.out)], env=box.env, cwd=box.cwd)
    assert_one_sentence(outcome, "truncated", TEST_LABELS)
    box.assert_nothing_left()


def test_unknown_flag_is_a_usage_error(good: Sandbox) -> None:
    """click's own usage errors: exit 2 and no traceback; the last line is the sentence."""
    outcome = good.run("--out", str(good.out), "--epoch", "3")
    assert outcome.returncode == EXIT_USER_ERROR, outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert outcome.message.startswith("No such option"), outcome.message
    assert "--epochs" in outcome.message  # click suggests the right spelling
    good.assert_nothing_left()


def test_overwrite_refuses_an_incomplete_folder_that_is_not_a_run(good: Sandbox) -> None:
    (good.runs / "out.incomplete").mkdir()
    (good.runs / "out.incomplete" / "notes.txt").write_text("mine\n")
    before = snapshot(good.runs)
    outcome = good.run("--out", str(good.out), "--overwrite")
    assert_one_sentence(outcome, "refusing to overwrite", "out.incomplete")
    assert snapshot(good.runs) == before


def test_an_error_the_score_would_raise_after_training_is_raised_before_it(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """A combined score with one validation image used to fail after training, leaving a
    run that --resume could not finish; now nothing is trained and nothing is left."""
    out = tmp_path / "run"
    env = cli_env(shared_data_dir, tmp_path / "cache")
    args = ["run", "--train-limit", "20", "--test-limit", "100", "--epochs", "1"]
    outcome = run_subprocess([*args, "--val-fraction", "0.01", "--out", str(out)], env, tmp_path)
    assert outcome.returncode == EXIT_USER_ERROR
    assert "needs at least two of them, not 1" in outcome.message
    assert not out.exists() and not (tmp_path / "run.incomplete").exists()


@pytest.mark.parametrize("started", [True, False])
def test_ctrl_c_says_how_to_resume_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: bool
) -> None:
    """An interrupted run exits as shells expect (130) and tells how to continue it."""
    from ae_anomaly.runs import experiment
    from ae_anomaly.runs.folder import RunFolder

    def interrupted_run(config: object, out: Path, **_: object) -> None:
        if started:
            RunFolder(out).work.mkdir(parents=True)  # a checkpoint would be in there
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run_experiment", interrupted_run)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--out", str(out), "-q"])
    assert result.exit_code == 130
    expected = f"ae-anomaly run --resume --out {out}" if started else "nothing was written"
    assert expected in result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output


def test_a_disk_that_fills_after_training_leaves_a_run_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path
) -> None:
    """The disk fills as the results are written: one sentence says how to continue, the
    checkpoint stays, and once there is room the resumed run finishes."""
    import errno

    from ae_anomaly.runs import experiment

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(experiment, "write_json", full_disk)
    out = tmp_path / "run"
    env = {"AE_ANOMALY_DATA": str(shared_data_dir)}
    flags = ["--train-limit", "300", "--test-limit", "100", "--epochs", "1", "--batch-size", "64"]
    result = CliRunner().invoke(cli, ["run", *flags, "--out", str(out), "-q"], env=env)
    assert result.exit_code == 2
    assert "No space left on device" in result.output
    assert f"ae-anomaly run --resume --out {out}" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "run.incomplete" / "checkpoint").is_dir() and not out.exists()
    monkeypatch.undo()  # room again
    result = CliRunner().invoke(cli, ["run", "--resume", "--out", str(out), "-q"], env=env)
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file() and not (tmp_path / "run.incomplete").exists()


def test_a_disk_full_before_any_checkpoint_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path
) -> None:
    import errno

    from ae_anomaly.runs import experiment

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(experiment, "write_yaml", full_disk)
    out = tmp_path / "run"
    env = {"AE_ANOMALY_DATA": str(shared_data_dir)}
    flags = ["--train-limit", "300", "--test-limit", "100", "--epochs", "1"]
    result = CliRunner().invoke(cli, ["run", *flags, "--out", str(out), "-q"], env=env)
    assert result.exit_code == 2
    assert "nothing was kept" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_weights_that_cannot_be_written_are_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path
) -> None:
    """safetensors reports a full disk as its own error type, not an OSError: classify
    train once ended in its traceback."""
    from safetensors import SafetensorError

    from ae_anomaly.estimator import files

    def full_disk(state: object, path: str) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(files, "save_file", full_disk)
    out = tmp_path / "c"
    env = {"AE_ANOMALY_DATA": str(shared_data_dir)}
    args = ["classify", "train", "--train-limit", "300", "--test-limit", "100", "--epochs", "1"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "-q"], env=env)
    assert result.exit_code == 2
    assert "weights.safetensors: I/O error: No space left on device" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []
