"""Anomaly scores: per-pixel error maps and the per-image score made from them.

Higher is always more anomalous, and the score is per image (over its pixels
and channels), never a batch mean. The kinds:

- ``mse`` / ``mae``: mean squared / absolute pixel error.
- ``blur-mse``: both images blurred by a Gaussian (sigma 1 pixel) first, then
  the mean squared error. A stroke reconstructed a pixel off costs little,
  a missing or extra stroke still costs: measured on one-class Fashion-MNIST
  (BENCHMARKS.md), mean AUROC 92.5 against 88.8 for mse.
- ``rel-blur``: the blurred squared error divided by the blurred images'
  energy, ``|Gx - Gr|^2 / (|Gx|^2 + |Gr|^2)``, a number in [0, 1]
  whatever the ink. Absolute errors grow with the ink, so a thin digit "1"
  scores low even when it is the anomaly; this ratio does not (one-class
  MNIST: 97.9 against 95.2 for mse). It ignores how much there is, so it is
  the wrong choice where the amount of content is the cue (Fashion-MNIST).
- ``ssim``: one minus the mean structural similarity (SSIM) of image and
  reconstruction: local means, contrasts and correlations in a Gaussian
  window (sigma 1.5, 11x11). It weighs lost structure, not brightness, so a
  narrow-code model that blurs clean digits a little still flags noise
  (noise AUROC 1.000 where mse got 0.966, docs/rotation.md).

Each kind is also a score term (term.py) at the end of this module; the terms that
look at the model's code are in code.py, and several terms are combined in scorer.py.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from ae_anomaly.nn.tracing import traced
from ae_anomaly.scores.names import PIXEL_SCORES
from ae_anomaly.scores.term import Term

BLUR_SIGMA = 1.0  # pixels; 0.5 and 2 were worse on one-class MNIST (BENCHMARKS.md)
# Patch mode scores a tile by the peak of its error map smoothed by this Gaussian: a
# defect a few pixels wide hardly moves the mean over a tile, and a single pixel's error
# is noise. On textures-64 (docs/own-images.md) sigma 4 found stains at 0.89, against
# 0.82 for the tile mean and 0.69 for the unsmoothed peak; 2 and 8 were worse.
PEAK_SIGMA = 4.0
# Keeps the ratio finite for two black images.
_EPS = 1e-6
# The SSIM paper's window (Wang et al. 2004): Gaussian, sigma 1.5, 11x11; and
# its stabilising constants for a dynamic range of 1.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2
# The bytes of one image tensor that a pixel score's passes handle at a time (ssim on 512
# digits, one thread: 200 KB, 63 digits, took 7.4 ms; 100 KB 8.7, 400 KB 11.3, all at
# once 15.0), and at least how many images (the Python work per chunk must stay small
# next to its arithmetic).
CACHE_BYTES = 200_000
MIN_CHUNK = 8
# The widest image blurred by matrix products (gaussian_blur), measured on one CPU thread:
# 4x faster than the convolution at 512 pixels, 1.3x at 1,024, 0.7x at 2,048.
MATRIX_BLUR_SIDE = 1024


def error_map(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-pixel error of shape (N, H, W), averaged over channels.

    For the blurred kinds it is the squared difference of the blurred images,
    the map whose mean ``blur-mse`` is.
    """
    if kind == "ssim":
        return 1.0 - ssim_map(images, reconstructions).mean(dim=1)
    if kind in ("blur-mse", "rel-blur"):
        diff = gaussian_blur(reconstructions) - gaussian_blur(images)
        return diff.square().mean(dim=1)
    diff = reconstructions - images
    if kind == "mse":
        return diff.square().mean(dim=1)
    if kind == "mae":
        return diff.abs().mean(dim=1)
    raise ValueError(f"unknown pixel score {kind!r}; choose one of {PIXEL_SCORES}")


