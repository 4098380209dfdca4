"""Running a trained network over many images: batch by batch, without gradients.

Shared by the detector (reconstructions) and the digit classifier (logits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ae_anomaly.nn.images import ImageRows


def batched_outputs(
    model: nn.Module, images: ImageRows, device: torch.device, batch_size: int
) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield (batch on ``device``, the model's output for it: a tensor, or whatever the model
    returns), in eval mode."""
    model.eval()
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        # The mode is entered per batch, never across a yield: a caller that
        # stops half-way must not be left with gradients switched off.
        with torch.inference_mode():
            output = model(batch)
        yield batch, output
