"""Threshold rules: how normal scores become the cut-off above which an image is an anomaly.

A rule is written as a short string, the same in YAML, on the command line
and in Python: ``percentile:95``, ``mean+2std`` or ``fixed:0.02``. A rule is
fitted on scores of *normal* images the detector did not train on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ae_anomaly.errors import UserError

THRESHOLD_FORMS = "percentile:Q (0 < Q < 100), mean+Kstd (K >= 0) or fixed:V"


@dataclass(frozen=True)
class Percentile:
    """The q-th percentile of normal scores: about (100 - q)% false positives expected."""

    q: float

    def fit(self, normal_scores: np.ndarray) -> float:
        return float(np.percentile(_checked(normal_scores), self.q))


@dataclass(frozen=True)
class MeanPlusStd:
    """Mean of normal scores plus k standard deviations."""

    k: float

    def fit(self, normal_scores: np.ndarray) -> float:
        scores = _checked(normal_scores)
        return float(scores.mean() + self.k * scores.std())


@dataclass(frozen=True)
class Fixed:
    """A value chosen by the user; fitting ignores the scores."""

    value: float

    def fit(self, normal_scores: np.ndarray) -> float:
        return self.value


ThresholdRule = Percentile | MeanPlusStd | Fixed

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_PATTERNS: list[tuple[re.Pattern[str], type[Percentile] | type[MeanPlusStd] | type[Fixed]]] = [
    (re.compile(rf"percentile:{_NUMBER}"), Percentile),
    (re.compile(rf"mean\+{_NUMBER}std"), MeanPlusStd),
    # Combined scores (scorer.py) are z-score sums, so a fixed cut-off may be negative.
    (re.compile(rf"fixed:(-?{_NUMBER[1:-1]})"), Fixed),
]


def parse_threshold(spec: str) -> ThresholdRule:
    """Turn ``percentile:95`` / ``mean+2std`` / ``fixed:0.02`` into a rule, or say what is wrong."""
    text = spec.strip().replace(" ", "").lower()
    for pattern, rule in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            value = float(match.group(1))
            if not math.isfinite(value):
                raise UserError(f"threshold '{spec}': the number must be finite")
            if rule is Percentile and not 0 < value < 100:
                raise UserError(f"threshold '{spec}': the percentile must lie between 0 and 100")
            return rule(value)
    raise UserError(f"threshold '{spec}' is not understood; write {THRESHOLD_FORMS}")


def _checked(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise UserError("cannot fit a threshold on an empty set of normal scores")
    if not np.isfinite(scores).all():
        raise UserError("cannot fit a threshold: some normal scores are NaN or infinite")
    return scores
