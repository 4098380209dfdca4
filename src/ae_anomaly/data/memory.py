"""Will it fit? The memory a dataset needs, checked before any image is read.

A folder of large images is read into one uint8 array, and training holds the training
images again as float32 twice (the whole set, then the training share of it), and
scoring the test images once more as float32. A run that cannot fit must be refused in
one sentence before it starts, not killed by the kernel half-way with no message.
"""

from __future__ import annotations

import os
from pathlib import Path

from ae_anomaly.errors import UserError

# Bytes per pixel value: the uint8 array every image is read into, and the float32
# copies that fitting (two) and scoring (one) make of them.
READ_BYTES = 1
TRAIN_BYTES = READ_BYTES + 2 * 4
TEST_BYTES = READ_BYTES + 4
MEMINFO = Path("/proc/meminfo")


def available_bytes() -> int | None:
    """Memory the system can give now without swapping (Linux: MemAvailable), or the free
    physical memory elsewhere; None where neither is known."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def dataset_bytes(n_train: int, n_test: int, values_per_image: int) -> int:
    """The memory a run on these images needs at least (see the module docstring)."""
    return values_per_image * (n_train * TRAIN_BYTES + n_test * TEST_BYTES)


def check_fits(needed: int, what: str, advice: str) -> None:
    """A UserError when ``needed`` bytes are more than the memory available now."""
    available = available_bytes()
    if available is not None and needed > available:
        raise UserError(
            f"{what} would need about {_gib(needed)} of memory, more than the {_gib(available)} "
            f"available; {advice}"
        )


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"
