"""How the service runs: its limits, its batching and its token, with their defaults.

No FastAPI or torch here: the command line reads these defaults for its flags before
anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """The settings of one service (``token`` None: no token is asked for)."""

    detector_dir: Path
    token: str | None = None
    max_upload_mb: float = 20.0
    max_files: int = 64
    max_batch: int = 64
    max_wait_ms: float = 5.0
    device: str = "auto"
    compile: bool = False  # score through torch.compile (compiled before serving)
