"""Score terms are plug-ins: a term defined outside the package, registered by name, is
fitted, combined, saved, loaded and exported to ONNX like the package's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from ae_anomaly import AutoencoderDetector
from ae_anomaly.config import build_config
from ae_anomaly.data.sources import Dataset
from ae_anomaly.errors import UserError
from ae_anomaly.scores import names
from ae_anomaly.scores.names import parse_score, register_term
from ae_anomaly.scores.term import Term, term_class, uses_code

PARAMS = {"model": "conv-dense", "epochs": 1, "batch_size": 32, "device": "cpu", "seed": 2}


class CodeNorm(Term):
    """A test term that needs the code and fits something: how far the code's length is
    from the normal codes' mean length, in units of their spread."""

    name = "code-norm"
    needs_code = True
    logged = False
    state_key = "code_norm"
    length: torch.Tensor
    spread: torch.Tensor
    fits: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("length", torch.zeros(()))
        self.register_buffer("spread", torch.ones(()))

    @classmethod
    def fitted(cls, codes: torch.Tensor | None, seed: int) -> CodeNorm:
        assert codes is not None
        cls.fits += 1
        term, lengths = cls(), codes.flatten(1).norm(dim=1)
        term.length.copy_(lengths.mean())
        term.spread.copy_(lengths.std())
        return term

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], spec: str) -> CodeNorm:
        if "length" not in state:
            raise UserError(f"the saved detector lacks the code norm its score {spec!r} needs")
        return cls()

    def score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        assert codes is not None
        return (codes.flatten(1).norm(dim=1) - self.length).abs() / self.spread


@pytest.fixture
def registered() -> Iterator[None]:
    register_term("code-norm", f"{__name__}:CodeNorm")
    yield
    del names.TERMS["code-norm"]


def test_a_registered_term_is_a_score_name_everywhere(registered: None) -> None:
    assert parse_score("ssim+code-norm") == ("ssim", "code-norm")
    assert term_class("code-norm") is CodeNorm
    assert uses_code("code-norm")
    config = build_config({}, {"score": "ssim+code-norm", "model": "conv-dense"})
    assert config.detector.score == "ssim+code-norm"
    with pytest.raises(ValueError, match="cannot register"):
        register_term("ssim", f"{__name__}:CodeNorm")


def test_a_registered_term_fits_saves_loads_and_exports(
    registered: None, mnist: Dataset, tmp_path: Path
) -> None:
    fits = CodeNorm.fits
    detector = AutoencoderDetector(**PARAMS, score="ssim+code-norm", members=2)
    detector.fit(mnist.train_images[:200])
    assert CodeNorm.fits == fits + 2  # once per member
    probe = mnist.test_images[:32]
    scores = detector.decision_function(probe)
    assert np.isfinite(scores).all()
    loaded = AutoencoderDetector.load(detector.save(tmp_path / "d"), device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(probe), scores)

    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from ae_anomaly.deploy.onnx import export_onnx

    path = export_onnx(loaded, tmp_path / "d.onnx")
    session = ort.InferenceSession(str(path))
    exported = session.run(None, {"images": probe[:, None].astype(np.float32) / 255})[0]
    np.testing.assert_allclose(exported, scores, rtol=1e-4, atol=1e-4)


def test_a_registered_term_needs_a_model_with_a_code(registered: None, mnist: Dataset) -> None:
    with pytest.raises(UserError, match="needs a model with a code"):
        AutoencoderDetector(**{**PARAMS, "model": "conv-bn"}, score="code-norm").fit(
            mnist.train_images[:50]
        )


def test_knn_in_rows_gives_the_values_of_one_pass() -> None:
    # A batch's distances are computed KNN_ROWS codes at a time, to bound the memory.
    from ae_anomaly.scores import code

    torch.manual_seed(0)
    term = code.CodeNeighbours(16, 3000)
    term.reference.normal_()
    codes = torch.randn(3 * code.KNN_ROWS + 17, 16)
    with torch.inference_mode():
        by_rows = term(codes)
        whole = term._mean_distances(codes)  # shift 0, scale 1: the codes as they are
    assert torch.equal(by_rows, whole)
