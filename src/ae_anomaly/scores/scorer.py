"""The detector's score: a pixel comparison, a measure of the code, or several combined.

A score is named by one kind (``mse``) or several joined by ``+``
(``ssim+latent``). One kind gives its raw value, exactly as scoring.py
computes it. Several kinds are put on one scale first: each is z-scored with
the mean and standard deviation it has on the clean validation images (pixel
scores and knn distances after a log, since they are positive and skewed), and the z-scores
are summed. The sum therefore has no unit; 0 is a typical normal image.

The code kinds look at the model's code instead (latent_density.py):
``latent`` is its negative log-likelihood under a Gaussian mixture fitted on
the training images' codes, ``knn`` its mean distance to the nearest
training codes. They need a model with an ``encode``/``decode`` pair
(conv-dense, lenet, fc-small, fc-deep).

Everything fitted (the mixture, the reference codes, the calibration) is held
in buffers, so it is saved with the weights, moves to the model's device and
exports to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.models import has_code
from ae_anomaly.scores.code import CodeDensity, CodeNeighbours
from ae_anomaly.scores.names import KNN, LATENT, parse_score, uses_code
from ae_anomaly.scores.pixel import image_scores

# Pixel scores can be exactly 0 (a perfect reconstruction); the log needs a floor.
_LOG_FLOOR = 1e-12
# A term whose validation values hardly vary would get a huge weight.
_STD_FLOOR = 1e-6


class Scorer(nn.Module):
    """(images, reconstructions, codes) -> one score per image; see the module docstring.

    Fitted state: ``density`` (when ``latent`` is a term), ``neighbours`` (when
    ``knn`` is) and ``calibration`` (T, 2): each term's validation mean and
    standard deviation (when T > 1).
    """

    calibration: torch.Tensor
    _logged: torch.Tensor

    def __init__(
        self,
        spec: str,
        density: CodeDensity | None = None,
        neighbours: CodeNeighbours | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.terms = parse_score(spec)
        if (LATENT in self.terms) != (density is not None):
            raise ValueError("a code density is needed exactly when latent is a term")
        if (KNN in self.terms) != (neighbours is not None):
            raise ValueError("reference codes are needed exactly when knn is a term")
        self.density = density
        self.neighbours = neighbours
        if len(self.terms) > 1:
            self.register_buffer("calibration", torch.tensor([[0.0, 1.0]] * len(self.terms)))
        # Which terms are logged before z-scoring: the positive, skewed pixel
        # scores and distances. The likelihood is already a log and can be negative.
        self.register_buffer(
            "_logged", torch.tensor([t != LATENT for t in self.terms]), persistent=False
        )

    @property
    def needs_code(self) -> bool:
        return self.density is not None or self.neighbours is not None

    def term_values(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, T): each term's raw value per image."""
        columns = []
        for term in self.terms:
            if term == LATENT:
                assert self.density is not None and codes is not None
                columns.append(self.density(codes))
            elif term == KNN:
                assert self.neighbours is not None and codes is not None
                columns.append(self.neighbours(codes))
            else:
                columns.append(image_scores(images, reconstructions, term))
        return torch.stack(columns, dim=1)

    def combine(self, values: torch.Tensor) -> torch.Tensor:
        """(N, T) raw term values -> (N,) scores."""
        if len(self.terms) == 1:
            return values[:, 0]
        mean, std = self.calibration[:, 0], self.calibration[:, 1]
        return ((self._transformed(values) - mean) / std).sum(dim=1)

    def forward(
        self,
        images: torch.Tensor,
        reconstructions: torch.Tensor,
        codes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.combine(self.term_values(images, reconstructions, codes))

    def calibrate(self, validation_values: torch.Tensor) -> None:
        """Fit each term's mean and std on the (N, T) values of clean validation images."""
        if len(self.terms) == 1:
            return
        if len(validation_values) < 2:
            raise UserError("combining scores needs at least two validation images")
        transformed = self._transformed(validation_values).double()
        std = transformed.std(dim=0).clamp(min=_STD_FLOOR)
        self.calibration.copy_(torch.stack([transformed.mean(dim=0), std], dim=1))

    def _transformed(self, values: torch.Tensor) -> torch.Tensor:
        return torch.where(self._logged, values.clamp(min=_LOG_FLOOR).log(), values)


def require_code(spec: str, network: nn.Module, model_name: str) -> None:
    """A UserError when score ``spec`` needs a code that ``network`` does not have."""
    if uses_code(spec) and not has_code(network):
        raise UserError(
            f"score {spec!r} needs a model with a code vector (conv-dense, lenet, fc-small "
            f"or fc-deep); {model_name} has none: use a pixel score such as mse or ssim"
        )


def empty_scorer(spec: str, state: dict[str, torch.Tensor]) -> Scorer:
    """A Scorer shaped to receive ``state`` (a saved scorer's tensors, keys without prefix)."""
    terms = parse_score(spec)
    density = neighbours = None
    if LATENT in terms:
        means = state.get("density.means")
        if means is None or means.ndim != 2:
            raise UserError(f"the saved detector lacks the code density its score {spec!r} needs")
        density = CodeDensity(code_size=means.shape[1], components=means.shape[0])
    if KNN in terms:
        reference = state.get("neighbours.reference")
        if reference is None or reference.ndim != 2 or len(reference) == 0:
            raise UserError(
                f"the saved detector lacks the reference codes its score {spec!r} needs"
            )
        neighbours = CodeNeighbours(code_size=reference.shape[1], references=reference.shape[0])
    return Scorer(spec, density, neighbours)
