"""Runs of convolutions kept in oneDNN's blocked layout while scoring on a CPU.

PyTorch runs CPU convolutions in oneDNN, whose fastest kernels for few channels work on
a blocked layout (16 channels side by side for each pixel). Handed ordinary (N, C, H, W)
tensors, every convolution converts its input into that layout and its output back: on
conv-dense those conversions were 7.7 of the 29 ms a forward pass took per 512 digits
(oneDNN's own log, one thread). A run of convolutions and ReLUs here converts once at
each end, and its ReLUs are applied as its convolutions write. The kernels are those
oneDNN picks for plain tensors, so the outputs are a plain network's to the bit, and
within float rounding (6e-8 on conv-dense) of a channels-last one's, the layout training
uses; conv-dense's pass took 23.4 ms instead of 29 (benchmarks/speed.py has the
whole-score figures).

Elsewhere (a GPU, other dtypes, gradients on, a graph being traced, exported or
compiled) a run calls its layers one after the other, as the Sequential it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ae_anomaly.nn.sub_pixel import SubPixelConv
from ae_anomaly.nn.tracing import traced


def blocked_runs(layers: nn.Sequential) -> None:
    """Each run of convolutions and ReLUs in ``layers`` (at least one convolution) made
    one BlockedRun, in place. A sub-pixel convolution ends a run: its pixel shuffle needs
    the ordinary layout."""
    rebuilt: list[nn.Module] = []
    run: list[nn.Module] = []
    for layer in layers:
        if not _runs_blocked(layer):
            rebuilt += [*_closed(run), layer]
            run = []
            continue
        run.append(layer)
        if isinstance(layer, SubPixelConv):
            rebuilt += _closed(run)
            run = []
    rebuilt += _closed(run)
    del layers[:]
    layers.extend(rebuilt)


def _closed(run: list[nn.Module]) -> list[nn.Module]:
    return [BlockedRun(run)] if any(_convolves(layer) for layer in run) else run


class BlockedRun(nn.Module):
    """Layers that can all take oneDNN's blocked tensors, run in that layout."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        if any(isinstance(layer, SubPixelConv) for layer in layers[:-1]):
            raise ValueError("a sub-pixel convolution can only end a run: it shuffles pixels")
        self.layers = nn.ModuleList(layers)
        # (layer, whether a ReLU follows it): a folded batch-norm (Identity) is skipped
        # and a convolution's ReLU is applied as the convolution writes its output.
        self._plan: list[tuple[nn.Module, bool]] = []
        for layer in layers:
            if isinstance(layer, nn.ReLU) and self._plan and _convolves(self._plan[-1][0]):
                self._plan[-1] = (self._plan[-1][0], True)
            elif not isinstance(layer, nn.Identity):
                self._plan.append((layer, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (the device is a constant of the compiled code, not a runtime check)
        if torch.compiler.is_compiling() and _RUN_OUTSIDE_GRAPH is not None and _on_cpu(x):
            return _RUN_OUTSIDE_GRAPH(self, x)
        return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if not _blockable(x):
            for layer in self.layers:
                x = layer(x)
            return x
        blocked = x.to_mkldnn()  # a copy: the ReLUs below may work in place
        for layer, relu in self._plan:
            if isinstance(layer, SubPixelConv):  # always last (blocked_runs)
                return layer.shuffle(layer.convolve(blocked).to_dense())
            blocked = _step(layer, blocked, relu)
        return blocked.to_dense()


# BlockedRun._run as a function compiled code calls as it is (outside_compiled_graphs).
_RUN_OUTSIDE_GRAPH: Callable[[BlockedRun, torch.Tensor], torch.Tensor] | None = None


def outside_compiled_graphs() -> None:
    """Have compiled code (nn/compiled.py) call blocked runs as they are, outside its
    graph, which still compiles around them: TorchInductor's convolutions with a variable
    batch size are oneDNN's on plain tensors, reordered at every layer. Compiled scores
    ran at 1.07-1.15x ONNX Runtime's speed so, 0.89-0.99x with the runs compiled
    (benchmarks/speed.py). Imports torch's compiler (a second), so only when compiling."""
    global _RUN_OUTSIDE_GRAPH
    if _RUN_OUTSIDE_GRAPH is None:
        _RUN_OUTSIDE_GRAPH = torch.compiler.disable(BlockedRun._run)


def _step(layer: nn.Module, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """``layer`` on blocked ``x``, followed by a ReLU if ``relu``."""
    fused = _FUSED_OPS is not None and relu
    if isinstance(layer, nn.Conv2d):
        if fused:
            return _FUSED_OPS[0](  # type: ignore[index]
                x, layer.weight, layer.bias, list(layer.padding), list(layer.stride),
                list(layer.dilation), layer.groups, "relu", [], "",
            )  # fmt: skip
        x = F.conv2d(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    elif isinstance(layer, nn.ConvTranspose2d):
        if fused:
            return _FUSED_OPS[1](  # type: ignore[index]
                x, layer.weight, layer.bias, list(layer.padding), list(layer.output_padding),
                list(layer.stride), list(layer.dilation), layer.groups, "relu", [], "",
            )  # fmt: skip
        x = F.conv_transpose2d(
            x, layer.weight, layer.bias, layer.stride, cast(tuple[int, int], layer.padding),
            layer.output_padding, layer.groups, layer.dilation,
        )  # fmt: skip
    return torch.relu_(x) if relu or isinstance(layer, nn.ReLU) else x


def _fused_ops() -> tuple[Any, Any] | None:
    """oneDNN's convolution and transposed convolution with the ReLU applied as they
    write (the ops TorchInductor uses; 0.3 ms less per layer of 512 digits than a
    separate pass, the same bits). Private to PyTorch, so looked for, not assumed."""
    try:
        ops = torch.ops.mkldnn
        return ops._convolution_pointwise, ops._convolution_transpose_pointwise
    except (AttributeError, RuntimeError):
        return None


_FUSED_OPS = _fused_ops()


def _runs_blocked(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
        # string paddings ("same") and padding modes other than zeros are PyTorch's own
        return layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
    return isinstance(layer, nn.ReLU | nn.Identity | SubPixelConv)


def _convolves(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | SubPixelConv)


def _on_cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32


def _blockable(x: torch.Tensor) -> bool:
    if traced():  # first: the checks below would break a compiled graph
        return False
    return (
        _on_cpu(x)
        and x.dim() == 4
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
    )
