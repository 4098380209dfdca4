"""Synthetic anomalies: Gaussian pixel noise and rotation, batched on tensors.

Rotation resamples the image, and resampling smooths it; a smoother digit is
easier to reconstruct, so a naive rotation makes anomalies look *more*
normal. ``resample_rotate`` is therefore applied to every digit, clean ones
with angle 0: upsample, rotate, downsample with the same filter, so that the
angle is the only difference left between clean and rotated digits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Images per chunk when resampling: bounds memory at high resolution
# (4096 x 112 x 112 floats is about 200 MB).
_CHUNK = 4096


def resample_rotate(images: torch.Tensor, angles_deg: torch.Tensor, factor: int) -> torch.Tensor:
    """Rotate each image by its angle (degrees, counter-clockwise) through an upsampled copy.

    images: (N, C, H, W) in [0, 1]; angles_deg: (N,). Angle 0 still goes through
    the same upsample/downsample pair, which is the point.
    """
    if images.shape[0] != angles_deg.shape[0]:
        raise ValueError("one angle per image is needed")
    chunks = [
        _resample_chunk(images[i : i + _CHUNK], angles_deg[i : i + _CHUNK], factor)
        for i in range(0, images.shape[0], _CHUNK)
    ]
    return torch.cat(chunks) if chunks else images.clone()


def _resample_chunk(images: torch.Tensor, angles_deg: torch.Tensor, factor: int) -> torch.Tensor:
    large = F.interpolate(images, scale_factor=factor, mode="bilinear", align_corners=False)
    turned = angles_deg != 0
    if bool(turned.any()):
        # Rotation by 0 is the identity (grid_sample would reproduce the pixels
        # to within 1e-6), so only turned images pay for the sampling grid.
        large[turned] = _rotate(large[turned], angles_deg[turned].to(images.dtype))
    # Averaging factor x factor blocks is the area filter that undoes the upsampling.
    return F.avg_pool2d(large, kernel_size=factor).clamp_(0.0, 1.0)


def _rotate(images: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(_rotation_matrices(angles_deg), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation_matrices(angles_deg: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine matrices; affine_grid maps output to input coordinates."""
    radians = angles_deg * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zeros = torch.zeros_like(cos)
    # With y pointing down, this matrix turns the content counter-clockwise
    # on screen for positive angles (checked in the tests).
    return torch.stack(
        [torch.stack([cos, -sin, zeros], dim=1), torch.stack([sin, cos, zeros], dim=1)], dim=1
    )


def add_gaussian_noise(
    images: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add N(0, std_i^2) noise to every pixel of image i, then clip to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + noise.to(images.device) * std.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
