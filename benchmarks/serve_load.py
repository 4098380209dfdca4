"""Load test of `ae-anomaly serve`, on the loopback address only, bounded in count and time.

    python benchmarks/serve_load.py DETECTOR_DIR [--requests 1000] [--clients 100]

Starts the real server on free local ports, sends ``--requests`` single-image requests
from ``--clients`` concurrent clients, and prints errors, p50 / p99 latency and
throughput; then, at ``--compare-clients``, the same with micro-batching on and off
(``--max-batch 1``), and their throughput ratio, measured in the same run.

The clients share the machine with the server, so they are kept lean: one process,
raw HTTP/1.1 on keep-alive connections, each request's bytes built once in advance
(an HTTP library would spend more CPU per request than the server does).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import free_port

TIMEOUT_S = 120.0


def image_bytes(seed: int, shape: tuple[int, int, int]) -> bytes:
    """A random PNG of the detector's (C, H, W)."""
    channels, height, width = shape
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def request_bytes(port: int, name: str, png: bytes) -> bytes:
    """One complete POST /v1/score with a multipart ``file`` field."""
    boundary = "ae-anomaly-load-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of one response (its body read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
    )
    await reader.readexactly(length)
    return status


async def load(port: int, payloads: list[bytes], requests: int, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    todo = iter(range(requests))

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in todo:
                started = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                try:
                    if await read_response(reader) != 200:
                        errors += 1
                except (asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), TIMEOUT_S)
    seconds = time.perf_counter() - started
    ordered = np.sort(latencies)
    return {
        "requests": float(len(latencies)),
        "errors": float(errors),
        "p50_ms": round(float(np.percentile(ordered, 50) * 1000), 1),
        "p99_ms": round(float(np.percentile(ordered, 99) * 1000), 1),
        "per_second": round(len(latencies) / seconds, 1),
    }


def start(detector: Path, port: int, flags: list[str]) -> subprocess.Popen[bytes]:
    import httpx

    command = [sys.executable, "-m", "ae_anomaly", "serve", "--detector", str(detector)]
    command += ["--port", str(port), "--device", "cpu", *flags]
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


def measure(detector: Path, flags: list[str], requests: int, clients: int) -> dict[str, float]:
    import httpx

    port = free_port()
    server = start(detector, port, flags)
    try:
        shape = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["input"]
        size = (shape["channels"], shape["height"], shape["width"])
        payloads = [request_bytes(port, f"{i}.png", image_bytes(i, size)) for i in range(32)]
        asyncio.run(load(port, payloads, min(requests, 64), min(clients, 8)))  # warm up
        before = batch_totals(port)
        result = asyncio.run(load(port, payloads, requests, clients))
        after = batch_totals(port)
        result["images_per_pass"] = round((after[0] - before[0]) / (after[1] - before[1]), 1)
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def batch_totals(port: int) -> tuple[float, float]:
    """(images, passes) so far, from the server's /metrics."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
    return float(values["ae_anomaly_batch_images_sum"]), float(
        values["ae_anomaly_batch_images_count"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("detector", type=Path)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--compare-clients", type=int, default=64)
    parser.add_argument("--compare-requests", type=int, default=3000)
    parser.add_argument("--server-flag", action="append", default=[], help="passed to serve")
    args = parser.parse_args()
    extra = args.server_flag
    full = measure(args.detector, extra, args.requests, args.clients)
    print(f"batching on, {args.clients} clients: {full}", flush=True)
    count = args.compare_requests
    on = measure(args.detector, extra, count, args.compare_clients)
    print(f"batching on, {args.compare_clients} clients: {on}", flush=True)
    off = measure(args.detector, [*extra, "--max-batch", "1"], count, args.compare_clients)
    print(f"batching off, {args.compare_clients} clients: {off}")
    print(f"throughput ratio on / off: {on['per_second'] / off['per_second']:.2f}")


if __name__ == "__main__":
    main()
