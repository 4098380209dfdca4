"""Networks rewritten for scoring (nn/fusion.py) and the matrix-product blur: the same
numbers as the layers they replace, to float rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.fusion import for_scoring, scoring_copy
from ae_anomaly.nn.models import build_model, model_names
from ae_anomaly.nn.sub_pixel import SubPixelConv
from ae_anomaly.scores import pixel


def _trained_statistics(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """``model`` with batch-norm statistics and affine parameters far from their defaults."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *shape))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.affine:
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_model_scores_the_same_after_the_rewrite(
    name: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    try:
        model = build_model(name, shape)
    except UserError:
        pytest.skip(f"{name} does not take {shape}")
    model = _trained_statistics(model, shape).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_scoring(model)
    images = torch.rand(8, *shape)
    model.eval()
    with torch.inference_mode():
        expected, got = model(images), fast(images)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)
    # the network itself is untouched: it is what is trained, saved and exported
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_conv_dense_loses_its_batch_norms_and_its_thin_transposed_convolution() -> None:
    model = build_model("conv-dense", (1, 28, 28))
    fast = for_scoring(model)
    kinds = [type(m) for m in fast.modules()]
    assert nn.BatchNorm2d not in kinds and nn.BatchNorm1d not in kinds
    assert kinds.count(SubPixelConv) == 1  # 16 -> 1 channels; 32 -> 16 stays transposed
    assert kinds.count(nn.ConvTranspose2d) == 1


@pytest.mark.parametrize(("c_in", "c_out", "bias"), [(16, 1, True), (16, 3, True), (8, 2, False)])
def test_a_sub_pixel_convolution_is_the_transposed_convolution(
    c_in: int, c_out: int, bias: bool
) -> None:
    torch.manual_seed(0)
    transposed = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
    assert SubPixelConv.replaces(transposed)
    x = torch.randn(5, c_in, 7, 9)
    with torch.no_grad():
        assert torch.allclose(SubPixelConv(transposed)(x), transposed(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),  # measured slower
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
        nn.ConvTranspose2d(16, 1, 4, stride=1, padding=1),
        nn.ConvTranspose2d(16, 4, 4, stride=2, padding=1, groups=4),
    ],
)
def test_other_transposed_convolutions_are_left_alone(layer: nn.ConvTranspose2d) -> None:
    assert not SubPixelConv.replaces(layer)


def test_the_scoring_copy_is_made_once_and_again_after_the_weights_change() -> None:
    model = _trained_statistics(build_model("conv-dense", (1, 28, 28)), (1, 28, 28))
    first = scoring_copy(model)
    assert scoring_copy(model) is first
    with torch.no_grad():
        model.encoder[0].weight.mul_(2.0)  # changed in place: the copy is stale
    second = scoring_copy(model)
    assert second is not first
    images = torch.rand(4, 1, 28, 28)
    model.eval()
    with torch.inference_mode():
        assert torch.allclose(second(images), model(images), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 28, 28), (2, 5, 13, 40), (2, 1, 4, 3)])
@pytest.mark.parametrize(("sigma", "radius"), [(1.0, None), (1.5, 5), (4.0, None)])
def test_the_matrix_blur_is_the_convolution_blur(
    shape: tuple[int, ...], sigma: float, radius: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    images = torch.rand(shape)
    by_matrix = pixel.gaussian_blur(images, sigma, radius)
    monkeypatch.setattr(pixel, "MATRIX_BLUR_SIDE", 0)
    by_convolution = pixel.gaussian_blur(images, sigma, radius)
    assert by_matrix.shape == images.shape
    assert torch.allclose(by_matrix, by_convolution, rtol=0, atol=1e-6)


def test_a_network_made_under_inference_mode_is_copied_afresh_each_time() -> None:
    with torch.inference_mode():
        model = _trained_statistics(build_model("conv-dense", (1, 28, 28)), (1, 28, 28))
        model.eval()
        first = scoring_copy(model)
        model.encoder[0].weight.mul_(2.0)  # no version counter records this
        images = torch.rand(4, 1, 28, 28)
        assert torch.allclose(scoring_copy(model)(images), model(images), rtol=0, atol=1e-5)
        assert scoring_copy(model) is not first
