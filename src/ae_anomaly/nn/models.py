"""The autoencoder networks: plain ``nn.Module``s, looked up by name.

Every model maps images of shape (N, C, H, W) with values in [0, 1] to a
reconstruction of the same shape and range, and is built for one input shape
(C, H, W): convolutional models adapt to any channel count and to sizes their
pooling divides, fully connected ones take their size from the data, and a
shape a model cannot take is refused with a sentence saying why. Training,
scoring and saving live elsewhere; this module only says what the networks are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.autoencoder import Autoencoder
from ae_anomaly.nn.conv import (
    ConvBNAutoencoder,
    ConvDense,
    ConvKeras,
    ConvStrided,
    LeNetAutoencoder,
)
from ae_anomaly.nn.dense import FCDeep, FCSmall

__all__ = [
    "MODELS",
    "Autoencoder",
    "ConvBNAutoencoder",
    "ConvDense",
    "ConvKeras",
    "ConvStrided",
    "FCDeep",
    "FCSmall",
    "LeNetAutoencoder",
    "WithCode",
    "build_model",
    "has_code",
    "model_names",
    "parameter_count",
    "register_model",
]


@dataclass(frozen=True)
class ModelEntry:
    """How to build one named architecture, and a line saying what it is."""

    build: Callable[..., Autoencoder]
    description: str


MODELS: dict[str, ModelEntry] = {
    "fc-small": ModelEntry(FCSmall, "fully connected 784-128-64-16-64-128-784, ReLU, sigmoid"),
    "fc-deep": ModelEntry(FCDeep, "fully connected 784-512-256-128-16 and back, ReLU, sigmoid"),
    "conv-strided": ModelEntry(
        ConvStrided, "stride-2 convs to 7x7x32, transposed convs back, sigmoid"
    ),
    "conv-bn": ModelEntry(
        ConvBNAutoencoder,
        "conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid",
    ),
    "conv-keras": ModelEntry(
        ConvKeras, "Keras tutorial: conv32-pool-conv64-pool | conv64-up-conv32-up-conv1, sigmoid"
    ),
    "conv-dense": ModelEntry(
        ConvDense,
        "stride-2 convs to 7x7x32, dense 32-unit code, mirrored decoder, sigmoid (default)",
    ),
    "lenet": ModelEntry(
        LeNetAutoencoder, "Deep SVDD LeNet: 8/4-channel 5x5 convs, BN without affine, 32-d code"
    ),
}


def has_code(model: nn.Module) -> bool:
    """True for models with a code vector: ``encode`` to it and ``decode`` from it."""
    return callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))


class WithCode(nn.Module):
    """A coded model as (reconstruction, code): one pass that also hands out the code."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.model.encode(x)  # type: ignore[operator]
        return self.model.decode(code), code  # type: ignore[operator]


def register_model(name: str, build: Callable[..., Autoencoder], description: str) -> None:
    """Make ``build`` (input_shape, **kwargs) -> Autoencoder available as model ``name``
    (for experiments outside the package; a name already taken is an error)."""
    if name in MODELS:
        raise ValueError(f"a model named {name!r} is already registered")
    MODELS[name] = ModelEntry(build, description)


def model_names() -> list[str]:
    return list(MODELS)


# A network larger than this (4 GB of float32 weights) is refused before it is built.
MAX_PARAMETERS = 1_000_000_000


def build_model(name: str, input_shape: Sequence[int], **kwargs: object) -> Autoencoder:
    """Build model ``name`` for images of ``input_shape`` = (C, H, W), or say why not."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(model_names())}")
    if "input_shape" in kwargs:
        raise UserError(f"bad arguments for model '{name}': input_shape comes from the data")
    try:
        # On the meta device first: no memory is taken, so absurd arguments (widths of
        # 100,000 channels) are refused by their size instead of exhausting the machine.
        with torch.device("meta"):
            count = parameter_count(MODELS[name].build(tuple(input_shape), **kwargs))
        if count > MAX_PARAMETERS:
            raise UserError(
                f"model '{name}' with these arguments and images of shape "
                f"{tuple(input_shape)} would have {count:,} parameters, more than the limit of "
                f"{MAX_PARAMETERS:,}"
            )
        return MODELS[name].build(tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise UserError(f"bad arguments for model '{name}': {exc}") from exc


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
