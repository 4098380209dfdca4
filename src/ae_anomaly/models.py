"""The autoencoder networks: plain ``nn.Module``s, looked up by name.

Every model maps images of shape (N, C, H, W) with values in [0, 1] to a
reconstruction of the same shape and range. Training, scoring and saving live
elsewhere; this module only says what the networks are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ae_anomaly.errors import UserError


class Autoencoder(nn.Module):
    """Base of every model: says which input shapes (C, H, W) it can take."""

    in_channels: int

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raise UserError naming the problem if the model cannot take ``shape``."""
        if shape[0] != self.in_channels:
            raise UserError(
                f"{type(self).__name__} was built for {self.in_channels}-channel images, "
                f"got {shape[0]} channels"
            )


class ConvBNAutoencoder(Autoencoder):
    """Conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid output.

    Each encoder stage halves the image side, so H and W must be divisible by
    ``2 ** len(channels)``; any number of input channels works.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
            raise UserError(
                f"conv-bn channels must be a non-empty list of positive integers, got {channels!r}"
            )
        self.in_channels = in_channels
        self.downsampling = 2 ** len(channels)
        widths = [in_channels, *channels]
        self.encoder = nn.Sequential(
            *(_down_stage(c_in, c_out) for c_in, c_out in itertools.pairwise(widths))
        )
        reversed_widths = widths[::-1]
        # The last up-stage stops at the first hidden width; a 3x3 conv then maps
        # it to the image channels, so the sigmoid sees a full-resolution map.
        up_out = [*reversed_widths[1:-1], widths[1]]
        self.decoder = nn.Sequential(
            *(_up_stage(c_in, c_out) for c_in, c_out in zip(reversed_widths, up_out, strict=False)),
            nn.Conv2d(widths[1], in_channels, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )

    def check_input_shape(self, shape: Sequence[int]) -> None:
        super().check_input_shape(shape)
        _, height, width = shape
        if height % self.downsampling or width % self.downsampling:
            raise UserError(
                f"conv-bn needs image height and width divisible by {self.downsampling}, "
                f"got {height}x{width}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _down_stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out),
        nn.MaxPool2d(2),
    )


def _up_stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out),
    )


@dataclass(frozen=True)
class ModelEntry:
    """How to build one named architecture, and a line saying what it is."""

    build: Callable[..., Autoencoder]
    description: str


MODELS: dict[str, ModelEntry] = {
    "conv-bn": ModelEntry(
        ConvBNAutoencoder,
        "conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid",
    ),
}


def model_names() -> list[str]:
    return sorted(MODELS)


def build_model(name: str, input_shape: Sequence[int], **kwargs: object) -> Autoencoder:
    """Build model ``name`` for images of ``input_shape`` = (C, H, W), or say why not."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(model_names())}")
    try:
        model = MODELS[name].build(in_channels=input_shape[0], **kwargs)
    except TypeError as exc:
        raise UserError(f"bad arguments for model '{name}': {exc}") from exc
    model.check_input_shape(tuple(input_shape))
    return model
