"""Networks for images of any size: pad to a size the network takes, crop the output back.

A convolutional network halves the image side at each downsampling stage, so it takes
heights and widths divisible by 2 ** stages (``Autoencoder.size_multiple``). Images of
another size are padded on every side by repeating their edge pixels (no new content,
no black frame a network would learn to draw) up to the next multiple, and the
reconstruction is cropped back, so scores and error maps are those of the original
pixels. Sizes the network takes directly are left alone: the network is exactly the one
``build_model`` makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ae_anomaly.nn.models import MODELS, build_model, has_code


class SizeAdapter(nn.Module):
    """``network`` (built for ``padded`` (H', W')) seen as a network for ``size`` (H, W)."""

    def __init__(self, network: nn.Module, size: Sequence[int], padded: Sequence[int]) -> None:
        super().__init__()
        self.network = network
        (height, width), (padded_height, padded_width) = size, padded
        top, left = (padded_height - height) // 2, (padded_width - width) // 2
        # (left, right, top, bottom), as F.pad takes them: plain ints, constants in ONNX.
        self.padding = (left, padded_width - width - left, top, padded_height - height - top)
        self.window = (top, top + height, left, left + width)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.padding, mode="replicate")

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.window
        return x[:, :, top:bottom, left:right]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.crop(self.network(self.pad(x)))


class CodedSizeAdapter(SizeAdapter):
    """A SizeAdapter around a network with a code: ``encode`` / ``decode`` pass through."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.encode(self.pad(x))  # type: ignore[operator,no-any-return]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.crop(self.network.decode(code))  # type: ignore[operator]


def network_shape(name: str, input_shape: Sequence[int], **kwargs: object) -> tuple[int, int, int]:
    """The (C, H, W) model ``name`` is built for to take images of ``input_shape``: H and W
    rounded up to its size multiple."""
    channels, height, width = (int(d) for d in input_shape)
    entry = MODELS.get(name)
    size_multiple = getattr(entry.build, "size_multiple", None) if entry else None
    multiple = size_multiple(**kwargs) if size_multiple is not None else 1
    return (channels, -(-height // multiple) * multiple, -(-width // multiple) * multiple)


def build_network(name: str, input_shape: Sequence[int], **kwargs: object) -> nn.Module:
    """Model ``name`` for images of ``input_shape`` (C, H, W) of any size: the plain model
    when it takes that size, else the model for the next size it takes, in a SizeAdapter."""
    shape = tuple(int(d) for d in input_shape)
    built_for = network_shape(name, shape, **kwargs)
    network = build_model(name, built_for, **kwargs)
    if built_for == shape:
        return network
    adapter = CodedSizeAdapter if has_code(network) else SizeAdapter
    return adapter(network, shape[1:], built_for[1:])
