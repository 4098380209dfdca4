"""Helpers shared by the tests that run the ``ae-anomaly`` command."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ae_anomaly.data.sources import ENV_CACHE, ENV_DATA

# The command as a user's shell runs it (same as the ``ae-anomaly`` script).
CLI = [sys.executable, "-m", "ae_anomaly.cli"]
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


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def message(self) -> str:
        """The error sentence without click's "Error: " prefix."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert lines, "nothing on stderr"
        return lines[-1].removeprefix("Error: ")


def run_subprocess(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> Outcome:
    """Run ``ae-anomaly ARGS`` in a real process."""
    started = time.perf_counter()
    proc = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` (relative path -> content, mtime); folders as b"<dir>"."""
    if not folder.exists():
        return {}
    state: dict[str, tuple[bytes, int]] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        content = b"<dir>" if path.is_dir() else path.read_bytes()
        state[rel] = (content, path.stat().st_mtime_ns)
    return state


def rewrite_weights(folder: Path, state: dict[str, Any]) -> None:
    """Replace a saved model's weights and make its JSON name their digest, as a forger who
    knows the format would: the checks behind the digest must hold on their own."""
    from safetensors.torch import save_file

    save_file(state, str(folder / "weights.safetensors"))
    digest = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    for meta_path in folder.glob("*.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["weights_sha256"] = digest
        meta_path.write_text(json.dumps(meta), encoding="utf-8")


def evaluate_corrupted(
    scores: Any,
    labels: Any,
    kinds: Any,
    noise_std: Any,
    angle: Any,
    threshold: float,
    angle_bands: Any = (0, 10, 20, 30),
    kind_order: Any = None,
) -> dict[str, Any]:
    """``evaluate`` with the corruptions scenario's groups (noise levels, angle bands)."""
    import numpy as np

    from ae_anomaly.report.metrics import evaluate, groups_by_band, groups_by_value

    kinds = np.asarray(kinds).astype(str).reshape(-1)
    groups = {
        "by_noise_std": groups_by_value(np.asarray(noise_std).reshape(-1), kinds == "noise"),
        "by_angle_band": groups_by_band(
            np.asarray(angle, dtype=np.float64).reshape(-1), angle_bands, kinds == "rotation"
        ),
    }
    return evaluate(scores, labels, kinds, threshold, kind_order=kind_order, groups=groups)


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    detector_dir: Path, *flags: str, env: dict[str, str] | None = None, token: str = ""
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real ``ae-anomaly serve`` on a free local port, ready: (process, base URL).

    ``token``: the one the server was given (in ``env``), to ask for readiness with.

    Stopped with SIGTERM on the way out, as a service manager stops it.
    """
    import httpx

    port = free_port()
    command = [*CLI, "serve", "--detector", str(detector_dir), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--device", "cpu", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                if httpx.get(f"{base}/readyz", headers=headers, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            stderr = server.stderr.read().decode() if server.poll() is not None else ""
            raise AssertionError(f"the server did not become ready: {stderr[-2000:]}")
        yield server, base
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
