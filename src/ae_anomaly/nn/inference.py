"""Running a trained network over many images: batch by batch, without gradients.

Shared by the detector (reconstructions) and the digit classifier (logits).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ae_anomaly.nn.heap import keep_freed_memory
from ae_anomaly.nn.images import ImageRows

# The most bytes of network input a pass without gradients takes at once: the
# activations grow with it (64x64 colour images at 1,024 a pass took 0.9 GB more than
# at 128).
PASS_BYTES = 6 * 2**20


def images_per_pass(shape: Sequence[int], most: int) -> int:
    """How many float32 images of (N, C, H, W) ``shape`` one pass takes: ``most``, or
    fewer to stay within PASS_BYTES."""
    image_bytes = 4 * math.prod(int(d) for d in shape[1:])
    return max(1, min(most, PASS_BYTES // image_bytes))


def stacked(parts: Iterator[torch.Tensor], rows: int) -> torch.Tensor:
    """The batches' rows in one tensor of ``rows`` rows, made before the pass: growing a
    list of small tensors between each batch's large, short-lived ones fragments the
    heap, and memory then grew with the number of images (5 MB a batch, measured)."""
    out: torch.Tensor | None = None
    start = 0
    for part in parts:
        if out is None:
            out = part.new_empty((rows, *part.shape[1:]))
        out[start : start + len(part)] = part
        start += len(part)
    assert out is not None and start == rows
    return out


def batched_outputs(
    model: nn.Module, images: ImageRows, device: torch.device, batch_size: int
) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield (batch on ``device``, the model's output for it: a tensor, or whatever the model
    returns), in eval mode."""
    model.eval()
    keep_freed_memory()  # each batch reuses the last one's freed activations
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        # The mode is entered per batch, never across a yield: a caller that
        # stops half-way must not be left with gradients switched off.
        with torch.inference_mode():
            output = model(batch)
        yield batch, output
