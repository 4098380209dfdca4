"""Networks rewritten for scoring: the same function in fewer, faster operations.

Scoring runs a trained network in eval mode, where it no longer learns, so rewrites
that training cannot use become free (measured on conv-dense, one CPU thread, MNIST,
benchmarks/speed.py):

- **Batch-norm folded into the layer before it.** In eval mode batch-norm is a fixed
  scale and shift per channel, which the convolution or linear layer before it can
  apply through its own weights and bias: one pass over the activations less per layer
  (conv-dense's forward pass went from 93 to 70 ms per 1,024 digits).
- **Thin transposed convolutions as sub-pixel convolutions** (nn/sub_pixel.py): a
  stride-2, 4x4 transposed convolution equals a 3x3 convolution giving four times the
  channels, laid out as the 2x2 pixels they stand for (27 -> 11 ms per 1,024 digits
  for conv-dense's 16 -> 1 layer).
- **Runs of convolutions in oneDNN's blocked layout** (nn/blocked.py): converted once
  per run instead of twice per convolution, ReLUs in place (29 -> 23.4 ms per 512).

The results equal the original network's to float rounding (4.8e-7 at most on digits).
The network itself is left as it is: it is what is trained, saved and exported.
"""

from __future__ import annotations

import copy
import weakref

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ae_anomaly.nn.blocked import blocked_runs
from ae_anomaly.nn.sub_pixel import SubPixelConv

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
    # oneDNN's ReLU turns NaN into 0: a network with a NaN weight must give NaN scores,
    # which scoring refuses, not plausible ones, so it keeps PyTorch's own ReLU.
    finite = all(t.isfinite().all() for t in fast.state_dict().values() if t.is_floating_point())
    for module in list(fast.modules()):
        if isinstance(module, nn.Sequential):
            _fold_batch_norms(module)
            _sub_pixel(module)
            if finite:
                blocked_runs(module)
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
