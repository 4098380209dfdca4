"""`ae-anomaly run --dataset <folder>`: your own images through the whole job."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ae_anomaly.cli import cli
from ae_anomaly.data.sources import Dataset

SNEAKER, SANDAL, TROUSER = 7, 5, 1


def save_pngs(folder: Path, images: np.ndarray, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}{i:04d}.png")


@pytest.fixture(scope="module")
def parts(fashion: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a user's: sneakers to train on; sneakers, sandals and trousers to test."""
    root = tmp_path_factory.mktemp("parts")
    train = fashion.train_images[fashion.train_labels == SNEAKER][:600]
    save_pngs(root / "train", train, "good")
    test = root / "test"
    save_pngs(test / "normal", fashion.test_images[fashion.test_labels == SNEAKER][:60], "n")
    save_pngs(test / "sandal", fashion.test_images[fashion.test_labels == SANDAL][:30], "s")
    save_pngs(test / "trouser", fashion.test_images[fashion.test_labels == TROUSER][:30], "t")
    (root / "train" / "broken.png").write_bytes(b"\x89PNG but not really")
    return root


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", *args, "--epochs", "2", "--batch-size", "32"])
    return result.exit_code, result.output


def test_e2e_folder_with_test_images_is_evaluated(parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, output = run(["--dataset", str(parts), "--on-unreadable", "skip", "--out", str(out)])
    assert code == 0, output
    assert "skipped 1 unreadable file" in output and "broken.png" in output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["by_kind"]) == ["normal", "sandal", "trouser"]
    assert metrics["n_test"] == 120 and metrics["n_normal"] == 60
    assert metrics["by_kind"]["trouser"]["auroc"] > 0.8  # clearly unlike a sneaker
    assert len(metrics["skipped_files"]) == 1
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {Path(r["path"]).parent.name for r in rows} == {"normal", "sandal", "trouser"}
    assert all((Path(r["path"]).parent.name == "normal") == (r["label"] == "0") for r in rows)
    config = (out / "config.yaml").read_text()
    assert "scenario: folder" in config  # the resolved scenario is saved


def test_an_unreadable_file_fails_the_run_by_default(parts: Path, tmp_path: Path) -> None:
    code, output = run(["--dataset", str(parts), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "broken.png" in output
    assert not list(tmp_path.iterdir())


def test_e2e_folder_without_test_images_ranks_the_training_images(
    parts: Path, tmp_path: Path
) -> None:
    only_train = tmp_path / "only-train"
    save_pngs(
        only_train / "train",
        np.stack(
            [np.asarray(Image.open(p)) for p in sorted((parts / "train").glob("good*.png"))[:300]]
        ),
        "g",
    )
    out = tmp_path / "run"
    code, output = run(["--dataset", str(only_train), "--image-size", "16,16", "--out", str(out)])
    assert code == 0, output
    assert "Most anomalous of 300 images" in output
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["split", "index", "path", "score", "rank"]
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 301))
    detector = json.loads((out / "detector" / "detector.json").read_text())
    assert detector["input_shape"] == [1, 16, 16]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnsit"], "unknown dataset 'mnsit'"),
        (["--dataset", "{parts}", "--scenario", "corruptions"], "use the folder scenario"),
        (["--scenario", "folder"], "needs a folder or .npy/.npz file"),
        (["--image-size", "14,14"], "only used with image folders"),
        (["--dataset", "{parts}", "--image-size", "0,14"], "positive"),
        (["--dataset", "{parts}", "--channels", "2"], "channels"),
        (["--dataset", "{parts}", "--on-unreadable", "ignore"], "on_unreadable"),
    ],
)
def test_bad_folder_requests(args: list[str], message: str, parts: Path, tmp_path: Path) -> None:
    args = [a.replace("{parts}", str(parts)) for a in args]
    code, output = run([*args, "--out", str(tmp_path / "run")])
    assert code == 2, output
    assert message in output
    assert not list(tmp_path.iterdir())


def test_threshold_from_normal_test_images_needs_them(tmp_path: Path, fashion: Dataset) -> None:
    root = tmp_path / "data"
    save_pngs(root / "train", fashion.train_images[:50], "g")
    code, output = run(
        ["--dataset", str(root), "--threshold-data", "test-normal", "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "needs normal test images" in output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.incomplete").exists()


def test_e2e_colour_images_of_an_odd_size_run_and_report_in_colour(
    fashion: Dataset, tmp_path: Path
) -> None:
    """30x30 colour PNG and JPEG images: no refusal for the size, a report in colour, and a
    ranking of the training images when there is no test/ folder."""
    root = tmp_path / "colour"

    def coloured(images: np.ndarray) -> np.ndarray:
        rgb = np.stack([images, images * 0.6, images * 0.3], axis=-1).astype(np.uint8)
        return np.stack([np.asarray(Image.fromarray(i).resize((30, 30))) for i in rgb])

    sneakers = coloured(fashion.train_images[fashion.train_labels == SNEAKER][:200])
    save_pngs(root / "train", sneakers, "g")
    save_pngs(tmp_path / "untested" / "train", sneakers, "g")
    test = coloured(fashion.test_images[fashion.test_labels == TROUSER][:20])
    (root / "test" / "trouser").mkdir(parents=True)
    for i, image in enumerate(test):
        Image.fromarray(image).save(root / "test" / "trouser" / f"t{i}.jpg")
    save_pngs(
        root / "test" / "normal",
        coloured(fashion.test_images[fashion.test_labels == SNEAKER][:20]),
        "n",
    )
    out = tmp_path / "run"
    code, output = run(["--dataset", str(root), "--out", str(out)])
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 40
    examples = np.asarray(Image.open(out / "plots" / "examples.png").convert("RGB"), dtype=int)
    assert (np.abs(examples[..., 0] - examples[..., 2]) > 60).any()  # coloured pixels drawn
    code, output = run(["--dataset", str(tmp_path / "untested"), "--out", str(tmp_path / "ranked")])
    assert code == 0, output
    assert (tmp_path / "ranked" / "plots" / "most_anomalous.png").is_file()
