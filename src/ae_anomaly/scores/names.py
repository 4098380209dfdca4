"""The names of the score kinds and how a score name combines them (no torch needed).

Kept apart from scoring.py and scorer.py so that the config can check a
score name without importing torch.
"""

from __future__ import annotations

from ae_anomaly.errors import UserError

# Compare image and reconstruction pixel by pixel (scoring.py).
PIXEL_SCORES: tuple[str, ...] = ("mse", "mae", "blur-mse", "rel-blur", "ssim")
# How unusual the image's code is among the normal codes (latent_density.py):
# its negative log-likelihood under a Gaussian mixture, or its mean distance to
# the nearest training codes.
LATENT = "latent"
KNN = "knn"
CODE_SCORES: tuple[str, ...] = (LATENT, KNN)
BASE_SCORES: tuple[str, ...] = (*PIXEL_SCORES, *CODE_SCORES)
SCORE_FORMS = f"one of {', '.join(BASE_SCORES)}, or several joined by '+' (e.g. ssim+latent)"


def parse_score(spec: str) -> tuple[str, ...]:
    """The kinds a score name combines, or a UserError saying what is wrong."""
    terms = tuple(spec.split("+"))
    for term in terms:
        if term not in BASE_SCORES:
            raise UserError(f"unknown score kind {term!r} in {spec!r}; write {SCORE_FORMS}")
    if len(set(terms)) != len(terms):
        raise UserError(f"score {spec!r} names a kind twice")
    return terms


def uses_code(spec: str) -> bool:
    """True when the score needs the model's code (and so a model that has one)."""
    return any(term in CODE_SCORES for term in parse_score(spec))
