"""Patch mode: tiles and their assembly, random crops, the rule for the patch size, and a
patch detector fitted, saved, loaded and exported on real images."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.sources import Dataset
from ae_anomaly.detector.files import META_FILE
from ae_anomaly.errors import UserError
from ae_anomaly.nn.patches import PatchGrid, is_texture, patch_size_for, random_crops
from ae_anomaly.params import AUTO_PATCH, AUTO_PATCH_SIDE

SHAPES = [(32, 64, 64), (32, 70, 45), (8, 8, 8), (16, 17, 100), (32, 256, 256)]


@pytest.mark.parametrize(("size", "height", "width"), SHAPES)
def test_tiles_are_the_crops_of_the_edge_padded_image(size: int, height: int, width: int) -> None:
    grid = PatchGrid(size, height, width)
    images = torch.rand(2, 3, height, width)
    tiles = grid.tiles(images)
    assert tiles.shape == (2 * grid.tiles_per_image, 3, size, size)
    padded = F.pad(
        images,
        (
            0,
            grid.cols * grid.step + grid.step - width,
            0,
            grid.rows * grid.step + grid.step - height,
        ),
        mode="replicate",
    )
    for i in range(grid.rows):
        for j in range(grid.cols):
            top, left = i * grid.step, j * grid.step
            expected = padded[1, :, top : top + size, left : left + size]
            assert torch.equal(tiles[grid.tiles_per_image + i * grid.cols + j], expected)
    # Every pixel of the image is in some tile: the last tiles reach the far edges.
    assert (grid.rows + 1) * grid.step >= height and (grid.cols + 1) * grid.step >= width


@pytest.mark.parametrize(("size", "height", "width"), SHAPES)
def test_assembling_the_tiles_gives_back_the_image(size: int, height: int, width: int) -> None:
    grid = PatchGrid(size, height, width)
    images = torch.rand(3, 2, height, width)
    assert torch.allclose(grid.assemble(grid.tiles(images)), images, atol=1e-6)


def test_overlapping_tiles_are_averaged_and_the_worst_tile_scores_the_image() -> None:
    grid = PatchGrid(4, 8, 8)  # 3 x 3 tiles, 2 pixels apart
    ones = torch.ones(9, 1, 4, 4)
    ones[4] = 4.0  # the middle tile covers pixels 2..5; its centre lies in 4 tiles
    assembled = grid.assemble(ones)[0, 0]
    assert assembled[0, 0] == 1.0  # corner: one tile
    assert assembled[3, 3] == pytest.approx((4 + 3) / 4)
    scores = torch.tensor([0.1, 0.5, 0.2, 0.0, 0.3, 0.1, 0.1, 0.1, 0.1] * 2)
    assert grid.image_scores(scores).tolist() == pytest.approx([0.5, 0.5])


def test_random_crops_are_crops_drawn_from_the_generator() -> None:
    images = torch.rand(6, 2, 20, 30)
    crops = random_crops(images, 8, torch.Generator().manual_seed(3))
    again = random_crops(images, 8, torch.Generator().manual_seed(3))
    assert torch.equal(crops, again)
    places = []
    for n, crop in enumerate(crops):
        found = [
            (top, left)
            for top in range(13)
            for left in range(23)
            if torch.equal(images[n, :, top : top + 8, left : left + 8], crop)
        ]
        assert len(found) == 1
        places.append(found[0])
    assert len(set(places)) > 1  # each image its own place


def test_the_patch_size_rule() -> None:
    assert patch_size_for("off", 512, 512) is None
    assert patch_size_for("auto", AUTO_PATCH_SIDE - 1, 1000) is None
    assert patch_size_for("auto", AUTO_PATCH_SIDE, AUTO_PATCH_SIDE) == AUTO_PATCH
    assert patch_size_for("auto", 64, 100, texture=True) == 32  # half the side
    assert patch_size_for("auto", 40, 100, texture=True) == 20  # half the side
    assert patch_size_for("auto", 25, 30, texture=True) == 12  # even
    assert patch_size_for("auto", 15, 100, texture=True) is None  # too small for two patches
    assert patch_size_for("auto", 100, 100, texture=False) is None
    assert patch_size_for(16, 16, 40) == 16
    with pytest.raises(UserError, match="larger than the images"):
        patch_size_for(32, 28, 28)


def test_crops_of_a_photo_are_a_texture_and_digits_are_not(mnist: Dataset) -> None:
    photo = torch.from_numpy(np.array(load_sample_image("flower.jpg"))).permute(2, 0, 1) / 255
    rng = np.random.default_rng(0)
    places = rng.integers(0, [photo.shape[1] - 64, photo.shape[2] - 64], size=(200, 2))
    crops = torch.stack([photo[:, y : y + 64, x : x + 64] for y, x in places])
    assert is_texture(crops)
    assert not is_texture(torch.from_numpy(mnist.train_images[:200, None] / 255.0))


@pytest.mark.parametrize("patch", [6, 17, "big", 2.5, True])
def test_a_bad_patch_size_is_refused_before_training(patch: object) -> None:
    with pytest.raises(UserError, match="patch"):
        AutoencoderDetector(patch=patch, epochs=1).fit(np.zeros((20, 28, 28), np.uint8))  # type: ignore[arg-type]


def test_restoration_training_cannot_use_patches(mnist: Dataset) -> None:
    detector = AutoencoderDetector(patch=16, restore="rotate-to-upright", epochs=1)
    with pytest.raises(UserError, match="set patch to off"):
        detector.fit(mnist.train_images[:50])


@pytest.fixture(scope="module")
def patch_detector(mnist: Dataset) -> AutoencoderDetector:
    """conv-dense on 16 x 16 patches of 400 real digits, with a score that uses the code."""
    detector = AutoencoderDetector(
        model="conv-dense", score="ssim+latent", patch=16, epochs=3, batch_size=32, device="cpu"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return detector.fit(mnist.train_images[:400])


def test_a_patch_detector_scores_whole_images_at_their_own_resolution(
    patch_detector: AutoencoderDetector, mnist: Dataset
) -> None:
    assert patch_detector.patch_size_ == 16
    assert patch_detector.network_shape() == (1, 16, 16)
    images = mnist.test_images[:20]
    scores = patch_detector.decision_function(images)
    assert scores.shape == (20,) and np.isfinite(scores).all()
    reconstructions, maps = patch_detector.reconstruct(images)
    assert reconstructions.shape == (20, 1, 28, 28) and maps.shape == (20, 28, 28)
    # An image's score is its worst tile's: each tile scored alone gives the same maximum.
    grid = patch_detector._grid()
    assert grid is not None
    tiles = grid.tiles(torch.from_numpy(images[:3, None] / 255.0).float()).numpy()
    whole = copy.copy(patch_detector)  # the same networks and score, for 16 x 16 images
    whole.patch_size_, whole.input_shape_ = None, (1, 16, 16)
    by_tile = whole.decision_function(tiles)
    assert by_tile.reshape(3, -1).max(axis=1) == pytest.approx(scores[:3], abs=1e-4)


def test_a_patch_detector_saves_and_loads_with_the_same_scores(
    patch_detector: AutoencoderDetector, mnist: Dataset, tmp_path: Path
) -> None:
    folder = patch_detector.save(tmp_path / "detector")
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["patch_size"] == 16 and meta["params"]["patch"] == 16
    loaded = AutoencoderDetector.load(folder, device="cpu")
    images = mnist.test_images[:50]
    assert np.array_equal(
        loaded.decision_function(images), patch_detector.decision_function(images)
    )
    meta["patch_size"] = 40  # larger than the images
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="patch_size"):
        AutoencoderDetector.load(folder, device="cpu")


def test_a_patch_detector_exports_to_onnx_as_one_graph(
    patch_detector: AutoencoderDetector, mnist: Dataset, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    from ae_anomaly.deploy.onnx import export_onnx

    path = export_onnx(patch_detector, tmp_path / "patch.onnx")
    images = mnist.test_images[:40]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, reconstructions = session.run(
        None, {"images": images[:, None].astype(np.float32) / 255}
    )
    assert np.abs(scores - patch_detector.decision_function(images)).max() < 1e-4
    assert np.abs(reconstructions - patch_detector.reconstruct(images)[0]).max() < 1e-5
