"""Fully connected autoencoders: flatten, dense layers down to a code and back up."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from ae_anomaly.nn.autoencoder import Autoencoder, positive_ints


class DenseAutoencoder(Autoencoder):
    """Flatten, ReLU layers down to the code and mirrored back up, sigmoid output."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__(input_shape)
        widths = [math.prod(self.input_shape), *positive_ints(self.name, "hidden", hidden)]
        self.encoder = _dense_stack(widths, last_activation=nn.ReLU())
        self.decoder = _dense_stack(widths[::-1], last_activation=nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # type: ignore[no-any-return]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code).view(-1, *self.input_shape)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class FCSmall(DenseAutoencoder):
    """784 -> 128 -> 64 -> 16 -> 64 -> 128 -> 784."""

    name = "fc-small"

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (128, 64, 16)) -> None:
        super().__init__(input_shape, hidden)


class FCDeep(DenseAutoencoder):
    """784 -> 512 -> 256 -> 128 -> 16 and back."""

    name = "fc-deep"

    def __init__(
        self, input_shape: Sequence[int], hidden: Sequence[int] = (512, 256, 128, 16)
    ) -> None:
        super().__init__(input_shape, hidden)


def _dense_stack(widths: Sequence[int], last_activation: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        layers.append(last_activation if i == len(widths) - 2 else nn.ReLU())
    return nn.Sequential(*layers)
