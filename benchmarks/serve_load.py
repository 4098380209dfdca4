"""Load test of `ae-anomaly serve`, on the loopback address only, bounded in count and time.

    python benchmarks/serve_load.py DETECTOR_DIR [--requests 1000] [--clients 100]

Starts the real server twice on free local ports (micro-batching on, then off with
--max-batch 1), sends ``--requests`` single-image requests from ``--clients``
concurrent clients to each, and prints errors, p50 / p99 latency and throughput, and
the throughput ratio of batching on to off (measured in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_bytes(seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((28, 28)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def start(detector: Path, port: int, max_batch: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ae_anomaly", "serve", "--detector", str(detector)]
    command += ["--port", str(port), "--max-batch", str(max_batch), "--device", "cpu"]
    server = subprocess.Popen(command, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready within 120 s")


async def load(port: int, requests: int, clients: int) -> dict[str, float]:
    images = [image_bytes(i) for i in range(32)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            files = {"file": (f"{i}.png", images[i % len(images)], "image/png")}
            started = time.perf_counter()
            try:
                response = await http.post(f"http://127.0.0.1:{port}/v1/score", files=files)
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    ordered = np.sort(latencies)
    return {
        "requests": float(requests),
        "errors": float(errors),
        "p50_ms": float(np.percentile(ordered, 50) * 1000),
        "p99_ms": float(np.percentile(ordered, 99) * 1000),
        "per_second": requests / seconds,
    }


def measure(detector: Path, max_batch: int, requests: int, clients: int) -> dict[str, float]:
    port = free_port()
    server = start(detector, port, max_batch)
    try:
        return asyncio.run(load(port, requests, clients))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("detector", type=Path)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--compare-clients", type=int, default=64)
    args = parser.parse_args()
    full = measure(args.detector, 64, args.requests, args.clients)
    print(f"batching on, {args.clients} clients: {full}", flush=True)
    on = measure(args.detector, 64, args.requests, args.compare_clients)
    off = measure(args.detector, 1, args.requests, args.compare_clients)
    print(f"batching on, {args.compare_clients} clients: {on}")
    print(f"batching off, {args.compare_clients} clients: {off}")
    print(f"throughput ratio on / off: {on['per_second'] / off['per_second']:.2f}")


if __name__ == "__main__":
    main()
