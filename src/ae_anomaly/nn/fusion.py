"""Networks rewritten for scoring: the same function in fewer, faster operations.

Scoring runs a trained network in eval mode, where it no longer learns, so two rewrites
that training cannot use become free (measured on conv-dense, one CPU thread, MNIST,
benchmarks/speed.py):

- **Batch-norm folded into the layer before it.** In eval mode batch-norm is a fixed
  scale and shift per channel, which the convolution or linear layer before it can
  apply through its own weights and bias: one pass over the activations less per layer
  (conv-dense's forward pass went from 93 to 70 ms per 1,024 digits).
- **Thin transposed convolutions as sub-pixel convolutions.** A stride-2, 4x4
  transposed convolution equals a 3x3 convolution giving four times the channels,
  whose channels are then laid out as the 2x2 pixels they stand for (pixel shuffle).
  PyTorch's CPU transposed convolution is slow when it has few output channels:
  conv-dense's last layer (16 to 1 channels) took 27 ms per 1,024 digits, the sub-pixel
  form 11 ms. With as many outputs as inputs it is the other way round (32 to 16: 13
  against 24 ms), so only layers with at most a quarter as many outputs are rewritten.

The results equal the original network's to float rounding (4.8e-7 at most on digits).
The network itself is left as it is: it is what is trained, saved and exported.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# network -> (the state it was copied in, its copy for scoring)
_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[object, nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def scoring_copy(network: nn.Module) -> nn.Module:
    """``for_scoring(network)``, made once, and again whenever the network's tensors were
    changed or moved since (each tensor's storage and version counter say so)."""
    tensors = list(network.state_dict().values())
    if any(t.is_inference() for t in tensors):
        # Made under inference_mode, these keep no version counter: no change could be
        # seen, so the copy is made afresh each time.
        return for_scoring(network)
    state = tuple((t.data_ptr(), t._version) for t in tensors)
    known = _COPIES.get(network)
    if known is None or known[0] != state:
        known = (state, for_scoring(network))
        _COPIES[network] = known
    return known[1]


def for_scoring(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in eval mode that computes the same outputs faster."""
    fast = copy.deepcopy(network).eval()
    for module in list(fast.modules()):
        if isinstance(module, nn.Sequential):
            _fold_batch_norms(module)
            _sub_pixel(module)
    return fast


def _fold_batch_norms(layers: nn.Sequential) -> None:
    """Each batch-norm right after a convolution or linear layer, folded into it."""
    for i in range(len(layers) - 1):
        layer, norm = layers[i], layers[i + 1]
        if not isinstance(layer, _FOLDABLE) or not isinstance(norm, _BATCH_NORMS):
            continue
        if norm.running_mean is None or norm.running_var is None:
            continue  # normalises by each batch's own statistics: nothing fixed to fold
        if isinstance(layer, nn.Linear):
            layers[i] = fuse_linear_bn_eval(layer, norm)
        else:
            layers[i] = fuse_conv_bn_eval(
                layer, norm, transpose=isinstance(layer, nn.ConvTranspose2d)
            )
        layers[i + 1] = nn.Identity()


def _sub_pixel(layers: nn.Sequential) -> None:
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ConvTranspose2d) and SubPixelConv.replaces(layer):
            layers[i] = SubPixelConv(layer)


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
        out = F.conv2d(x, self.weight, self.bias, padding=1)
        # F.pixel_shuffle(out, 2) as a view and one copy: 0.6 against 0.9 ms per 512 digits
        n, channels, height, width = out.shape
        grid = out.view(n, channels // 4, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
        return grid.reshape(n, channels // 4, 2 * height, 2 * width)
