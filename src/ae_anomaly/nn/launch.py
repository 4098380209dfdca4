"""Whether torchrun started this process, read from its environment without importing
torch: commands that may not need torch (``score`` with an ONNX model) ask first."""

from __future__ import annotations

import os


def launched() -> bool:
    """Whether this process was started as one of several (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """This process's rank from the environment, before the group exists (0 alone)."""
    return int(os.environ.get("RANK", "0"))
