"""The registry of score terms by name, and how a score name combines them (no torch needed).

A score is one term (``mse``) or several joined by ``+`` (``ssim+latent``). Each name
points at the class that computes it (a ``scores.term.Term``), as "module:Class", so
the config can check a score name without importing torch; the class is imported only
when a detector is built. A new term is one module with its Term class plus one line
in TERMS (or a call to ``register_term`` from outside the package).
"""

from __future__ import annotations

from ae_anomaly.errors import UserError

# Compare image and reconstruction pixel by pixel (pixel.py).
PIXEL_SCORES: tuple[str, ...] = ("mse", "mae", "blur-mse", "rel-blur", "ssim")
TERMS: dict[str, str] = {
    "mse": "ae_anomaly.scores.pixel:MSE",
    "mae": "ae_anomaly.scores.pixel:MAE",
    "blur-mse": "ae_anomaly.scores.pixel:BlurMSE",
    "rel-blur": "ae_anomaly.scores.pixel:RelBlur",
    "ssim": "ae_anomaly.scores.pixel:SSIM",
    # How unusual the image's code is among the normal codes (code.py): its negative
    # log-likelihood under a Gaussian mixture, or its mean distance to the nearest
    # training codes.
    "latent": "ae_anomaly.scores.code:CodeDensity",
    "knn": "ae_anomaly.scores.code:CodeNeighbours",
}


# The default score adapts to the detector (measured on the own-images suite,
# docs/own-images.md): SSIM and the code's density for whole images (0.95 to 1.0 on
# objects and digits, where mse gave 0.75 on colour digits), SSIM alone for a model
# without a code, and mse in patch mode (textures: 0.958 against 0.917 for ssim+latent,
# whose SSIM map is noisy on smooth texture).
AUTO_SCORE = "auto"


def auto_score(patches: bool, has_code: bool) -> str:
    """The score ``auto`` stands for: see AUTO_SCORE."""
    if patches:
        return "mse"
    return "ssim+latent" if has_code else "ssim"


def score_forms() -> str:
    """How a score may be written, for help texts and error messages."""
    return (
        f"{AUTO_SCORE} (ssim+latent for whole images, mse for patches), one of "
        f"{', '.join(TERMS)}, or several joined by '+' (e.g. ssim+latent)"
    )


SCORE_FORMS = score_forms()


def register_term(name: str, target: str) -> None:
    """Make the Term class at ``target`` ("module:Class") usable as score term ``name``."""
    if name in TERMS or "+" in name or not name:
        raise ValueError(f"cannot register a score term named {name!r}")
    if target.count(":") != 1:
        raise ValueError(f"a term's target is 'module:Class', got {target!r}")
    TERMS[name] = target


def check_score(spec: str) -> None:
    """A UserError unless ``spec`` is a score: ``auto`` or what ``parse_score`` reads."""
    if spec != AUTO_SCORE:
        parse_score(spec)


def parse_score(spec: str) -> tuple[str, ...]:
    """The term names a score combines, or a UserError saying what is wrong (``auto`` is
    resolved by the detector first: auto_score)."""
    terms = tuple(spec.split("+"))
    for term in terms:
        if term not in TERMS:
            raise UserError(f"unknown score kind {term!r} in {spec!r}; write {score_forms()}")
    if len(set(terms)) != len(terms):
        raise UserError(f"score {spec!r} names a kind twice")
    return terms
