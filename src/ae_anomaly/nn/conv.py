"""Convolutional autoencoders: conv-bn (the classic), conv-strided, conv-keras (the Keras
tutorial), lenet (Deep SVDD's) and conv-dense (a dense bottleneck, the recipes' model)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.autoencoder import Autoencoder, positive_ints


class _Staged(Autoencoder):
    """A network of one stage per ``channels`` width, each halving the image side, so H
    and W must be divisible by ``2 ** len(channels)``."""

    @classmethod
    def size_multiple(cls, **kwargs: object) -> int:
        return _stages_multiple(kwargs.get("channels", (16, 32)))

    def _stage_widths(self, channels: Sequence[int]) -> list[int]:
        """[image channels, *channels], once ``channels`` and the image size are checked."""
        checked = positive_ints(self.name, "channels", channels)
        self._require_divisible(self.size_multiple(channels=checked))
        return [self.in_channels, *checked]


class ConvBNAutoencoder(_Staged):
    """Conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid output."""

    name = "conv-bn"

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32)) -> None:
        super().__init__(input_shape)
        widths = self._stage_widths(channels)
        self.encoder = nn.Sequential(
            *(_down_stage(c_in, c_out) for c_in, c_out in itertools.pairwise(widths))
        )
        reversed_widths = widths[::-1]
        # The last up-stage stops at the first hidden width; a 3x3 conv then maps
        # it to the image channels, so the sigmoid sees a full-resolution map.
        up_out = [*reversed_widths[1:-1], widths[1]]
        self.decoder = nn.Sequential(
            *(_up_stage(c_in, c_out) for c_in, c_out in zip(reversed_widths, up_out, strict=False)),
            nn.Conv2d(widths[1], self.in_channels, kernel_size=3, padding=1),
            nn.Sigmoid(),
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


class ConvStrided(_Staged):
    """28x28xC -> 14x14x16 -> 7x7x32 by stride-2 convolutions, transposed convolutions back."""

    name = "conv-strided"

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32)) -> None:
        super().__init__(input_shape)
        widths = self._stage_widths(channels)
        encoder: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        decoder: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths[::-1]):
            # output_padding=1 makes each transposed conv exactly double the side.
            decoder += [
                nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                nn.ReLU(inplace=True),
            ]
        decoder[-1] = nn.Sigmoid()
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ConvKeras(Autoencoder):
    """The Keras tutorial model: Conv32-Pool-Conv64-Pool | Conv64-Up-Conv32-Up-Conv1 (sigmoid).

    Its reference setting trains it with MAE, Adam lr 2e-4, batch 128.
    """

    name = "conv-keras"

    @classmethod
    def size_multiple(cls, **kwargs: object) -> int:
        return 4

    def __init__(self, input_shape: Sequence[int]) -> None:
        super().__init__(input_shape)
        self._require_divisible(self.size_multiple())
        c = self.in_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(32, c, 3, padding=1),
            nn.Sigmoid(),
        )
        # Keras' initialisation (Glorot-uniform kernels, zero biases). With
        # PyTorch's default this network can collapse in its first epoch to an
        # all-black output whose ReLUs never recover.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class LeNetAutoencoder(Autoencoder):
    """The LeNet-style autoencoder of the Deep SVDD reference implementation (MNIST).

    8 and 4 channel 5x5 convolutions, batch-norm without affine parameters,
    LeakyReLU, a 32-d code, no biases; the decoder reshapes the code to
    (code_size / 16) x 4 x 4 and grows it back to 28x28. Only 28x28 images fit.
    """

    name = "lenet"
    SIDE = 28

    def __init__(self, input_shape: Sequence[int], code_size: int = 32) -> None:
        super().__init__(input_shape)
        if self.input_shape[1:] != (self.SIDE, self.SIDE):
            raise UserError(
                f"lenet takes 28x28 images only, got {self.input_shape[1]}x{self.input_shape[2]}"
            )
        if not isinstance(code_size, int) or code_size <= 0 or code_size % 16:
            raise UserError(f"lenet code_size must be a positive multiple of 16, got {code_size!r}")
        c = self.in_channels
        self.code_size = code_size
        self.pool = nn.MaxPool2d(2, 2)
        self.conv1 = nn.Conv2d(c, 8, 5, bias=False, padding=2)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-04, affine=False)
        self.conv2 = nn.Conv2d(8, 4, 5, bias=False, padding=2)
        self.bn2 = nn.BatchNorm2d(4, eps=1e-04, affine=False)
        self.fc1 = nn.Linear(4 * 7 * 7, code_size, bias=False)
        self.deconv1 = nn.ConvTranspose2d(code_size // 16, 4, 5, bias=False, padding=2)
        self.bn3 = nn.BatchNorm2d(4, eps=1e-04, affine=False)
        # padding=3 turns 16x16 into 14x14, so the last upsampling reaches 28x28.
        self.deconv2 = nn.ConvTranspose2d(4, 8, 5, bias=False, padding=3)
        self.bn4 = nn.BatchNorm2d(8, eps=1e-04, affine=False)
        self.deconv3 = nn.ConvTranspose2d(8, c, 5, bias=False, padding=2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.leaky_relu(self.bn1(self.conv1(x))))
        x = self.pool(F.leaky_relu(self.bn2(self.conv2(x))))
        return self.fc1(x.flatten(1))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        x = code.view(code.shape[0], self.code_size // 16, 4, 4)
        x = F.interpolate(F.leaky_relu(x), scale_factor=2)
        x = F.interpolate(F.leaky_relu(self.bn3(self.deconv1(x))), scale_factor=2)
        x = F.interpolate(F.leaky_relu(self.bn4(self.deconv2(x))), scale_factor=2)
        return torch.sigmoid(self.deconv3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class ConvDense(Autoencoder):
    """Stride-2 conv encoder to (H/4)x(W/4), a dense bottleneck of ``code`` units, mirrored decoder.

    The convolutional models above keep a 7x7x32 code: more numbers than the
    image has pixels, so they also reconstruct what they never saw. The dense
    bottleneck forces a summary of the normal images; on one-class MNIST it
    raised the mean AUROC from about 72 to 95 (mse, class 0: 72 -> 99;
    BENCHMARKS.md). Batch-norm after every layer but the last.

    The code has 32 units by default: on the own-images suite (docs/own-images.md) a
    tiny set (80 trousers) reached AUROC 0.960 with 16 and 0.988 with 32, and 64 was no
    better than 32 on the four sets of objects and digits. The MNIST recipes, measured
    with 16, name ``code: 16``.
    """

    name = "conv-dense"

    @classmethod
    def size_multiple(cls, **kwargs: object) -> int:
        return 4

    def __init__(
        self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32), code: int = 32
    ) -> None:
        super().__init__(input_shape)
        widths = positive_ints(self.name, "channels", channels)
        if len(widths) != 2 or isinstance(code, bool) or not isinstance(code, int) or code < 1:
            raise UserError(
                f"{self.name} takes two channel widths and a positive code size, "
                f"got channels {widths} and code {code!r}"
            )
        c1, c2 = widths
        self._require_divisible(self.size_multiple())
        _, height, width = self.input_shape
        self.grid = (c2, height // 4, width // 4)
        flat = c2 * (height // 4) * (width // 4)
        c = self.in_channels
        self.encoder = nn.Sequential(
            *_conv_bn(nn.Conv2d(c, c1, 3, stride=2, padding=1), c1),
            *_conv_bn(nn.Conv2d(c1, c1, 3, padding=1), c1),
            *_conv_bn(nn.Conv2d(c1, c2, 3, stride=2, padding=1), c2),
            nn.Flatten(),
            nn.Linear(flat, code),
        )
        self.expand = nn.Sequential(
            nn.Linear(code, flat), nn.BatchNorm1d(flat), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(
            *_conv_bn(nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), c1),
            *_conv_bn(nn.Conv2d(c1, c1, 3, padding=1), c1),
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # type: ignore[no-any-return]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        grid = self.expand(code).view(-1, *self.grid)
        return self.decoder(grid)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _stages_multiple(channels: object) -> int:
    """2 ** (the number of downsampling stages); 1 for arguments the model will refuse."""
    return 2 ** len(channels) if isinstance(channels, list | tuple) and channels else 1


def _conv_bn(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
