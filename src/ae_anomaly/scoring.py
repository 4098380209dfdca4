"""Anomaly scores: per-pixel error maps and the per-image score made from them.

Higher is always more anomalous, and the score is per image (a mean over its
pixels and channels), never a batch mean.
"""

from __future__ import annotations

from typing import Literal

import torch

ScoreKind = Literal["mse", "mae"]
SCORE_KINDS: tuple[str, ...] = ("mse", "mae")


def error_map(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-pixel error of shape (N, H, W), averaged over channels."""
    diff = reconstructions - images
    if kind == "mse":
        return diff.square().mean(dim=1)
    if kind == "mae":
        return diff.abs().mean(dim=1)
    raise ValueError(f"unknown score kind {kind!r}; choose one of {SCORE_KINDS}")


def image_scores(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """One score per image: the mean of its error map."""
    return error_map(images, reconstructions, kind).flatten(1).mean(dim=1)
