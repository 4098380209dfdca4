"""Networks rewritten for scoring: the same function in fewer, faster operations.

Scoring runs a trained network in eval mode, where it no longer learns, so two rewrites
that training cannot use become free (measured on conv-dense, one CPU thread, MNIST,
benchmarks/speed.py):

- **Batch-norm folded into the layer before it.** In eval mode batch-norm is a fixed
  scale and shift per channel, which the convolution or linear layer before it can
  apply through its own weights and bias: one pass over the activations less per layer
  (conv-dense's forward pass went from 93 to 70 ms per 1,024 digits).
- **Thin transposed convolutions as one convolution per output phase.** A stride-2,
  4x4 transposed convolution gives each of the four pixels of a 2x2 output block from
  a 2x2 window of the input with its own four taps: one 2x2 convolution giving four
  times the channels computes all four phases, which are then interleaved (PhaseConv).
  PyTorch's CPU transposed convolution is slow when it has few output channels:
  conv-dense's last layer (16 to 1 channels) took 12.7 ms per 512 digits, this form
  2.8 (a 3x3 sub-pixel convolution, used before, 4.4). With as many outputs as inputs
  the transposed convolution is faster (32 to 16: 7.7 against 9.6 ms), so only layers
  with at most a quarter as many outputs are rewritten.

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
            _phase_convolutions(module)
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


def _phase_convolutions(layers: nn.Sequential) -> None:
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ConvTranspose2d) and PhaseConv.replaces(layer):
            layers[i] = PhaseConv(layer)


class PhaseConv(nn.Module):
    """A stride-2, 4x4, padding-1 transposed convolution as one 2x2 convolution giving
    four times the channels, one group per output phase, interleaved.

    Output pixel 2m + a of the transposed convolution (along each axis) sums two input
    pixels with two of the kernel's four taps: m - 1 and m with taps 3 and 1 when a = 0,
    m and m + 1 with taps 2 and 0 when a = 1. A 2x2 convolution of the input padded by
    one pixel gives, at position t, input pixels t - 1 and t: phase 0 is its output
    from t = 0, phase 1 from t = 1. Channel group 2a + b holds phase (a, b)'s taps; the
    copies put each group's pixels at (2m + a, 2n + b). Each output pixel costs its four
    multiply-adds per input channel, as in the transposed convolution.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    # The kernel taps of phase 0 and phase 1, in the order of the 2x2 kernel.
    TAPS = ((3, 1), (2, 0))

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        source = transposed.weight.detach()  # (in, out, 4, 4)
        groups = [
            source[:, :, list(self.TAPS[a])][:, :, :, list(self.TAPS[b])].transpose(0, 1)
            for a in range(2)
            for b in range(2)
        ]
        self.register_buffer("weight", torch.cat(groups).contiguous())  # (4 out, in, 2, 2)
        bias = transposed.bias
        self.register_buffer("bias", None if bias is None else bias.detach().repeat(4))

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
        phases = F.conv2d(x, self.weight, self.bias, padding=1)  # (N, 4 out, H + 1, W + 1)
        n, _, height, width = x.shape
        channels = phases.shape[1] // 4
        out = phases.new_empty(n, channels, height, 2, width, 2)
        for a in range(2):
            for b in range(2):
                group = phases[:, (2 * a + b) * channels : (2 * a + b + 1) * channels]
                out[:, :, :, a, :, b] = group[:, :, a : a + height, b : b + width]
        return out.view(n, channels, 2 * height, 2 * width)
