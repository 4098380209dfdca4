"""Writing files so that a crash never leaves a half-written one behind.

Every artefact is written to a temporary name in the same folder and then
renamed over the final name; a rename within one file system is atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and then rename ``tmp_path`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates files readable by the owner only; give the file the
        # permissions an ordinary open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: _discard(tmp.write_bytes(data)))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: _discard(tmp.write_text(text, encoding="utf-8")))


def _discard(_: object) -> None:
    """Drop a return value (byte counts) that ``atomic_write``'s callback must not return."""


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))
