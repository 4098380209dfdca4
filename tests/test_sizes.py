"""Images of any size (nn/sizes.py): a network that cannot take a size directly is padded
to one it takes, and its output cropped back; sizes it takes are left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.sources import Dataset
from ae_anomaly.nn.models import build_model, has_code
from ae_anomaly.nn.sizes import CodedSizeAdapter, SizeAdapter, build_network, network_shape


@pytest.mark.parametrize(
    ("model", "args", "shape", "built_for"),
    [
        ("conv-bn", {}, (1, 28, 28), (1, 28, 28)),
        ("conv-bn", {}, (3, 25, 30), (3, 28, 32)),
        ("conv-bn", {"channels": [8, 16, 32]}, (1, 28, 28), (1, 32, 32)),
        ("conv-dense", {}, (1, 100, 60), (1, 100, 60)),
        ("conv-dense", {}, (3, 9, 13), (3, 12, 16)),
        ("fc-small", {}, (1, 25, 25), (1, 25, 25)),
    ],
)
def test_networks_are_built_for_the_next_size_they_take(
    model: str, args: dict[str, object], shape: tuple[int, ...], built_for: tuple[int, ...]
) -> None:
    assert network_shape(model, shape, **args) == built_for
    network = build_network(model, shape, **args).eval()
    assert isinstance(network, SizeAdapter) == (built_for != shape)
    x = torch.rand(2, *shape)
    assert network(x).shape == x.shape


def test_a_size_the_network_takes_gives_exactly_build_model() -> None:
    torch.manual_seed(0)
    plain = build_model("conv-dense", (1, 28, 28))
    torch.manual_seed(0)
    same = build_network("conv-dense", (1, 28, 28))
    assert type(same) is type(plain)
    assert plain.state_dict().keys() == same.state_dict().keys()


def test_padding_repeats_the_edges_and_cropping_returns_the_original_pixels() -> None:
    adapter = SizeAdapter(torch.nn.Identity(), (5, 6), (8, 8))
    x = torch.rand(1, 1, 5, 6)
    padded = adapter.pad(x)
    assert padded.shape == (1, 1, 8, 8)
    assert torch.equal(adapter.crop(padded), x)
    assert torch.equal(padded[:, :, 0, 1:7], x[:, :, 0])  # the top row repeated above it
    assert torch.equal(adapter(x), x)


def test_a_coded_network_keeps_its_code() -> None:
    network = build_network("conv-dense", (1, 25, 25)).eval()
    assert isinstance(network, CodedSizeAdapter) and has_code(network)
    x = torch.rand(3, 1, 25, 25)
    code = network.encode(x)
    assert code.shape == (3, 32)
    assert torch.allclose(network.decode(code), network(x))
    assert not has_code(build_network("conv-bn", (1, 25, 25)))


def test_a_detector_on_odd_sized_colour_images_fits_saves_loads_and_exports(
    mnist: Dataset, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    grey = mnist.train_images[:160, 1:26, 2:27]  # 25 x 25
    images = np.stack([grey, grey // 2, (grey * rng.random()).astype(np.uint8)], axis=1)
    detector = AutoencoderDetector(
        model="conv-dense", score="ssim+latent", epochs=1, batch_size=16, device="cpu"
    ).fit(images)
    scores = detector.decision_function(images[:20])
    reconstructions, maps = detector.reconstruct(images[:4])
    assert reconstructions.shape == (4, 3, 25, 25) and maps.shape == (4, 25, 25)
    loaded = AutoencoderDetector.load(detector.save(tmp_path / "d"), device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(images[:20]), scores)

    ort = pytest.importorskip("onnxruntime")
    from ae_anomaly.deploy.onnx import export_onnx

    session = ort.InferenceSession(str(export_onnx(loaded, tmp_path / "d.onnx")))
    exported = session.run(None, {"images": images[:20].astype(np.float32) / 255})[0]
    np.testing.assert_allclose(exported, scores, rtol=1e-4, atol=1e-4)
