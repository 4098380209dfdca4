"""Scoring with an exported ONNX model, in ONNX Runtime, without PyTorch.

``ae-anomaly score --detector model.onnx`` scores with the model ``ae-anomaly export``
wrote: the graph that is deployed, and a command that never imports torch. On this
project's machine importing torch alone takes 1.3 s, so scoring one image with a saved
detector folder took 1.70 s, and with its ONNX model 0.42 s (BENCHMARKS.md, Speed). The
rows are those of the saved detector, the scores equal to float rounding (ONNX
Runtime's kernels sum in their own order: within 3e-5 for the one-class recipe).

The model's metadata (deploy/onnx.py) gives the threshold, the input shape and the score
kind. Error maps need the saved detector folder: the exported graph gives scores and
reconstructions, not the score's per-pixel map.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ae_anomaly.data.arrays import UINT8_SCALE, check_float_images
from ae_anomaly.errors import UserError

# Images per run: the knn term holds an (N, reference codes) distance matrix per run.
RUN_BATCH = 256
# The exported graph's input and score (deploy/onnx.py, which imports torch, uses these).
INPUT_NAME = "images"
SCORE_NAME = "score"
NO_ERROR_MAPS = "--error-maps needs the saved detector folder; an ONNX model gives scores only"


class OnnxDetector:
    """An exported detector, scored by ONNX Runtime: ``threshold_``, ``input_shape_``,
    ``score_`` and ``decision_function`` as the AutoencoderDetector it was exported from."""

    def __init__(self, session: Any, path: Path) -> None:
        self._session = session
        self.path = path
        metadata = session.get_modelmeta().custom_metadata_map
        not_ours = f"{path} was not exported by ae-anomaly export"
        try:
            self.threshold_ = float(metadata["threshold"])
            self.input_shape_ = tuple(int(d) for d in json.loads(metadata["input_shape"]))
            self.score_ = str(metadata["score"])
        except (KeyError, ValueError, TypeError):
            raise UserError(
                f"{not_ours}: its metadata has no threshold, input shape and score"
            ) from None
        if not math.isfinite(self.threshold_):
            raise UserError(f"{not_ours}: its threshold is {self.threshold_}, not a number")
        inputs, outputs = session.get_inputs(), [o.name for o in session.get_outputs()]
        if (
            [i.name for i in inputs] != [INPUT_NAME]
            or inputs[0].type != "tensor(float)"
            or SCORE_NAME not in outputs
            or len(self.input_shape_) != 3
            or min(self.input_shape_) < 1
        ):
            raise UserError(f"{not_ours}: its inputs, outputs or input shape are not ours")

    @classmethod
    def load(cls, path: Path | str) -> OnnxDetector:
        """The model at ``path``, on the CPU; one sentence for a missing or broken file."""
        path = Path(path)
        if importlib.util.find_spec("onnxruntime") is None:
            raise UserError(
                "scoring an ONNX model needs onnxruntime; install it with: "
                "pip install 'ae-anomaly[onnx]'"
            )
        if not path.is_file():
            raise UserError(f"no ONNX model at {path}")
        try:
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for any bad file
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"{path} is not a readable ONNX model ({reason})") from None
        return cls(session, path)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores of ``X`` ((N, C, H, W) or (N, H, W), uint8 or float in [0, 1]),
        higher = more anomalous."""
        images = np.asarray(X)
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape_:
            raise UserError(
                f"the detector was fitted on images of shape {self.input_shape_}, "
                f"got {tuple(images.shape[1:])}"
            )
        if images.dtype != np.uint8:
            check_float_images(images)
        parts = [self._run(images[s : s + RUN_BATCH]) for s in range(0, len(images), RUN_BATCH)]
        scores = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
        broken = np.flatnonzero(~np.isfinite(scores))
        if broken.size:  # NaN is above no threshold: it would read as "normal"
            raise UserError(
                f"the model gave {broken.size} score(s) that are not finite numbers (the "
                f"first for image {broken[0]}): its weights are broken, so it can give no "
                "verdict"
            )
        return scores

    def _run(self, images: np.ndarray) -> np.ndarray:
        try:
            return self._session.run([SCORE_NAME], {INPUT_NAME: _floats(images)})[0]  # type: ignore[no-any-return]
        except Exception as exc:  # onnxruntime's own classes: a graph that cannot run
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"{self.path} could not score the images ({reason})") from None

    def reconstruct(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        raise UserError(NO_ERROR_MAPS)

    def error_map_kind(self) -> str:
        return self.score_


def _floats(images: np.ndarray) -> np.ndarray:
    """The model's input: float32 in [0, 1], uint8 pixels divided by 255 as PyTorch does."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / UINT8_SCALE
    return np.ascontiguousarray(images, dtype=np.float32)
