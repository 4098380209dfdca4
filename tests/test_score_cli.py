"""Tests for ``ae-anomaly score``: files, folders, globs and arrays scored with a saved detector.

The detector is trained once (1 epoch, 300 real Fashion-MNIST sneakers) and
the command runs in-process through click's test runner; one case runs it
as a real subprocess, as a user's shell does.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from ae_anomaly import AutoencoderDetector
from ae_anomaly.cli import cli
from ae_anomaly.data.sources import Dataset
from ae_anomaly.deploy.batch import error_map_name, error_map_png, score_inputs
from tests.helpers import cli_env, run_subprocess

SNEAKER = 7
EXIT_USER_ERROR = 2


@pytest.fixture(scope="module")
def detector(fashion: Dataset) -> AutoencoderDetector:
    train = fashion.train_images[fashion.train_labels == SNEAKER][:300]
    params: dict[str, Any] = {"model_args": {"channels": [8, 16]}, "epochs": 1, "batch_size": 16}
    return AutoencoderDetector(**params, device="cpu").fit(train)


@pytest.fixture(scope="module")
def saved(detector: AutoencoderDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return detector.save(tmp_path_factory.mktemp("score") / "detector")


@pytest.fixture(scope="module")
def probe(fashion: Dataset) -> np.ndarray:
    """40 real test images of every class."""
    return fashion.test_images[:40]


@pytest.fixture
def images_dir(tmp_path: Path, probe: np.ndarray) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(probe):
        # half directly in the folder, half in a sub-folder: both are found, in sorted order
        target = folder / "sub" if i >= 20 else folder
        Image.fromarray(image).save(target / f"{i:03d}.png")
    return folder


def score(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["score", *map(str, args)], catch_exceptions=False)


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_to_stdout_matches_the_detector(
    saved: Path, images_dir: Path, detector: AutoencoderDetector, probe: np.ndarray
) -> None:
    result = score("--detector", saved, images_dir, "--quiet")
    assert result.exit_code == 0, result.output
    rows = read_csv(result.stdout)
    assert list(rows[0]) == ["path", "score", "threshold", "is_anomaly"]
    assert len(rows) == 40
    assert rows[0]["path"] == str(images_dir / "000.png")
    assert rows[20]["path"] == str(images_dir / "sub" / "020.png")
    expected = detector.decision_function(probe)
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_array_equal(scores, expected)  # PNG is lossless and repr is exact
    assert {float(r["threshold"]) for r in rows} == {detector.threshold_}
    flags = [int(r["is_anomaly"]) for r in rows]
    assert flags == detector.predict(probe).tolist()


def test_jsonl_to_a_file_with_arrays_and_globs(
    saved: Path, images_dir: Path, tmp_path: Path, detector: AutoencoderDetector, probe: np.ndarray
) -> None:
    np.save(tmp_path / "batch.npy", probe[:5])
    np.savez(tmp_path / "batch.npz", images=probe[5:8].astype(np.float32) / 255)
    out = tmp_path / "out" / "scores.jsonl"
    pattern = str(images_dir / "sub" / "*.png")
    result = score(
        "--detector", saved, tmp_path / "batch.npy", tmp_path / "batch.npz", pattern,
        "--format", "jsonl", "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "scored 28 images" in result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5 + 3 + 20
    assert rows[0]["path"] == f"{tmp_path / 'batch.npy'}[0]"
    assert rows[5]["path"] == f"{tmp_path / 'batch.npz'}[0]"
    assert isinstance(rows[0]["is_anomaly"], bool)
    assert [r["score"] for r in rows[:5]] == detector.decision_function(probe[:5]).tolist()
    np.testing.assert_allclose(
        [r["score"] for r in rows[5:8]], detector.decision_function(probe[5:8]), rtol=1e-6
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.jsonl"]  # no temp files


def test_error_maps_are_written_as_pngs(
    saved: Path, images_dir: Path, tmp_path: Path, detector: AutoencoderDetector, probe: np.ndarray
) -> None:
    maps_dir = tmp_path / "maps"
    result = score("--detector", saved, images_dir, "--error-maps", maps_dir, "-q")
    assert result.exit_code == 0, result.output
    files = sorted(maps_dir.iterdir())
    assert len(files) == 40
    assert files[0].name == "00000000_000.png"
    _, maps = detector.reconstruct(probe[:1])
    written = np.asarray(Image.open(files[0]))
    assert written.shape == (28, 28)
    # The default score's map (SSIM's), drawn as error_map_png draws it (tested below).
    expected = np.asarray(Image.open(io.BytesIO(error_map_png(maps[0], detector.error_map_kind()))))
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize(("kind", "pixel"), [("mse", 128), ("blur-mse", 128), ("ssim", 64)])
def test_error_map_brightness_is_in_pixel_units(kind: str, pixel: int) -> None:
    """Squared maps are shown as their root: an error of 0.5 is half bright either way."""
    error = np.full((4, 4), 0.25)
    png = error_map_png(error, kind)
    assert np.asarray(Image.open(io.BytesIO(png)))[0, 0] == pixel


def test_error_map_names() -> None:
    assert error_map_name(3, "a/b/c.png") == "00000003_c.png"
    assert error_map_name(12, "x.npy[7]") == "00000012_x.npy-7.png"
    assert error_map_name(0, "we ird name.jpg") == "00000000_we_ird_name.png"


def test_unreadable_file_fails_by_default_and_leaves_no_output(
    saved: Path, images_dir: Path, tmp_path: Path
) -> None:
    (images_dir / "010.png").write_bytes(b"broken")
    out = tmp_path / "scores.csv"
    result = score("--detector", saved, images_dir, "--output", out)
    assert result.exit_code == EXIT_USER_ERROR
    assert "010.png" in result.stderr and "Error: cannot read image" in result.stderr
    assert not out.exists()
    assert list(tmp_path.glob(".scores.csv*")) == []


def test_skip_mode_counts_unreadable_files(saved: Path, images_dir: Path) -> None:
    (images_dir / "010.png").write_bytes(b"broken")
    (images_dir / "sub" / "030.png").write_bytes(b"")
    result = score("--detector", saved, images_dir, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert len(read_csv(result.stdout)) == 38
    assert "skipped 2 unreadable files" in result.stderr
    assert "010.png" in result.stderr and "030.png" in result.stderr


def test_images_are_resized_and_converted_to_the_detector(
    saved: Path, tmp_path: Path, detector: AutoencoderDetector
) -> None:
    big = np.full((56, 56, 3), 120, np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=100)
    result = score("--detector", saved, tmp_path / "big.jpg", "-q")
    assert result.exit_code == 0, result.output
    [row] = read_csv(result.stdout)
    expected = detector.decision_function(np.full((1, 28, 28), 120, np.uint8))[0]
    assert float(row["score"]) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, t: ["--detector", t / "nowhere", d], "cannot read detector file"),
        (lambda d, t: ["--detector", d, t / "missing.png"], "missing.png does not exist"),
        (lambda d, t: ["--detector", d, str(t / "*.gif")], "no image or array file matches"),
        (lambda d, t: ["--detector", t, d], "cannot read detector file"),
    ],
    ids=["no-detector", "missing-input", "glob-without-match", "folder-is-not-a-detector"],
)
def test_bad_arguments_are_one_sentence(
    saved: Path, tmp_path: Path, make: Any, message: str
) -> None:
    result = score(*make(saved, tmp_path))
    assert result.exit_code == EXIT_USER_ERROR
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_array_of_another_shape_is_refused(saved: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.zeros((3, 14, 14), np.uint8))
    result = score("--detector", saved, tmp_path / "small.npy")
    assert result.exit_code == EXIT_USER_ERROR
    assert "not resized" in result.stderr


def test_tampered_detector_is_refused(saved: Path, tmp_path: Path, images_dir: Path) -> None:
    folder = tmp_path / "tampered"
    folder.mkdir()
    for item in saved.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    meta = json.loads((folder / "detector.json").read_text(encoding="utf-8"))
    meta["threshold"]["value"] = "high"
    (folder / "detector.json").write_text(json.dumps(meta), encoding="utf-8")
    result = score("--detector", folder, images_dir)
    assert result.exit_code == EXIT_USER_ERROR
    assert "threshold.value must be a finite number" in result.stderr


def test_thousands_of_files_are_scored_one_batch_at_a_time(
    detector: AutoencoderDetector,
    probe: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n, batch = 2000, 128
    for i in range(n):
        Image.fromarray(probe[i % len(probe)]).save(tmp_path / f"{i:05d}.png")
    sizes: list[int] = []
    original = detector.decision_function

    def counting(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return original(images)

    monkeypatch.setattr(detector, "decision_function", counting)
    out = io.StringIO()
    summary = score_inputs(detector, [tmp_path], out, chunk_size=batch)
    assert summary.scored == n and summary.skipped == []
    assert max(sizes) == batch and sum(sizes) == n
    rows = read_csv(out.getvalue())
    assert len(rows) == n
    np.testing.assert_array_equal([float(r["score"]) for r in rows[:40]], original(probe))


def test_real_process(saved: Path, images_dir: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "cache")
    outcome = run_subprocess(
        ["score", "--detector", str(saved), str(images_dir), "--batch-size", "7"], env, tmp_path
    )
    assert outcome.returncode == 0, outcome.stderr
    assert len(read_csv(outcome.stdout)) == 40
    assert "scored 40 images" in outcome.stderr


# -- write errors and partial output --------------------------------------------------------


def test_an_output_that_is_a_folder_is_one_sentence(
    saved: Path, images_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    result = score("--detector", saved, images_dir, "--output", tmp_path / "out", "--quiet")
    assert result.exit_code == EXIT_USER_ERROR
    assert "cannot read or write" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "out").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


def test_a_full_disk_is_one_sentence(
    saved: Path, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "rows.csv"))

    monkeypatch.setattr(os, "replace", full)
    result = score("--detector", saved, images_dir, "--output", tmp_path / "rows.csv", "-q")
    assert result.exit_code == EXIT_USER_ERROR
    assert result.output.strip().endswith("No space left on device")
    assert not (tmp_path / "rows.csv").exists()


def test_a_failed_pass_leaves_no_error_maps_behind(
    saved: Path, images_dir: Path, tmp_path: Path
) -> None:
    """A corrupt 17th file with batches of 4: the rows are not written, and the 16 maps
    written before it are removed too, with the folder the pass made for them; a folder
    that was there before stays, as it was."""
    (images_dir / "016.png").write_bytes(b"\x89PNG but broken")
    maps = tmp_path / "maps"
    rows = tmp_path / "rows.csv"
    args = ["--batch-size", "4", "--error-maps", maps, "--output", rows, "-q"]
    result = score("--detector", saved, images_dir, *args)
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert "016.png" in result.output
    assert not maps.exists()
    assert not rows.exists()
    maps.mkdir()
    (maps / "mine.txt").write_text("kept")
    result = score("--detector", saved, images_dir, *args)
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert [p.name for p in maps.iterdir()] == ["mine.txt"]
