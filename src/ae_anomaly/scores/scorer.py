"""The detector's score: one term, or several put on one scale and summed.

A score is named by one term (``mse``) or several joined by ``+`` (``ssim+latent``);
the terms are the classes registered in names.py (term.py says what a term is). One
term gives its raw value. Several are put on one scale first: each is z-scored with
the mean and standard deviation it has on the clean validation images (after a log
for the positive, skewed ones: pixel errors, distances), and the z-scores are summed.
The sum therefore has no unit; 0 is a typical normal image.

A ``local`` scorer scores the tiles of patch mode (nn/patches.py): its terms give their
``local_score``, for a pixel term the peak of the smoothed error map, not its mean.

Everything fitted (code density, reference codes, the calibration) is held in
buffers, so it is saved with the weights, moves to the model's device and exports to
ONNX. A fitted term's buffers are saved under its ``state_key`` ("density.means"),
the names detectors have been saved with since format 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.scores.term import Term, term_classes

# Pixel scores can be exactly 0 (a perfect reconstruction); the log needs a floor.
_LOG_FLOOR = 1e-12
# A term whose validation values hardly vary would get a huge weight.
_STD_FLOOR = 1e-6


class Scorer(nn.Module):
    """(images, reconstructions, codes) -> one score per image; see the module docstring.

    Fitted state: the fitted terms' buffers and ``calibration`` (T, 2): each term's
    validation mean and standard deviation (when T > 1).
    """

    calibration: torch.Tensor
    _logged: torch.Tensor

    def __init__(self, spec: str, terms: list[Term], local: bool = False) -> None:
        super().__init__()
        self.local = local
        if [type(t) for t in terms] != term_classes(spec):
            raise ValueError(f"the terms given are not those of score {spec!r}")
        self.spec = spec
        # A plain list: a fitted term is registered once, under its state key, below.
        self.terms: list[Term] = list(terms)
        for term in terms:
            if term.state_key is not None:
                self.add_module(term.state_key, term)
        if len(terms) > 1:
            self.register_buffer("calibration", torch.tensor([[0.0, 1.0]] * len(terms)))
        self.register_buffer("_logged", torch.tensor([t.logged for t in terms]), persistent=False)

    @classmethod
    def fitted(
        cls, spec: str, codes: torch.Tensor | None, seed: int, local: bool = False
    ) -> Scorer:
        """The score ``spec`` with each term fitted on the normal training ``codes``
        (uncalibrated: see ``calibrate``)."""
        return cls(spec, [term.fitted(codes, seed) for term in term_classes(spec)], local)

    @classmethod
    def from_state(cls, spec: str, state: dict[str, torch.Tensor], local: bool = False) -> Scorer:
        """A Scorer shaped to receive ``state`` (a saved scorer's tensors, keys without prefix)."""
        terms = []
        for term in term_classes(spec):
            prefix = f"{term.state_key}."
            own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            terms.append(term.from_state(own, spec))
        return cls(spec, terms, local)

    @property
    def needs_code(self) -> bool:
        return any(term.needs_code for term in self.terms)

    def term_values(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, T): each term's raw value per image (per tile, for a local scorer)."""
        values = [
            (t.local_score if self.local else t.score)(images, reconstructions, codes)
            for t in self.terms
        ]
        return torch.stack(values, dim=1)

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
