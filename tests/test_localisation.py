"""Localisation: the MVTec AD layout with masks, pixel AUROC and AUPRO, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

from ae_anomaly.cli import cli
from ae_anomaly.data.folder import load_image_folder
from ae_anomaly.errors import UserError
from ae_anomaly.report.localisation import aupro, pixel_auroc


def test_perfect_and_random_maps() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[1, 5:10, 5:10] = True
    masks[2, 20:25, 3:30] = True
    perfect = masks + rng.random(masks.shape) * 0.1
    assert pixel_auroc(perfect, masks) == 1.0
    assert aupro(perfect, masks) == pytest.approx(1.0)
    random = rng.random(masks.shape)
    assert pixel_auroc(random, masks) == pytest.approx(0.5, abs=0.05)
    # A random map's overlap grows like the false-positive rate: area 0.3^2 / 2 / 0.3.
    assert aupro(random, masks) == pytest.approx(0.15, abs=0.03)


def test_aupro_weighs_every_region_alike_whatever_its_size() -> None:
    masks = np.zeros((2, 40, 40), dtype=bool)
    masks[0, 0:30, 0:30] = True  # 900 pixels, found
    masks[1, 0:2, 0:2] = True  # 4 pixels, missed
    maps = np.zeros(masks.shape)
    maps[0, 0:30, 0:30] = 1.0
    assert aupro(maps, masks) == pytest.approx(0.5, abs=0.01)
    assert pixel_auroc(maps, masks) > 0.99  # pixel AUROC is ruled by the big region
    assert aupro(maps, np.zeros_like(masks)) is None


def build_textures(root: Path, n_train: int = 60, n_test: int = 8, side: int = 32) -> None:
    """An MVTec AD folder from the photo that ships with scikit-learn: crops of it, some
    with a drawn scratch or stain, and their masks."""
    photo = load_sample_image("flower.jpg")
    rng = np.random.default_rng(0)

    def crop() -> Image.Image:
        y, x = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        return Image.fromarray(photo[y : y + side, x : x + side])

    def save(image: Image.Image, folder: str, name: str) -> None:
        (root / folder).mkdir(parents=True, exist_ok=True)
        image.save(root / folder / name)

    for i in range(n_train):
        save(crop(), "train/good", f"{i:03d}.png")
    for i in range(n_test):
        save(crop(), "test/good", f"{i:03d}.png")
    for kind in ("scratch", "stain"):
        for i in range(n_test):
            image, mask = crop(), Image.new("L", (side, side), 0)
            ends = [tuple(int(v) for v in rng.integers(2, side - 2, 2)) for _ in range(2)]
            box = [int(v) for v in (*rng.integers(6, side - 12, 2), 0, 0)]
            box[2:] = [box[0] + 8, box[1] + 8]
            for draw, colour in ((ImageDraw.Draw(image), None), (ImageDraw.Draw(mask), 255)):
                if kind == "scratch":
                    draw.line(ends, fill=colour or (250, 250, 250), width=2)
                else:
                    draw.ellipse(box, fill=colour or (30, 60, 200))
            save(image, f"test/{kind}", f"{i:03d}.png")
            save(mask, f"ground_truth/{kind}", f"{i:03d}_mask.png")


@pytest.fixture(scope="module")
def textures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("textures")
    build_textures(root)
    return root


def test_the_mvtec_layout_is_read_with_its_masks(textures: Path, tmp_path: Path) -> None:
    data = load_image_folder(textures)
    assert data.train_images.shape == (60, 3, 32, 32)
    test = data.test
    assert test is not None and test.masks is not None
    assert test.masks.shape == (24, 32, 32)
    good = np.array([k == "good" for k in test.kinds])
    assert (test.labels == ~good).all()  # test/good/ holds the normal images
    assert not test.masks[good].any() and all(m.any() for m in test.masks[~good])
    (textures / "ground_truth" / "stain" / "003_mask.png").rename(tmp_path / "moved.png")
    try:
        with pytest.raises(UserError, match=r"003\.png has no mask"):
            load_image_folder(textures)
    finally:
        (tmp_path / "moved.png").rename(textures / "ground_truth" / "stain" / "003_mask.png")


def test_e2e_a_run_with_masks_reports_where_the_defects_are(textures: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--dataset", str(textures), "--batch-size", "16"]  # the default budget
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "localisation" in result.output and "pixel AUROC" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    found = metrics["localisation"]
    assert set(found["by_kind"]) == {"scratch", "stain"}
    # The crops are a texture, so the default detector works on 16 x 16 patches (half
    # the side) with the squared error. Measured with the default budget (130 epochs of
    # 31 steps): pixel AUROC 0.997, AUPRO 0.993, image AUROC 0.953.
    assert metrics["training"]["patch_size"] == 16
    assert found["pixel_auroc"] > 0.95
    assert 0.9 < found["aupro"] <= 1.0
    assert metrics["overall"]["auroc"] > 0.9
    assert "Where the defects are" in (out / "report.html").read_text()
    assert (out / "plots" / "localisation.png").is_file()