def image_scores(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """One score per image: the mean of its error map (``rel-blur``: the energy ratio).

    Computed a few images at a time: ssim makes some twenty passes over image-sized
    tensors, and while those stay in the CPU's cache it runs twice as fast (CACHE_BYTES).
    An ONNX export or a compile traces one pass over the whole batch (compiled, the
    passes are fused)."""
    step = max(MIN_CHUNK, CACHE_BYTES // (images[0].numel() * images.element_size()))
    if traced() or len(images) <= step:
        return _image_scores(images, reconstructions, kind)
    parts = [
        _image_scores(images[i : i + step], reconstructions[i : i + step], kind)
        for i in range(0, len(images), step)
    ]
    return torch.cat(parts)


def _image_scores(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "rel-blur":
        x, r = gaussian_blur(images).flatten(1), gaussian_blur(reconstructions).flatten(1)
        return (r - x).square().sum(1) / (x.square().sum(1) + r.square().sum(1) + _EPS)
    return error_map(images, reconstructions, kind).flatten(1).mean(dim=1)


def peak_scores(images: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """One score per image: the highest value of its error map smoothed by PEAK_SIGMA."""
    smoothed = gaussian_blur(error_map(images, reconstructions, kind)[:, None], PEAK_SIGMA)
    return smoothed.flatten(1).amax(dim=1)


def ssim_map(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of (N, C, H, W) images in [0, 1], same shape out, 1 where they agree."""

    def window(t: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(t, SSIM_SIGMA, SSIM_RADIUS)

    x, r = images, reconstructions
    mu_x, mu_r = window(x), window(r)
    var_x = window(x * x) - mu_x.square()
    var_r = window(r * r) - mu_r.square()
    cov = window(x * r) - mu_x * mu_r
    luminance = (2 * mu_x * mu_r + _SSIM_C1) / (mu_x.square() + mu_r.square() + _SSIM_C1)
    structure = (2 * cov + _SSIM_C2) / (var_x + var_r + _SSIM_C2)
    return luminance * structure


def gaussian_blur(
    images: torch.Tensor, sigma: float = BLUR_SIGMA, radius: int | None = None
) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, zero padding, same size out.

    The kernel reaches ``radius`` pixels each way, 2 sigma unless given. Each direction
    is one matrix product with a banded matrix (the kernel on its diagonals; the zeros
    past the edges are the padding): on the CPU 4-45x faster than a one-channel
    convolution per direction for sides of 28 to 512, with the same sums. Past
    MATRIX_BLUR_SIDE the band is mostly zeros and the convolution is faster.
    """
    radius = math.ceil(2 * sigma) if radius is None else radius
    # The kernel and sizes are plain Python numbers, so that an ONNX export sees
    # them as constants (a traced kernel has no known shape).
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if max(height, width) <= MATRIX_BLUR_SIDE:
        # The band is symmetric: x @ B blurs along rows, and B @ x along columns.
        return _band(sigma, radius, height, images) @ (images @ _band(sigma, radius, width, images))
    kernel = _kernel(sigma, radius, images.dtype, images.device)
    channels = int(images.shape[1])
    # One kernel per channel (groups=channels): channels are blurred independently.
    row = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    col = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.conv2d(images, row, padding=(0, radius), groups=channels)
    return F.conv2d(out, col, padding=(radius, 0), groups=channels)


def _kernel(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised Gaussian kernel, 2 radius + 1 taps."""
    weights = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(-radius, radius + 1)]
    return torch.tensor(weights, dtype=dtype, device=device) / sum(weights)


def _band(sigma: float, radius: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """The (size, size) matrix with the kernel along its diagonals: entry (i, j) is the
    weight pixel i gives pixel j, zero where they are further apart than the kernel. Made
    once per size and device (an ONNX export or a compile traces it as a constant)."""
    if traced():
        return _banded(sigma, radius, size, like.dtype, like.device)
    return _cached_band(sigma, radius, size, like.dtype, like.device)


def _banded(
    sigma: float, radius: int, size: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    kernel = _kernel(sigma, radius, dtype, device)
    positions = torch.arange(size, device=device)
    offset = positions[None, :] - positions[:, None] + radius
    inside = (offset >= 0) & (offset < len(kernel))
    return torch.where(inside, kernel[offset.clamp(0, len(kernel) - 1)], 0.0)


@functools.lru_cache(maxsize=64)
def _cached_band(
    sigma: float, radius: int, size: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    # A plain tensor even when first asked for under inference_mode, so that any mode
    # may use it.
    with torch.inference_mode(False):
        return _banded(sigma, radius, size, dtype, device)


# -- the pixel kinds as score terms ----------------------------------------------------------


class PixelTerm(Term):
    """A comparison of image and reconstruction, pixel by pixel: it fits nothing."""

    kind: ClassVar[str]
    has_map = True

    def score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        return image_scores(images, reconstructions, self.kind)

    def local_score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        return peak_scores(images, reconstructions, self.kind)


class MSE(PixelTerm):
    name = kind = "mse"


class MAE(PixelTerm):
    name = kind = "mae"


class BlurMSE(PixelTerm):
    name = kind = "blur-mse"


class RelBlur(PixelTerm):
    name = kind = "rel-blur"


class SSIM(PixelTerm):
    name = kind = "ssim"
