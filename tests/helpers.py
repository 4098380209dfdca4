"""Helpers shared by the tests that run the ``ae-anomaly`` command."""

from __future__ import annotations

import os
from pathlib import Path

from ae_anomaly.data.sources import ENV_CACHE, ENV_DATA

# A port nothing listens on: a download attempt fails at once instead of waiting.
CLOSED_PORT = "http://127.0.0.1:9"


def cli_env(data_root: Path, cache: Path) -> dict[str, str]:
    """The environment for a command: the given data, an empty cache, and no network."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (ENV_DATA, ENV_CACHE) and not k.lower().endswith("_proxy")
    }
    env[ENV_DATA] = str(data_root)
    env[ENV_CACHE] = str(cache)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = CLOSED_PORT
    env["COLUMNS"] = "200"
    # One thread: on a shared, busy CPU two OpenMP threads spin-wait on each other and
    # make training many times slower (and its timing erratic).
    env["OMP_NUM_THREADS"] = "1"
    return env
