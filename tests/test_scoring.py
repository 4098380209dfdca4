"""Tests for ae_anomaly.scores.pixel: per-pixel error maps and per-image scores, by hand."""

from __future__ import annotations

import pytest
import torch

from ae_anomaly.scores.names import PIXEL_SCORES as SCORE_KINDS
from ae_anomaly.scores.pixel import error_map, image_scores


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 1-channel 2x2 images and their reconstructions."""
    images = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    recons = torch.tensor([[[[0.5, 0.0], [1.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.7]]]])
    return images, recons


def test_mse_error_map_by_hand() -> None:
    images, recons = pair()
    expected = torch.tensor([[[0.25, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.04]]])
    result = error_map(images, recons, "mse")
    assert result.shape == (2, 2, 2)
    torch.testing.assert_close(result, expected)


def test_mae_error_map_by_hand() -> None:
    images, recons = pair()
    expected = torch.tensor([[[0.5, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.2]]])
    torch.testing.assert_close(error_map(images, recons, "mae"), expected)


def test_mse_image_scores_by_hand() -> None:
    images, recons = pair()
    scores = image_scores(images, recons, "mse")
    assert scores.shape == (2,)
    torch.testing.assert_close(scores, torch.tensor([1.25 / 4, 0.04 / 4]))


def test_mae_image_scores_by_hand() -> None:
    images, recons = pair()
    torch.testing.assert_close(image_scores(images, recons, "mae"), torch.tensor([0.375, 0.05]))


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_scores_are_symmetric_and_zero_for_perfect_reconstruction(kind: str) -> None:
    images, recons = pair()
    torch.testing.assert_close(
        image_scores(images, recons, kind), image_scores(recons, images, kind)
    )
    assert torch.equal(image_scores(images, images, kind), torch.zeros(2))


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_score_is_per_image_not_a_batch_mean(kind: str) -> None:
    images, recons = pair()
    together = image_scores(images, recons, kind)
    alone = torch.cat([image_scores(images[i : i + 1], recons[i : i + 1], kind) for i in range(2)])
    torch.testing.assert_close(together, alone)
    assert together[0] != together[1]
    # an image's score does not depend on what else is in the batch
    bigger = torch.cat([images, torch.ones(3, 1, 2, 2)])
    bigger_recons = torch.cat([recons, torch.zeros(3, 1, 2, 2)])
    torch.testing.assert_close(image_scores(bigger, bigger_recons, kind)[:2], together)


def test_multi_channel_errors_are_averaged_over_channels() -> None:
    images = torch.zeros(1, 3, 1, 2)
    recons = torch.tensor([[[[0.3, 0.0]], [[0.0, 0.0]], [[0.6, 0.9]]]])
    mse_map = error_map(images, recons, "mse")
    assert mse_map.shape == (1, 1, 2)
    torch.testing.assert_close(mse_map, torch.tensor([[[(0.09 + 0.36) / 3, 0.81 / 3]]]))
    mae_map = error_map(images, recons, "mae")
    torch.testing.assert_close(mae_map, torch.tensor([[[0.3, 0.3]]]))
    torch.testing.assert_close(image_scores(images, recons, "mae"), torch.tensor([0.3]))
    torch.testing.assert_close(
        image_scores(images, recons, "mse"), torch.tensor([(0.09 + 0.36 + 0.81) / 6])
    )


def test_score_is_the_mean_of_the_error_map() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 4, 6, generator=generator)
    recons = torch.rand(5, 3, 4, 6, generator=generator)
    for kind in SCORE_KINDS:
        maps = error_map(images, recons, kind)
        assert maps.shape == (5, 4, 6)
        if kind != "rel-blur":  # a ratio of energies, not a mean (see its own test)
            torch.testing.assert_close(image_scores(images, recons, kind), maps.mean(dim=(1, 2)))


def test_mse_and_mae_rank_differently_when_they_should() -> None:
    # one large error vs. several small ones: mse prefers the spread one, mae the peak
    images = torch.zeros(2, 1, 1, 4)
    recons = torch.tensor([[[[0.8, 0.0, 0.0, 0.0]]], [[[0.3, 0.3, 0.3, 0.3]]]])
    mse = image_scores(images, recons, "mse")
    mae = image_scores(images, recons, "mae")
    assert mse[0] > mse[1]
    assert mae[0] < mae[1]


def test_unknown_kind() -> None:
    images, recons = pair()
    with pytest.raises(ValueError, match="latent"):
        error_map(images, recons, "latent")


def test_gaussian_blur_keeps_mass_and_spreads_a_point() -> None:
    from ae_anomaly.scores.pixel import gaussian_blur

    image = torch.zeros(1, 2, 9, 9)
    image[0, :, 4, 4] = 1.0
    blurred = gaussian_blur(image)
    assert blurred.shape == image.shape
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(1, 2))  # away from edges
    assert blurred[0, 0, 4, 4] < 0.2 and blurred[0, 0, 4, 5] > 0.05
    torch.testing.assert_close(blurred[0, 0], blurred[0, 1])  # channels alike
    torch.testing.assert_close(blurred[0, 0], blurred[0, 0].T)  # isotropic


def test_blur_mse_forgives_a_one_pixel_shift_more_than_mse() -> None:
    image = torch.zeros(1, 1, 12, 12)
    image[0, 0, 2:10, 5] = 1.0  # a vertical stroke
    shifted = torch.roll(image, 1, dims=3)
    missing = image.clone()
    missing[0, 0, 2:10, 5] = 0.0  # the stroke left out
    # Under mse a stroke one pixel off costs twice a missing one (missing + extra).
    ratio_mse = image_scores(image, shifted, "mse") / image_scores(image, missing, "mse")
    ratio_blur = image_scores(image, shifted, "blur-mse") / image_scores(image, missing, "blur-mse")
    assert ratio_blur < 0.5 * ratio_mse  # blurring forgives the shift, not the omission


def test_rel_blur_ignores_the_amount_of_ink() -> None:
    thin = torch.zeros(1, 1, 12, 12)
    thin[0, 0, 2:10, 5] = 1.0
    bold = torch.zeros(1, 1, 12, 12)
    bold[0, 0, 2:10, 4:8] = 1.0
    # Each reconstructed at 80% intensity: same relative error, four times the absolute.
    for kind, same in (("rel-blur", True), ("blur-mse", False)):
        a = image_scores(thin, thin * 0.8, kind)
        b = image_scores(bold, bold * 0.8, kind)
        assert torch.isclose(a, b, rtol=0.05).item() is same
    # Bounded: an empty reconstruction of any image scores 1.
    torch.testing.assert_close(
        image_scores(bold, torch.zeros_like(bold), "rel-blur"),
        torch.tensor([1.0]),
        atol=1e-5,
        rtol=0,
    )
