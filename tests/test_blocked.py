"""Runs of convolutions in oneDNN's blocked layout (nn/blocked.py): the same numbers as
the layers run one by one, and the ordinary path wherever the layout cannot be used."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

from ae_anomaly.nn import blocked
from ae_anomaly.nn.blocked import _FUSED_OPS, BlockedRun, blocked_runs
from ae_anomaly.nn.fusion import for_scoring
from ae_anomaly.nn.models import build_model
from ae_anomaly.nn.sub_pixel import SubPixelConv

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN"
)


def _layers() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 24, 3, padding=2, dilation=2, bias=False),
        nn.Identity(),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(24, 16, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
        SubPixelConv(nn.ConvTranspose2d(16, 2, 4, stride=2, padding=1)),
        nn.Sigmoid(),
        nn.Conv2d(2, 8, 3, padding=1, padding_mode="reflect"),  # PyTorch's own padding
        nn.ReLU(),
    ).eval()


def test_runs_end_at_layers_that_need_the_ordinary_layout() -> None:
    layers = _layers()
    blocked_runs(layers)
    kinds = [type(layer) for layer in layers]
    assert kinds == [BlockedRun, nn.Sigmoid, nn.Conv2d, nn.ReLU]
    assert isinstance(layers[0].layers[-1], SubPixelConv)  # a sub-pixel convolution ends it
    assert len(layers[0].layers) == 8


def test_a_run_gives_the_numbers_of_its_layers_one_by_one() -> None:
    plain, fast = _layers(), _layers()
    blocked_runs(fast)
    images = torch.rand(5, 3, 20, 18)
    with torch.inference_mode():
        expected, got = plain(images), fast(images)
    assert got.shape == expected.shape == (5, 8, 40, 36)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_a_run_never_changes_its_input() -> None:
    run = BlockedRun([nn.ReLU(inplace=True), nn.Conv2d(3, 16, 3, padding=1)])
    images = torch.randn(2, 3, 8, 8)  # negative values the ReLU would zero
    kept = images.clone()
    with torch.inference_mode():
        run(images)
    assert torch.equal(images, kept)  # the ReLU worked on the run's own copy


def test_a_sub_pixel_convolution_only_ends_a_run() -> None:
    sub_pixel = SubPixelConv(nn.ConvTranspose2d(16, 2, 4, stride=2, padding=1))
    with pytest.raises(ValueError, match="only end a run"):
        BlockedRun([sub_pixel, nn.ReLU()])


def test_conv_dense_scores_the_same_to_the_bit() -> None:
    torch.manual_seed(0)
    model = build_model("conv-dense", (1, 28, 28)).eval()
    fast = for_scoring(model)
    assert sum(isinstance(m, BlockedRun) for m in fast.modules()) == 2  # encoder, decoder
    if _FUSED_OPS is None:
        pytest.skip("this PyTorch has no fused oneDNN convolutions")
    images = torch.rand(64, 1, 28, 28)
    with torch.inference_mode():
        got = fast(images)
    unblocked = for_scoring(model)
    for run in [m for m in unblocked.modules() if isinstance(m, BlockedRun)]:
        run.forward = _one_by_one(run)  # type: ignore[method-assign]
    with torch.inference_mode():
        assert torch.equal(got, unblocked(images))


def test_a_channels_last_network_scores_the_same_to_float_rounding() -> None:
    # The layout training leaves networks in: oneDNN picks other kernels for it.
    torch.manual_seed(0)
    model = build_model("conv-dense", (1, 28, 28)).eval().to(memory_format=torch.channels_last)
    images = torch.rand(64, 1, 28, 28)
    with torch.inference_mode():
        assert torch.allclose(for_scoring(model)(images), model(images), rtol=0, atol=1e-6)


def _one_by_one(run: BlockedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        for layer in run.layers:
            x = layer(x)
        return x

    return forward


def test_with_gradients_on_a_run_calls_its_layers_and_gradients_flow() -> None:
    fast = _layers()
    blocked_runs(fast)
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    fast(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_other_dtypes_take_the_ordinary_path() -> None:
    plain, fast = _layers().double(), _layers().double()
    blocked_runs(fast)
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(fast(images), plain(images))


def test_compiling_traces_the_ordinary_path_in_one_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    # A check the compiler cannot trace (oneDNN's availability, say) would split the
    # compiled network in pieces and slow it down.
    monkeypatch.setattr(blocked, "_RUN_OUTSIDE_GRAPH", None)
    fast = for_scoring(build_model("conv-dense", (1, 28, 28)))
    with torch.inference_mode():
        explained = torch._dynamo.explain(fast)(torch.rand(4, 1, 28, 28))
    assert explained.graph_count == 1 and explained.graph_break_count == 0


def test_compiled_scoring_calls_the_runs_as_they_are_around_its_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blocked, "_RUN_OUTSIDE_GRAPH", None)  # restored afterwards
    blocked.outside_compiled_graphs()
    fast = for_scoring(build_model("conv-dense", (1, 28, 28)))
    images = torch.rand(4, 1, 28, 28)
    checks: list[bool] = []
    real = blocked._blockable

    def counted(x: torch.Tensor) -> bool:
        checks.append(real(x))
        return checks[-1]

    monkeypatch.setattr(blocked, "_blockable", counted)
    with torch.inference_mode():
        expected = fast(images)
        compiled = torch.compile(fast, dynamic=True)
        compiled(images)
        checks.clear()
        got = compiled(images)
    # Each call runs both runs (the encoder's, the decoder's) in oneDNN's layout; a run
    # traced into the graph would not be called at all.
    assert checks == [True, True]
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_importing_the_scoring_code_does_not_load_the_compiler() -> None:
    # torch's compiler takes a second to import: only compiling may load it.
    code = (
        "import sys, ae_anomaly.detector.estimator, ae_anomaly.nn.compiled;"
        "print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_a_network_with_a_nan_weight_keeps_pytorchs_relu_and_gives_nan() -> None:
    # oneDNN's ReLU maps NaN to 0, which would hide the broken weight behind plausible
    # outputs; scoring refuses NaN scores, so the NaN must come through.
    model = build_model("conv-dense", (1, 28, 28)).eval()
    with torch.no_grad():
        model.encoder[0].weight.view(-1)[0] = float("nan")
    fast = for_scoring(model)
    assert not any(isinstance(m, BlockedRun) for m in fast.modules())
    with torch.inference_mode():
        assert fast(torch.rand(2, 1, 28, 28)).isnan().any()
