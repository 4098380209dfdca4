"""Synthetic anomalies: Gaussian pixel noise and rotation, batched on tensors.

Rotation resamples the image, and resampling smooths it; a smoother digit is
easier to reconstruct, so a naive rotation makes anomalies look *more*
normal. ``resample`` is therefore applied to every digit, clean ones too:
upsample, move by an affine map, area-downsample. Rotating alone still leaves
rotated digits about 6% smoother than upright ones (squared pixel gradients):
off-grid edges are spread over more pixels once the area filter samples
them. Every digit therefore also moves by a random sub-pixel shift, which
puts upright and rotated edges equally off the grid (measured: 1.00-1.01),
so that the angle is the only difference left between clean and rotated digits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Images per chunk when resampling: bounds memory at high resolution
# (4096 x 112 x 112 floats, factor 4, is about 200 MB).
_CHUNK = 4096
# Each digit moves by up to this many pixels along each axis (see the docstring).
MAX_SUBPIXEL_SHIFT = 0.5


def random_shifts(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) shifts in pixels, uniform in +-MAX_SUBPIXEL_SHIFT along x and y."""
    return (torch.rand(n, 2, generator=generator) * 2 - 1) * MAX_SUBPIXEL_SHIFT


def resample(
    images: torch.Tensor,
    angles_deg: torch.Tensor,
    factor: int,
    shifts_px: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate each image by its angle (degrees, counter-clockwise) and shift it (pixels, x and y).

    images: (N, C, H, W) in [0, 1]; angles_deg: (N,); shifts_px: (N, 2) or None
    for no shift. The image goes through an upsampled copy (``factor`` per side)
    and back, so an image with angle and shift 0 is still filtered like the rest.
    """
    n = images.shape[0]
    # Angles and shifts follow the images to their device (restoration training
    # resamples batches on the GPU).
    shifts = torch.zeros(n, 2) if shifts_px is None else shifts_px
    shifts, angles_deg = shifts.to(images.device), angles_deg.to(images.device)
    if angles_deg.shape != (n,) or shifts.shape != (n, 2):
        raise ValueError("one angle and one (x, y) shift per image are needed")
    chunks = [
        _resample_chunk(
            images[i : i + _CHUNK], angles_deg[i : i + _CHUNK], shifts[i : i + _CHUNK], factor
        )
        for i in range(0, n, _CHUNK)
    ]
    return torch.cat(chunks) if chunks else images.clone()


def _resample_chunk(
    images: torch.Tensor, angles_deg: torch.Tensor, shifts_px: torch.Tensor, factor: int
) -> torch.Tensor:
    large = F.interpolate(images, scale_factor=factor, mode="bilinear", align_corners=False)
    moved = (angles_deg != 0) | (shifts_px != 0).any(dim=1)
    if bool(moved.any()):
        # The identity map would reproduce the pixels (to within 1e-6), so only
        # moved images pay for the sampling.
        theta = _affine_matrices(angles_deg[moved], shifts_px[moved], images.shape[-2:])
        large[moved] = _warp(large[moved], theta.to(images.dtype))
    # Averaging factor x factor blocks is the area filter that undoes the upsampling.
    return F.avg_pool2d(large, kernel_size=factor).clamp_(0.0, 1.0)


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of each image at ``theta`` applied to its pixel grid."""
    height, width = images.shape[-2:]
    # The same grid affine_grid builds (align_corners=False), by broadcasting:
    # several times faster on CPU than its batched matrix product.
    ys = (torch.arange(height, dtype=images.dtype, device=images.device) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=images.dtype, device=images.device) * 2 + 1) / width - 1
    a, b, c = (theta[:, 0, k].view(-1, 1, 1) for k in range(3))
    d, e, f = (theta[:, 1, k].view(-1, 1, 1) for k in range(3))
    x, y = xs.view(1, 1, -1), ys.view(1, -1, 1)
    grid = torch.stack((a * x + b * y + c, d * x + e * y + f), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine_matrices(
    angles_deg: torch.Tensor, shifts_px: torch.Tensor, size: torch.Size
) -> torch.Tensor:
    """(N, 2, 3) maps from output to input coordinates (normalised to [-1, 1])."""
    radians = angles_deg * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    height, width = size
    # A shift of s pixels is 2 s / side in normalised coordinates; sampling the
    # input at p - t moves the content by +t.
    tx, ty = -shifts_px[:, 0] * 2 / width, -shifts_px[:, 1] * 2 / height
    # With y pointing down, this matrix turns the content counter-clockwise
    # on screen for positive angles (checked in the tests).
    return torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )


def add_gaussian_noise(
    images: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add N(0, std_i^2) noise to every pixel of image i, then clip to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + noise.to(images.device) * std.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
