"""Exporting a fitted detector to ONNX, for scoring without Python or PyTorch.

The exported graph takes ``images``: float32 (N, C, H, W) with values in
[0, 1] (uint8 pixels divided by 255), N dynamic, and returns ``score`` (N,),
the per-image anomaly score of the detector's score kind, and
``reconstruction`` (N, C, H, W). The threshold, score kind and input shape
are stored in the model's metadata (``metadata_props``); an image is an
anomaly when its score is above the threshold. An ensemble (``members`` > 1)
is one graph too: its score and reconstruction are the means of its members'.

Needs the optional packages of the ``onnx`` extra (``pip install
'ae-anomaly[onnx]'``). torch's TorchScript-based exporter is used: it needs
no further packages and handles every model here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ae_anomaly import __version__
from ae_anomaly.deploy.onnx_detector import INPUT_NAME, SCORE_NAME
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_bytes
from ae_anomaly.nn.ensemble import (
    MemberOutputs,
    mean_reconstruction,
    mean_score,
    networks_of,
    scorers_of,
)
from ae_anomaly.nn.patches import PatchGrid

# Opset 17 is read by every onnxruntime since 1.11 and covers every op used here.
OPSET = 17
OUTPUT_NAMES = (SCORE_NAME, "reconstruction")
EXPORT_FORMATS = ("onnx",)


class ScoringModel(nn.Module):
    """The autoencoder followed by the per-image score: images -> (score, reconstruction).

    The scorer's fitted code density, reference codes and calibration travel
    as constants, so combined and code scores (latent, knn) export too. The knn
    term holds an (N, M) distance matrix per call (M <= 20,000 reference
    codes: about 80 KB per image), so score large sets in batches. An
    ensemble's score and reconstruction are the means of its members', as in
    the detector. In patch mode (``grid``) the graph cuts the images into their tiles,
    and gives each image its worst tile's score and the tiles' reconstructions, averaged.
    """

    def __init__(self, model: nn.Module, scorer: nn.Module, grid: PatchGrid | None) -> None:
        super().__init__()
        needs_code = scorers_of(scorer)[0].needs_code
        self.members = MemberOutputs(networks_of(model), with_code=needs_code)
        self.scorer = scorer
        self.grid = grid

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = images if self.grid is None else self.grid.tiles(images)
        outputs = self.members(inputs)
        scores = mean_score(scorers_of(self.scorer), inputs, outputs)
        reconstructions = mean_reconstruction(outputs)
        if self.grid is None:
            return scores, reconstructions
        return self.grid.image_scores(scores), self.grid.assemble(reconstructions)


def require_onnx() -> None:
    """Raise a UserError naming the extra to install when onnx is missing."""
    if importlib.util.find_spec("onnx") is None:
        raise UserError(
            "ONNX export needs the onnx package; install it with: pip install 'ae-anomaly[onnx]'"
        )


def onnx_bytes(detector: AutoencoderDetector) -> bytes:
    """The detector as a serialized ONNX model (see the module docstring)."""
    require_onnx()
    import onnx

    network = copy.deepcopy(detector._fitted_model()).cpu()
    # The saved layout (channels_last) is a CPU speed trick; the graph wants plain NCHW.
    network = network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    scorer = copy.deepcopy(detector._fitted_scorer()).cpu()
    wrapper = ScoringModel(network, scorer, detector._grid()).eval()
    example = torch.rand(2, *detector.input_shape_)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the
        # torch.export one, which needs onnxscript; it still works and is stable here.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The blur kernels and channel counts are constants on purpose (scoring.py).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # Cropping a padded image (nn/sizes.py) is a slice the exporter cannot fold.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            Path(scratch) / "model.onnx",
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=OPSET,
        )
        model = onnx.load(Path(scratch) / "model.onnx")
    metadata = {
        "ae_anomaly_version": __version__,
        "model": detector.model,
        "score": detector.score_,
        "members": str(detector.members),
        "threshold": repr(float(detector.threshold_)),
        "threshold_rule": detector.threshold,
        "input_shape": json.dumps(list(detector.input_shape_)),
        "patch_size": json.dumps(detector.patch_size_),
        "pixel_range": "[0, 1]; uint8 pixels are divided by 255",
    }
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def export_onnx(detector: AutoencoderDetector, path: Path | str) -> Path:
    """Write the detector as ONNX to ``path`` (atomically); return the path."""
    path = Path(path)
    data = onnx_bytes(detector)
    try:
        write_bytes(path, data)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
