"""Scoring through torch.compile (nn/compiled.py, ``compile()``, ``score --compile``): the
scores of uncompiled scoring, one compile for every batch size, and uncompiled scoring
with a warning where compiling fails."""

from __future__ import annotations

import csv
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.sources import Dataset
from ae_anomaly.nn import compiled
from tests.helpers import CLI, cli_env

needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile needs a C++ compiler on the CPU",
)


@pytest.fixture(scope="module")
def detector_dir(mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv-dense with a pixel term and a code term, trained briefly on 300 digits."""
    detector = AutoencoderDetector(
        model="conv-dense", score="ssim+latent", epochs=1, device="cpu", seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(mnist.train_images[:300])
    return detector.save(tmp_path_factory.mktemp("compiled") / "detector")


@needs_compiler
def test_compiled_scores_are_the_uncompiled_ones_for_any_batch(
    detector_dir: Path, mnist: Dataset
) -> None:
    images = mnist.test_images[:700]  # a full pass of 512 and one of 188
    expected = AutoencoderDetector.load(detector_dir, device="cpu").decision_function(images)
    detector = AutoencoderDetector.load(detector_dir, device="cpu").compile()
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        got = detector.decision_function(images)
        frames_before = _compiled_frames()
        again = detector.decision_function(images[:37])  # another size: no new compile
        assert _compiled_frames() == frames_before
    # float rounding, magnified by the score's calibration: relative to the scores' spread
    tolerance = 1e-4 * np.ptp(expected)
    assert np.abs(got - expected).max() < tolerance
    assert np.abs(again - expected[:37]).max() < tolerance


def _compiled_frames() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["stats"].values()))


def test_a_failed_compile_scores_uncompiled_with_a_warning(
    detector_dir: Path, mnist: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(module: torch.nn.Module, **options: object) -> object:
        def fail(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InductorError: no C++ compiler found")

        return fail

    monkeypatch.setattr(compiled.torch, "compile", no_compiler)
    images = mnist.test_images[:50]
    expected = AutoencoderDetector.load(detector_dir, device="cpu").decision_function(images)
    detector = AutoencoderDetector.load(detector_dir, device="cpu").compile()
    with pytest.warns(RuntimeWarning, match="could not be compiled .*no C\\+\\+ compiler"):
        got = detector.decision_function(images)
    np.testing.assert_array_equal(got, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # warned once, then uncompiled
        np.testing.assert_array_equal(detector.decision_function(images), expected)


@needs_compiler
def test_a_refit_detector_scores_with_its_new_weights(mnist: Dataset) -> None:
    def fitted(images: np.ndarray) -> AutoencoderDetector:
        detector = AutoencoderDetector(model="fc-small", score="mse", epochs=1, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return detector.set_params(device="cpu").fit(images)

    test = mnist.test_images[:20]
    detector = fitted(mnist.train_images[:200]).compile()
    before = detector.decision_function(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(mnist.train_images[200:400])
    expected = fitted(mnist.train_images[200:400]).decision_function(test)
    assert not np.allclose(before, expected, rtol=0, atol=1e-4)
    assert np.allclose(detector.decision_function(test), expected, rtol=0, atol=1e-4)


@needs_compiler
def test_score_compile_writes_the_rows_of_uncompiled_scoring(
    detector_dir: Path, mnist: Dataset, shared_data_dir: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "digits.npy", mnist.test_images[:300])
    env = cli_env(shared_data_dir, tmp_path / "cache")
    rows = {}
    for name, flags in [("plain", []), ("compiled", ["--compile"])]:
        command = [*CLI, "score", "--detector", str(detector_dir), "digits.npy", *flags]
        done = subprocess.run(
            [*command, "--output", f"{name}.csv", "--quiet"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "could not be compiled" not in done.stderr
        with (tmp_path / f"{name}.csv").open() as stream:
            rows[name] = list(csv.DictReader(stream))
    assert [r["path"] for r in rows["plain"]] == [r["path"] for r in rows["compiled"]]
    plain = np.array([float(r["score"]) for r in rows["plain"]])
    compiled_scores = np.array([float(r["score"]) for r in rows["compiled"]])
    assert np.abs(plain - compiled_scores).max() < 1e-4 * np.ptp(plain)
