"""Tests for ``ae-anomaly export``: the ONNX model scores like PyTorch, on real images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from ae_anomaly import AutoencoderDetector
from ae_anomaly.cli import cli
from ae_anomaly.data.sources import Dataset
from ae_anomaly.deploy.onnx import INPUT_NAME, OUTPUT_NAMES, export_onnx

ort = pytest.importorskip("onnxruntime")
EXIT_USER_ERROR = 2
TOLERANCE = 1e-5


def export(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["export", *map(str, args)], catch_exceptions=False)


def session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def saved(fashion: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv-bn detector, 1 epoch on 500 real training images, MAE scores."""
    params: dict[str, Any] = {"model_args": {"channels": [8, 16]}, "epochs": 1, "batch_size": 32}
    detector = AutoencoderDetector(**params, score="mae", device="cpu")
    detector.fit(fashion.train_images[:500])
    return detector.save(tmp_path_factory.mktemp("export") / "detector")


def test_onnx_scores_match_pytorch_on_real_images(
    saved: Path, fashion: Dataset, tmp_path: Path
) -> None:
    out = tmp_path / "model.onnx"
    result = export("--detector", saved, "--format", "onnx", "--output", out)
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    detector = AutoencoderDetector.load(saved, device="cpu")
    images = fashion.test_images[:300]
    batch = images[:, None].astype(np.float32) / 255
    model = session(out)
    assert [i.name for i in model.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in model.get_outputs()] == list(OUTPUT_NAMES)
    scores, reconstruction = model.run(None, {INPUT_NAME: batch})
    expected = detector.decision_function(images)
    difference = float(np.abs(scores - expected).max())
    assert difference < TOLERANCE, f"max abs difference {difference}"
    torch_recon, _ = detector.reconstruct(images)
    assert reconstruction.shape == (300, 1, 28, 28)
    assert float(np.abs(reconstruction - torch_recon).max()) < TOLERANCE
    # the batch dimension is dynamic: one image alone scores the same
    single, _ = model.run(None, {INPUT_NAME: batch[7:8]})
    assert single.shape == (1,)
    assert abs(float(single[0]) - expected[7]) < TOLERANCE


def test_metadata_carries_threshold_and_score_kind(saved: Path, tmp_path: Path) -> None:
    detector = AutoencoderDetector.load(saved, device="cpu")
    path = export_onnx(detector, tmp_path / "m.onnx")
    meta = session(path).get_modelmeta().custom_metadata_map
    assert float(meta["threshold"]) == detector.threshold_
    assert meta["score"] == "mae"
    assert json.loads(meta["input_shape"]) == [1, 28, 28]


def test_default_output_is_in_the_detector_folder(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for item in saved.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    result = export("--detector", folder)
    assert result.exit_code == 0, result.output
    assert (folder / "detector.onnx").is_file()
    AutoencoderDetector.load(folder, device="cpu")  # the extra file does not disturb loading


def test_dense_model_with_mse_exports_with_a_dynamic_batch(
    fashion: Dataset, tmp_path: Path
) -> None:
    detector = AutoencoderDetector(
        model="fc-small", score="mse", epochs=1, batch_size=32, device="cpu"
    )
    detector.fit(fashion.train_images[:100])
    path = export_onnx(detector, tmp_path / "fc.onnx")
    images = fashion.test_images[:50]
    scores, _ = session(path).run(None, {INPUT_NAME: images[:, None].astype(np.float32) / 255})
    assert float(np.abs(scores - detector.decision_function(images)).max()) < TOLERANCE


def test_missing_onnx_extra_is_one_sentence(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    result = export("--detector", saved, "--output", tmp_path / "m.onnx")
    assert result.exit_code == EXIT_USER_ERROR
    assert "pip install 'ae-anomaly[onnx]'" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_bad_detector_folder(tmp_path: Path) -> None:
    result = export("--detector", tmp_path / "nowhere")
    assert result.exit_code == EXIT_USER_ERROR
    assert "cannot read detector file" in result.stderr
    result = export("--detector", tmp_path, "--format", "tflite")
    assert result.exit_code == EXIT_USER_ERROR


def test_combined_latent_score_exports_with_its_fitted_state(
    fashion: Dataset, tmp_path: Path
) -> None:
    """The code density, the reference codes and the calibration travel inside the graph."""
    detector = AutoencoderDetector(
        model="conv-dense",
        score="ssim+blur-mse+latent+knn",
        epochs=1,
        batch_size=32,
        device="cpu",
    ).fit(fashion.train_images[:600])
    path = export_onnx(detector, tmp_path / "combined.onnx")
    assert_graph_scores_like(detector, path, fashion.test_images[:200])


def assert_graph_scores_like(
    detector: AutoencoderDetector, path: Path, images: np.ndarray
) -> np.ndarray:
    """Check the graph at ``path`` scores ``images`` like ``detector``; its reconstructions."""
    batch = images[:, None].astype(np.float32) / 255
    scores, reconstruction = session(path).run(None, {INPUT_NAME: batch})
    expected = detector.decision_function(images)
    # Sums of z-scores are larger numbers than pixel errors: compare relative to their spread.
    difference = float(np.abs(scores - expected).max()) / float(expected.std())
    assert difference < 1e-4, f"max difference {difference} of the scores' spread"
    return np.asarray(reconstruction)


def test_an_ensemble_exports_as_one_graph(fashion: Dataset, tmp_path: Path) -> None:
    """Two members: the graph scores and reconstructs with the mean of both, as PyTorch."""
    detector = AutoencoderDetector(
        model="conv-dense",
        model_args={"channels": [4, 8], "code": 8},
        score="ssim+latent",
        members=2,
        epochs=1,
        batch_size=32,
        device="cpu",
    ).fit(fashion.train_images[:400])
    path = export_onnx(detector, tmp_path / "ensemble.onnx")
    images = fashion.test_images[:100]
    reconstruction = assert_graph_scores_like(detector, path, images)
    torch_recon, _ = detector.reconstruct(images)
    assert float(np.abs(reconstruction - torch_recon).max()) < TOLERANCE
    assert session(path).get_modelmeta().custom_metadata_map["members"] == "2"
