"""The base of every autoencoder: built for one input shape (C, H, W), it says which
sizes it takes and refuses the others in a sentence."""

from __future__ import annotations

from collections.abc import Sequence

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

    @classmethod
    def size_multiple(cls, **kwargs: object) -> int:
        """What image height and width must be divisible by (nn/sizes.py pads the others)."""
        return 1

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


def positive_ints(model: str, argument: str, values: Sequence[int]) -> list[int]:
    values = list(values) if isinstance(values, (list, tuple)) else []
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise UserError(
            f"{model} {argument} must be a non-empty list of positive integers, got {values!r}"
        )
    return values
