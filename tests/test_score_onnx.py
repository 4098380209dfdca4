"""``ae-anomaly score --detector model.onnx``: an exported model scored by ONNX Runtime,
without importing torch, writing the rows of the saved detector it came from."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from ae_anomaly import AutoencoderDetector
from ae_anomaly.cli import cli
from ae_anomaly.data.sources import Dataset
from ae_anomaly.deploy.onnx import export_onnx
from tests.helpers import cli_env

pytest.importorskip("onnxruntime")
EXIT_USER_ERROR = 2
SNEAKER = 7


@pytest.fixture(scope="module")
def saved(fashion: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector with the one-class recipe's four-term score, its folder and its model."""
    train = fashion.train_images[fashion.train_labels == SNEAKER][:300]
    params: dict[str, Any] = {"model": "conv-dense", "epochs": 1, "batch_size": 16}
    detector = AutoencoderDetector(**params, score="ssim+blur-mse+latent+knn", device="cpu")
    folder = detector.fit(train).save(tmp_path_factory.mktemp("onnx") / "detector")
    export_onnx(detector, folder.parent / "detector.onnx")
    return folder


@pytest.fixture(scope="module")
def images_dir(fashion: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(fashion.test_images[:30]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    np.save(folder / "more.npy", fashion.test_images[30:40].astype(np.float32) / 255)
    return folder


def score(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["score", *map(str, args)], catch_exceptions=False)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_model_writes_the_rows_of_the_saved_detector(saved: Path, images_dir: Path) -> None:
    inputs = (images_dir, images_dir / "more.npy")  # a folder holds only its image files
    by_torch = score("--detector", saved, *inputs, "-q")
    by_onnx = score("--detector", saved.parent / "detector.onnx", *inputs, "-q")
    assert by_onnx.exit_code == 0, by_onnx.output
    expected, got = rows(by_torch.stdout), rows(by_onnx.stdout)
    assert len(got) == 40 and [r["path"] for r in got] == [r["path"] for r in expected]
    assert {r["threshold"] for r in got} == {r["threshold"] for r in expected}
    scores = np.array([float(r["score"]) for r in got])
    reference = np.array([float(r["score"]) for r in expected])
    # float rounding, magnified by the terms' calibration (scores span several units)
    assert np.abs(scores - reference).max() < 1e-4
    threshold = float(got[0]["threshold"])
    clear = np.abs(reference - threshold) > 1e-3
    assert [r["is_anomaly"] for r, c in zip(got, clear, strict=True) if c] == [
        r["is_anomaly"] for r, c in zip(expected, clear, strict=True) if c
    ]


def test_a_real_process_never_imports_torch(saved: Path, images_dir: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "cache")
    command = [sys.executable, "-X", "importtime", "-m", "ae_anomaly", "score"]
    model = saved.parent / "detector.onnx"
    done = subprocess.run(
        [*command, "--detector", str(model), str(images_dir / "000.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(rows(done.stdout)) == 1
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "onnxruntime" in imported
    assert "torch" not in imported


def _not_ours(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["score"])],
        "plain",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
    )
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda saved, tmp: [tmp / "missing.onnx"], "no ONNX model at"),
        (
            lambda saved, tmp: [
                (tmp / "broken.onnx").write_bytes(b"\x08junk" * 50) and tmp / "broken.onnx"
            ],
            "is not a readable ONNX model",
        ),
        (
            lambda saved, tmp: [_not_ours(tmp / "plain.onnx")],
            "was not exported by ae-anomaly export",
        ),
        (
            lambda saved, tmp: [saved.parent / "detector.onnx", "--error-maps", tmp / "maps"],
            "--error-maps needs the saved detector folder",
        ),
        (lambda saved, tmp: [saved.parent / "detector.onnx", "--compile"], "--compile compiles"),
        (
            lambda saved, tmp: [saved.parent / "detector.onnx", "--device", "cuda"],
            "scored on the CPU here",
        ),
    ],
)
def test_what_a_model_cannot_do_is_one_sentence(
    saved: Path, images_dir: Path, tmp_path: Path, make: Any, message: str
) -> None:
    model, *options = make(saved, tmp_path)
    result = score("--detector", model, *options, images_dir / "000.png")
    assert result.exit_code == EXIT_USER_ERROR
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "maps").exists()


def test_bad_float_values_are_refused_as_by_the_detector(saved: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "bright.npy", np.full((2, 28, 28), 2.0, np.float32))
    result = score("--detector", saved.parent / "detector.onnx", tmp_path / "bright.npy")
    assert result.exit_code == EXIT_USER_ERROR
    assert "values in [0, 1]" in result.stderr


def test_under_torchrun_a_model_is_one_sentence(saved: Path, images_dir: Path) -> None:
    result = CliRunner(env={"WORLD_SIZE": "2", "RANK": "0"}).invoke(
        cli, ["score", "--detector", str(saved.parent / "detector.onnx"), str(images_dir)]
    )
    assert result.exit_code == EXIT_USER_ERROR
    assert "scored by one process" in result.stderr


def _ours_changed(saved: Path, path: Path, change: Any) -> Path:
    """The exported model with ``change(model)`` applied."""
    import onnx

    model = onnx.load(saved.parent / "detector.onnx")
    change(model)
    onnx.save(model, path)
    return path


def _metadata(key: str, value: str) -> Any:
    def change(model: Any) -> None:
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value

    return change


def _renamed_score(model: Any) -> None:
    for node in model.graph.node:
        node.output[:] = ["total" if o == "score" else o for o in node.output]
    model.graph.output[0].name = "total"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_metadata("threshold", "nan"), "its threshold is nan"),
        (_metadata("input_shape", "[1, 0, 28]"), "are not ours"),
        (_renamed_score, "are not ours"),
    ],
)
def test_a_tampered_model_is_one_sentence(
    saved: Path, images_dir: Path, tmp_path: Path, change: Any, message: str
) -> None:
    model = _ours_changed(saved, tmp_path / "changed.onnx", change)
    result = score("--detector", model, images_dir / "000.png")
    assert result.exit_code == EXIT_USER_ERROR
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_model_giving_nan_scores_gives_no_verdict(saved: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    def poisoned(model: Any) -> None:
        first = model.graph.initializer[0]
        values = numpy_helper.to_array(first).copy()
        values.flat[:] = np.nan
        first.CopyFrom(numpy_helper.from_array(values, first.name))

    model = _ours_changed(saved, tmp_path / "nan.onnx", poisoned)
    assert onnx.load(model)  # still a valid model
    np.save(tmp_path / "few.npy", np.full((3, 28, 28), 128, np.uint8))
    result = score("--detector", model, tmp_path / "few.npy")
    assert result.exit_code == EXIT_USER_ERROR
    assert "not finite numbers" in result.stderr
