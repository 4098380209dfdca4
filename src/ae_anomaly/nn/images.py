"""What the loop and the scorer read images from: the one interface both sets share.

A float tensor (N, C, H, W) is one; data/lazy_images.py's LazyImages, which reads stored
images a batch at a time, is the other. Both answer ``len``, ``shape``, ``device`` and
``[index]`` (an int, a slice or a tensor of positions) with float tensors in [0, 1].
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class ImageRows(Protocol):
    def __len__(self) -> int: ...

    @property
    def shape(self) -> torch.Size: ...

    @property
    def device(self) -> torch.device: ...

    def __getitem__(self, index: Any) -> torch.Tensor: ...


def rows_of(images: ImageRows, positions: torch.Tensor) -> ImageRows:
    """The images at ``positions``: still unread for a lazy set, a copy for a tensor."""
    subset = getattr(images, "subset", None)
    return subset(positions) if subset is not None else images[positions]  # type: ignore[no-any-return]
