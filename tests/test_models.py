"""Tests for ae_anomaly.nn.models: shapes, output range, gradients and the name registry."""

from __future__ import annotations

import pytest
import torch

from ae_anomaly.errors import UserError
from ae_anomaly.nn.models import (
    MODELS,
    ConvBNAutoencoder,
    build_model,
    model_names,
    parameter_count,
)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((1, 28, 28), {}),
        ((3, 32, 32), {}),
        ((1, 28, 28), {"channels": [8]}),
        ((3, 32, 32), {"channels": [4, 8, 16]}),
        ((1, 16, 24), {}),
    ],
)
def test_output_shape_equals_input_shape(shape: tuple[int, int, int], kwargs: dict) -> None:
    torch.manual_seed(0)
    model = build_model("conv-bn", shape, **kwargs)
    images = torch.rand(4, *shape)
    model.train()
    assert model(images).shape == images.shape
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out.shape == images.shape
    assert out.dtype == torch.float32


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_output_lies_in_unit_interval(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("conv-bn", shape).eval()
    # extreme inputs as well as ordinary ones
    images = torch.cat([torch.rand(3, *shape), torch.zeros(1, *shape), torch.ones(1, *shape)])
    with torch.no_grad():
        out = model(images)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_gradients_reach_every_parameter(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("conv-bn", shape).train()
    images = torch.rand(4, *shape)
    loss = torch.nn.functional.mse_loss(model(images), images)
    loss.backward()
    params = list(model.named_parameters())
    assert params
    for name, param in params:
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_channels_argument_sets_the_widths() -> None:
    model = build_model("conv-bn", (1, 32, 32), channels=[4, 8, 16])
    assert isinstance(model, ConvBNAutoencoder)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs[:3]] == [4, 8, 16]
    assert convs[0].in_channels == 1
    assert convs[-1].out_channels == 1


def test_side_not_divisible_is_a_user_error_naming_the_divisor() -> None:
    with pytest.raises(UserError, match="divisible by 4") as info:
        build_model("conv-bn", (1, 30, 30))
    assert "30x30" in str(info.value)


def test_divisor_follows_the_number_of_stages() -> None:
    build_model("conv-bn", (1, 28, 28), channels=[8, 8])  # 28 = 4 * 7
    with pytest.raises(UserError, match="divisible by 8"):
        build_model("conv-bn", (1, 28, 28), channels=[8, 8, 8])


def test_only_one_side_not_divisible() -> None:
    with pytest.raises(UserError, match="28x30"):
        build_model("conv-bn", (1, 28, 30))


def test_wrong_channel_count_is_a_user_error() -> None:
    model = build_model("conv-bn", (1, 28, 28))
    with pytest.raises(
        UserError, match=r"built for images of shape \(1, 28, 28\), got \(3, 28, 28\)"
    ):
        model.check_input_shape((3, 28, 28))


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UserError, match="unknown model 'resnet'") as info:
        build_model("resnet", (1, 28, 28))
    for name in model_names():
        assert name in str(info.value)


def test_model_names_are_the_registry() -> None:
    assert model_names() == list(MODELS)
    assert "conv-bn" in model_names()
    assert all(entry.description for entry in MODELS.values())


def test_unknown_keyword_argument_is_a_user_error() -> None:
    with pytest.raises(UserError, match="bad arguments for model 'conv-bn'") as info:
        build_model("conv-bn", (1, 28, 28), chanels=[8])
    assert "chanels" in str(info.value)


def test_empty_channels_is_a_user_error() -> None:
    with pytest.raises(UserError, match="channels"):
        build_model("conv-bn", (1, 28, 28), channels=[])


def test_in_channels_cannot_be_given_twice() -> None:
    # in_channels comes from the input shape; passing it as well is a user mistake
    with pytest.raises(UserError, match="bad arguments"):
        build_model("conv-bn", (1, 28, 28), in_channels=3)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("channels", [[16, -3], [0], [1.5]])
