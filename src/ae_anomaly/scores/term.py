"""A score term: one way of turning (image, reconstruction, code) into a number per image.

A term says what it needs (``needs_code``: the model's code vector, so a model with
``encode``/``decode``), fits what it needs on the normal training data (``fitted``),
keeps everything fitted in buffers (so it is saved with the weights under
``state_key``, moves to the device and exports to ONNX with the network: ``score``
must be traceable), and is rebuilt for loading from its saved tensors
(``from_state``). ``logged`` says whether its values are put on a log scale before
several terms are z-scored and summed (scorer.py).
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.scores.names import AUTO_SCORE, TERMS, parse_score


class Term(nn.Module):
    name: ClassVar[str]
    needs_code: ClassVar[bool] = False
    # Positive, skewed values (errors, distances) are z-scored after a log.
    logged: ClassVar[bool] = True
    # Where its fitted buffers are saved: "<state_key>.<buffer>"; None: it fits nothing.
    state_key: ClassVar[str | None] = None
    # True for a term with a per-pixel error map (pixel.py), shown by reconstruct().
    has_map: ClassVar[bool] = False

    @classmethod
    def fitted(cls, codes: torch.Tensor | None, seed: int) -> Term:
        """The term fitted on normal training data (``codes``: their codes, when it needs them)."""
        return cls()

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], spec: str) -> Term:
        """An unfitted term shaped to receive ``state`` (its saved tensors, keys without
        ``state_key``), or a UserError saying what a detector with score ``spec`` lacks."""
        return cls()

    def score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        """(N,) one value per image; higher is more anomalous."""
        raise NotImplementedError

    def local_score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        """(N,) the value of each tile in patch mode, where what counts is the most anomalous
        spot rather than the average; the term's ``score`` unless it has a map."""
        return self.score(images, reconstructions, codes)

    def code_width(self) -> int | None:
        """The code width the term was fitted for; None for a term that needs no code."""
        return None


def term_class(name: str) -> type[Term]:
    """The Term class registered as ``name`` (scores/names.py)."""
    module, _, attribute = TERMS[name].partition(":")
    found = getattr(importlib.import_module(module), attribute)
    if not (isinstance(found, type) and issubclass(found, Term)):
        raise TypeError(f"score term {name!r} is registered as {TERMS[name]}, not a Term")
    return found


def term_classes(spec: str) -> list[type[Term]]:
    return [term_class(name) for name in parse_score(spec)]


def uses_code(spec: str) -> bool:
    """True when the score needs the model's code (and so a model that has one)."""
    return any(cls.needs_code for cls in term_classes(spec))


def require_code(spec: str, has_code: bool, model_name: str) -> None:
    """A UserError when score ``spec`` needs a code that model ``model_name`` does not have
    (``auto`` adapts to the model)."""
    if spec != AUTO_SCORE and uses_code(spec) and not has_code:
        raise UserError(
            f"score {spec!r} needs a model with a code vector (conv-dense, lenet, fc-small "
            f"or fc-deep); {model_name} has none: use a pixel score such as mse or ssim"
        )
