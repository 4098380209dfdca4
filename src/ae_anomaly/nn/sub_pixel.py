"""Thin transposed convolutions as sub-pixel convolutions, for scoring.

PyTorch's CPU transposed convolution is slow when it has few output channels:
conv-dense's last layer (16 to 1 channels) took 27 ms per 1,024 digits, the sub-pixel
form 11 ms. With as many outputs as inputs it is the other way round (32 to 16: 13
against 24 ms), so only layers with at most a quarter as many outputs are rewritten
(nn/fusion.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubPixelConv(nn.Module):
    """A stride-2, 4x4, padding-1 transposed convolution as a 3x3 convolution to four times
    the channels and a pixel shuffle.

    Output pixel (2m + a, 2n + b) of the transposed convolution sums input pixels
    (m + d, n + e) for d, e in {-1, 0, 1}, with kernel tap (a + 1 - 2d, b + 1 - 2e) where
    that lies inside the 4x4 kernel. Channel 4c + 2a + b of the 3x3 convolution holds
    exactly those taps, and the pixel shuffle puts it at (2m + a, 2n + b) of channel c.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        source = transposed.weight.detach()  # (in, out, 4, 4)
        c_in, c_out = source.shape[:2]
        weight = source.new_zeros(c_out, 2, 2, c_in, 3, 3)
        for a in range(2):
            for b in range(2):
                for d in (-1, 0, 1):
                    for e in (-1, 0, 1):
                        row, col = a + 1 - 2 * d, b + 1 - 2 * e
                        if 0 <= row < 4 and 0 <= col < 4:
                            weight[:, a, b, :, d + 1, e + 1] = source[:, :, row, col].T
        self.register_buffer("weight", weight.reshape(4 * c_out, c_in, 3, 3))
        bias = transposed.bias
        self.register_buffer("bias", None if bias is None else bias.detach().repeat_interleave(4))

    @staticmethod
    def replaces(layer: nn.ConvTranspose2d) -> bool:
        """Whether ``layer`` has this form, and few enough outputs for it to be faster."""
        return (
            layer.kernel_size == (4, 4)
            and layer.stride == (2, 2)
            and layer.padding == (1, 1)
            and layer.output_padding == (0, 0)
            and layer.dilation == (1, 1)
            and layer.groups == 1
            and layer.padding_mode == "zeros"
            and 4 * layer.out_channels <= layer.in_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.convolve(x))

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The 3x3 convolution to four times the channels (any layout PyTorch takes)."""
        return F.conv2d(x, self.weight, self.bias, padding=1)

    @staticmethod
    def shuffle(out: torch.Tensor) -> torch.Tensor:
        """Each channel group of four laid out as the 2x2 pixels it stands for."""
        # F.pixel_shuffle(out, 2) as a view and one copy: 0.6 against 0.9 ms per 512 digits
        n, channels, height, width = out.shape
        grid = out.view(n, channels // 4, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
        return grid.reshape(n, channels // 4, 2 * height, 2 * width)