def test_non_positive_width_is_a_user_error(channels: list[int]) -> None:
    with pytest.raises(UserError):
        build_model("conv-bn", (1, 28, 28), channels=channels)


# --- the whole zoo ----------------------------------------------------------------------------

# Parameter counts for 28x28 grey images, worked out by hand from each architecture,
# e.g. fc-small: (784*128+128) + (128*64+64) + (64*16+16) + (16*64+64) + (64*128+128)
# + (128*784+784) = 220320.
EXPECTED_PARAMETERS = {
    "fc-small": 220_320,
    "fc-deep": 1_137_184,
    "conv-strided": 9_569,
    "conv-bn": 12_049,
    "conv-keras": 74_497,
    # convs 160 + 2320 + 4640, BN 32 + 32 + 64, code 1568*16+16, expand 16*1568+1568 and
    # BN 3136, transposed 32*16*16+16, conv 2320, BNs 32 + 32, transposed 16*16+1.
    "conv-dense": 123_185,  # 72,993 with the 16-unit code of the MNIST recipes
    "lenet": 8_472,
}


def test_every_model_is_listed_with_its_parameter_count() -> None:
    assert list(EXPECTED_PARAMETERS) == model_names()
    for name, expected in EXPECTED_PARAMETERS.items():
        assert parameter_count(build_model(name, (1, 28, 28))) == expected, name


def test_fc_small_layer_widths() -> None:
    model = build_model("fc-small", (1, 28, 28))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 128),
        (128, 64),
        (64, 16),
        (16, 64),
        (64, 128),
        (128, 784),
    ]


def test_fc_deep_layer_widths() -> None:
    model = build_model("fc-deep", (1, 28, 28))
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 128, 16, 128, 256, 512, 784]


def test_conv_strided_code_is_7x7x32() -> None:
    model = build_model("conv-strided", (1, 28, 28))
    assert tuple(model.encoder(torch.rand(2, 1, 28, 28)).shape) == (2, 32, 7, 7)


def test_lenet_code_is_32_dimensional_and_bias_free() -> None:
    model = build_model("lenet", (1, 28, 28))
    assert tuple(model.encode(torch.rand(2, 1, 28, 28)).shape) == (2, 32)
    assert not any("bias" in name for name, _ in model.named_parameters())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.affine for m in norms)


@pytest.mark.parametrize("name", list(EXPECTED_PARAMETERS))
def test_every_model_reconstructs_in_range_and_learns(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (1, 28, 28))
    images = torch.rand(8, 1, 28, 28)
    output = model(images)
    assert output.shape == images.shape
    assert float(output.detach().min()) >= 0.0 and float(output.detach().max()) <= 1.0
    torch.nn.functional.mse_loss(output, images).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", ["fc-small", "fc-deep", "conv-strided", "conv-bn", "conv-keras"])
def test_models_adapt_to_colour_and_other_sizes(name: str) -> None:
    model = build_model(name, (3, 32, 32))
    images = torch.rand(2, 3, 32, 32)
    assert model(images).shape == images.shape


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("lenet", (1, 32, 32), "lenet takes 28x28 images only, got 32x32"),
        ("conv-keras", (1, 30, 30), "conv-keras needs image height and width divisible by 4"),
        ("conv-strided", (1, 30, 28), "conv-strided needs image height and width divisible by 4"),
    ],
)
def test_a_size_a_model_cannot_take_is_a_clear_error(
    name: str, shape: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        build_model(name, shape)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("fc-small", {"hidden": [128, 0]}, "fc-small hidden must be a non-empty list"),
        ("lenet", {"code_size": 20}, "multiple of 16"),
        ("conv-dense", {"channels": [8, 16, 32]}, "two channel widths"),
        ("conv-dense", {"code": 0}, "positive code size"),
        ("conv-keras", {"channels": [8]}, "bad arguments for model 'conv-keras'"),
    ],
)
def test_bad_model_arguments_are_clear_errors(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        build_model(name, (1, 28, 28), **kwargs)
