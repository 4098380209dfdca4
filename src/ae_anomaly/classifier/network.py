"""The digit classifier's network: three conv-pool stages, two hidden dense layers, logits.

Issue 6 asks for "3 convolution layers, 3 max-pooling layers, 2 fully
connected layers and a final 10-way layer". Read here as: three stages of
3x3 convolution + batch-norm + ReLU + 2x2 max-pooling (28 -> 14 -> 7 -> 3
pixels), then two *hidden* fully connected layers (ReLU, dropout), then the
10-way output layer that gives the logits: three ``nn.Linear`` in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ae_anomaly.errors import UserError

ARCH_NAME = "digit-cnn"
N_CLASSES = 10
# Three 2x2 poolings: an image needs at least 8 pixels a side to keep one.
MIN_SIDE = 8
# The network's default widths: convolution channels per stage, hidden dense units.
CHANNELS = (16, 32, 64)
HIDDEN = (128, 64)
DROPOUT = 0.3


@dataclass(kw_only=True)
class NetworkParams:
    """The network's widths and dropout (DigitClassifier checks them)."""

    channels: Sequence[int] = CHANNELS
    hidden: Sequence[int] = HIDDEN
    dropout: float = DROPOUT


class DigitClassifier(nn.Module):
    """conv-pool x3, two hidden dense layers, a 10-way output layer (logits).

    ``input_shape`` is (C, H, W); any channel count and any size of at least
    8x8 works (MNIST: 1x28x28, flattened to ``channels[2] * 3 * 3`` features).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = CHANNELS,
        hidden: Sequence[int] = HIDDEN,
        dropout: float = DROPOUT,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        c, h, w = _checked_shape(input_shape)
        channels = _positive_ints("channels", channels, 3)
        hidden = _positive_ints("hidden", hidden, 2)
        if not 0 <= dropout < 1:
            raise UserError(f"the classifier's dropout must lie in [0, 1), got {dropout!r}")
        stages: list[nn.Module] = []
        for c_in, c_out in zip((c, *channels[:2]), channels, strict=True):
            stages += [
                # No bias: the batch-norm right after it has its own shift.
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*stages)
        flat = channels[2] * (h // MIN_SIDE) * (w // MIN_SIDE)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[1], n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


def _checked_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise UserError(f"the classifier needs an input shape (C, H, W), got {shape}")
    c, h, w = shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(
            f"the classifier needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels "
            f"(three 2x2 poolings), got {h}x{w}"
        )
    return c, h, w


def _positive_ints(name: str, values: Sequence[int], count: int) -> list[int]:
    items = list(values)
    if len(items) != count or not all(isinstance(v, int) and v > 0 for v in items):
        raise UserError(f"the classifier's {name} must be {count} positive integers, got {items}")
    return items


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift every image by its own whole number of pixels in [-max_shift, max_shift], x and y.

    Vacated pixels are 0 (background). Two gathers from a zero-padded copy:
    exact (no resampling blur) and one operation for the whole batch.
    """
    n, c, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    shifts = shifts.to(images.device)
    padded = nn.functional.pad(images, (max_shift,) * 4)
    rows = torch.arange(h, device=images.device) + max_shift - shifts[:, 1:2]  # (n, h)
    cols = torch.arange(w, device=images.device) + max_shift - shifts[:, 0:1]  # (n, w)
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * max_shift))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))
