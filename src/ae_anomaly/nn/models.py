"""The autoencoder networks: plain ``nn.Module``s, looked up by name.

Every model maps images of shape (N, C, H, W) with values in [0, 1] to a
reconstruction of the same shape and range, and is built for one input shape
(C, H, W): convolutional models adapt to any channel count and to sizes their
pooling divides, fully connected ones take their size from the data, and a
shape a model cannot take is refused with a sentence saying why. Training,
scoring and saving live elsewhere; this module only says what the networks are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ae_anomaly.errors import UserError

Shape = tuple[int, int, int]


class Autoencoder(nn.Module):
    """Base of every model: remembers the input shape (C, H, W) it was built for."""

    name = "autoencoder"

    def __init__(self, input_shape: Sequence[int]) -> None:
        super().__init__()
        channels, height, width = (int(d) for d in input_shape)
        self.input_shape: Shape = (channels, height, width)

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raise UserError if images of ``shape`` (C, H, W) are not what the model was built for."""
        if tuple(shape) != self.input_shape:
            raise UserError(
                f"{self.name} was built for images of shape {self.input_shape}, got {tuple(shape)}"
            )

    def _require_divisible(self, factor: int) -> None:
        _, height, width = self.input_shape
        if height % factor or width % factor:
            raise UserError(
                f"{self.name} needs image height and width divisible by {factor}, "
                f"got {height}x{width}"
            )


# -- fully connected -----------------------------------------------------------------------


class DenseAutoencoder(Autoencoder):
    """Flatten, ReLU layers down to the code and mirrored back up, sigmoid output."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__(input_shape)
        widths = [math.prod(self.input_shape), *_positive_ints(self.name, "hidden", hidden)]
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


# -- convolutional --------------------------------------------------------------------------


class ConvBNAutoencoder(Autoencoder):
    """Conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid output.

    Each encoder stage halves the image side, so H and W must be divisible by
    ``2 ** len(channels)``.
    """

    name = "conv-bn"

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32)) -> None:
        super().__init__(input_shape)
        channels = _positive_ints(self.name, "channels", channels)
        self._require_divisible(2 ** len(channels))
        widths = [self.in_channels, *channels]
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


class ConvStrided(Autoencoder):
    """28x28xC -> 14x14x16 -> 7x7x32 by stride-2 convolutions, transposed convolutions back."""

    name = "conv-strided"

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32)) -> None:
        super().__init__(input_shape)
        channels = _positive_ints(self.name, "channels", channels)
        self._require_divisible(2 ** len(channels))
        widths = [self.in_channels, *channels]
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

    def __init__(self, input_shape: Sequence[int]) -> None:
        super().__init__(input_shape)
        self._require_divisible(4)
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
    """

    name = "conv-dense"

    def __init__(
        self, input_shape: Sequence[int], channels: Sequence[int] = (16, 32), code: int = 16
    ) -> None:
        super().__init__(input_shape)
        widths = _positive_ints(self.name, "channels", channels)
        if len(widths) != 2 or isinstance(code, bool) or not isinstance(code, int) or code < 1:
            raise UserError(
                f"{self.name} takes two channel widths and a positive code size, "
                f"got channels {widths} and code {code!r}"
            )
        c1, c2 = widths
        self._require_divisible(4)
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


def _conv_bn(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _positive_ints(model: str, argument: str, values: Sequence[int]) -> list[int]:
    values = list(values) if isinstance(values, (list, tuple)) else []
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise UserError(
            f"{model} {argument} must be a non-empty list of positive integers, got {values!r}"
        )
    return values


# -- the registry ---------------------------------------------------------------------------


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
        "conv + ReLU + batch-norm + max-pool encoder, upsample + conv decoder, sigmoid (default)",
    ),
    "conv-keras": ModelEntry(
        ConvKeras, "Keras tutorial: conv32-pool-conv64-pool | conv64-up-conv32-up-conv1, sigmoid"
    ),
    "conv-dense": ModelEntry(
        ConvDense, "stride-2 convs to 7x7x32, dense 16-unit code, mirrored decoder, sigmoid"
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


def build_model(name: str, input_shape: Sequence[int], **kwargs: object) -> Autoencoder:
    """Build model ``name`` for images of ``input_shape`` = (C, H, W), or say why not."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(model_names())}")
    if "input_shape" in kwargs:
        raise UserError(f"bad arguments for model '{name}': input_shape comes from the data")
    try:
        return MODELS[name].build(tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise UserError(f"bad arguments for model '{name}': {exc}") from exc


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
