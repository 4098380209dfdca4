"""Tests for ae_anomaly.data.corruptions: resampled rotation and Gaussian noise on tensors."""

from __future__ import annotations

import pytest
import torch

from ae_anomaly.data import corruptions
from ae_anomaly.data.corruptions import add_gaussian_noise, resample


def blob(size: int = 28, sigma: float = 4.0) -> torch.Tensor:
    """A smooth (1, 1, size, size) Gaussian spot with peak 1 in the middle."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))[None, None]


def dot(size: int, row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[0, 0, row, col] = 1.0
    return image


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """(row, col) of a (1, 1, H, W) image's mass."""
    plane = image[0, 0]
    rows = torch.arange(plane.shape[0], dtype=torch.float32)
    cols = torch.arange(plane.shape[1], dtype=torch.float32)
    total = plane.sum()
    return float((plane.sum(1) * rows).sum() / total), float((plane.sum(0) * cols).sum() / total)


def random_digits(n: int, seed: int = 0) -> torch.Tensor:
    """Sparse bright strokes on black, roughly like digits."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=generator) > 0.8).float()


# -- resample ------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4])
def test_angle_zero_keeps_shape_and_range_and_stays_close(factor: int) -> None:
    images = torch.cat([blob(), blob(sigma=2.0)])
    out = resample(images, torch.zeros(2), factor)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    diff = (out - images).abs()
    assert diff.max() < 0.06
    assert diff.mean() < 0.005
    # but not identical: the bilinear up- and area down-sampling smooths
    assert not torch.equal(out, images)


def test_angle_zero_smooths_sharp_images() -> None:
    images = random_digits(4)
    out = resample(images, torch.zeros(4), 4)
    assert out.shape == images.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # an isolated bright pixel loses some of its value to its neighbours
    diff = (out - images).abs()
    assert diff.max() > 0.05
    # yet the total brightness stays about the same (the filters preserve the mean)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)), rtol=0.05, atol=0)


def test_angle_zero_factor_one_is_the_identity() -> None:
    images = random_digits(3)
    out = resample(images, torch.zeros(3), 1)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_input_is_not_modified() -> None:
    images = random_digits(2)
    before = images.clone()
    resample(images, torch.tensor([10.0, -10.0]), 4)
    assert torch.equal(images, before)


def test_plus_90_turns_counter_clockwise_factor_one() -> None:
    # a dot at the top middle of a 9x9 image ends at the left middle
    out = resample(dot(9, 1, 4), torch.tensor([90.0]), 1)
    assert out.shape == (1, 1, 9, 9)
    assert divmod(int(out.argmax()), 9) == (4, 1)
    assert float(out[0, 0, 4, 1]) == pytest.approx(1.0, abs=1e-4)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("angle", "where"),
    [(90.0, (4, 1)), (-90.0, (4, 7)), (180.0, (7, 4)), (-180.0, (7, 4)), (0.0, (1, 4))],
)
def test_quarter_turns_factor_one(angle: float, where: tuple[int, int]) -> None:
    out = resample(dot(9, 1, 4), torch.tensor([angle]), 1)
    assert divmod(int(out.argmax()), 9) == where


def test_plus_90_turns_counter_clockwise_factor_four() -> None:
    size = 12
    image = torch.zeros(1, 1, size, size)
    image[0, 0, 1:3, 5:7] = 1.0  # a 2x2 spot at the top, centred left-right
    out = resample(image, torch.tensor([90.0]), 4)
    row, col = centre_of_mass(out)
    centre = (size - 1) / 2
    assert row == pytest.approx(centre, abs=0.1)  # vertically centred
    assert col == pytest.approx(1.5, abs=0.3)  # at the left edge
    assert float(out.sum()) == pytest.approx(4.0, rel=0.05)


def test_each_image_gets_its_own_angle() -> None:
    images = torch.cat([dot(9, 1, 4), dot(9, 1, 4), dot(9, 1, 4)])
    out = resample(images, torch.tensor([90.0, -90.0, 0.0]), 1)
    assert [divmod(int(o.argmax()), 9) for o in out] == [(4, 1), (4, 7), (1, 4)]


def test_small_rotation_moves_the_top_dot_left() -> None:
    out = resample(dot(28, 4, 14), torch.tensor([20.0]), 4)
    row, col = centre_of_mass(out)
    # rotating (row 4, col 14) by 20 degrees counter-clockwise about (13.5, 13.5)
    assert col == pytest.approx(13.5 - 9.5 * 0.342 + 0.5 * 0.940, abs=0.3)
    assert row == pytest.approx(13.5 - 9.5 * 0.940 - 0.5 * 0.342, abs=0.3)


def test_multi_channel_images_rotate_every_channel_alike() -> None:
    images = random_digits(2).repeat(1, 3, 1, 1)
    out = resample(images, torch.tensor([15.0, -25.0]), 4)
    assert out.shape == (2, 3, 28, 28)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 0], out[:, 2])


def test_chunking_gives_the_same_result_as_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    images = random_digits(10, seed=3)
    angles = torch.linspace(-30, 30, 10)
    whole = resample(images, angles, 4)
    monkeypatch.setattr(corruptions, "_CHUNK", 3)  # 3 + 3 + 3 + 1
    chunked = resample(images, angles, 4)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_empty_batch() -> None:
    out = resample(torch.zeros(0, 1, 8, 8), torch.zeros(0), 4)
    assert out.shape == (0, 1, 8, 8)


def test_one_angle_per_image_is_needed() -> None:
    with pytest.raises(ValueError, match="one angle and one"):
        resample(torch.zeros(3, 1, 8, 8), torch.zeros(2), 4)
    with pytest.raises(ValueError, match="one angle and one"):
        resample(torch.zeros(3, 1, 8, 8), torch.zeros(3), 4, torch.zeros(3, 1))


def test_shift_moves_the_content_by_whole_pixels_exactly() -> None:
    images = torch.zeros(1, 1, 9, 9)
    images[0, 0, 4, 4] = 1.0
    out = resample(images, torch.zeros(1), 1, torch.tensor([[2.0, -1.0]]))  # right 2, up 1
    assert (out[0, 0] > 0.99).nonzero().tolist() == [[3, 6]]


def test_sampling_grid_matches_affine_grid() -> None:
    from ae_anomaly.data.corruptions import _affine_matrices, _warp

    images = torch.rand(3, 1, 12, 12)
    theta = _affine_matrices(
        torch.tensor([0.0, 17.0, -30.0]),
        torch.tensor([[0.3, -0.2], [0.0, 0.0], [-0.5, 0.5]]),
        images.shape[-2:],
    )
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    expected = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    torch.testing.assert_close(_warp(images, theta), expected, atol=1e-5, rtol=0)


# -- add_gaussian_noise ---------------------------------------------------------------


def test_zero_std_leaves_images_unchanged() -> None:
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = add_gaussian_noise(images, torch.zeros(4), torch.Generator().manual_seed(1))
    assert torch.equal(out, images)


def test_std_is_per_image() -> None:
    images = torch.full((3, 1, 16, 16), 0.5)
    out = add_gaussian_noise(
        images, torch.tensor([0.0, 0.1, 0.0]), torch.Generator().manual_seed(0)
    )
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[2], images[2])
    assert not torch.equal(out[1], images[1])
    # std 0.1 around 0.5 is hardly ever clipped: the spread is the std asked for
    assert float((out[1] - 0.5).std()) == pytest.approx(0.1, rel=0.15)
    assert float((out[1] - 0.5).mean()) == pytest.approx(0.0, abs=0.02)


def test_output_is_clipped_to_unit_interval() -> None:
    images = torch.cat([torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)])
    out = add_gaussian_noise(images, torch.tensor([1.0, 1.0]), torch.Generator().manual_seed(0))
    assert float(out.min()) == 0.0
    assert float(out.max()) == 1.0
    # clipping happened on both sides, and some pixels really moved
    assert (out[0] == 0).any() and (out[0] > 0).any()
    assert (out[1] == 1).any() and (out[1] < 1).any()


def test_input_is_not_modified_by_noise() -> None:
    images = torch.full((2, 1, 4, 4), 0.5)
    add_gaussian_noise(images, torch.tensor([0.3, 0.3]), torch.Generator().manual_seed(0))
    assert torch.equal(images, torch.full((2, 1, 4, 4), 0.5))


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    images = torch.full((2, 1, 8, 8), 0.5)
    std = torch.tensor([0.2, 0.3])
    a = add_gaussian_noise(images, std, torch.Generator().manual_seed(7))
    b = add_gaussian_noise(images, std, torch.Generator().manual_seed(7))
    c = add_gaussian_noise(images, std, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
