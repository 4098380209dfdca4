"""The HTTP service: every endpoint and every bad input through FastAPI's test client, the
micro-batcher on its own, and one real uvicorn server answering over a socket."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.sources import Dataset
from tests.helpers import running_server

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ae_anomaly.serve.app import create_app  # noqa: E402
from ae_anomaly.serve.batching import MicroBatcher  # noqa: E402
from ae_anomaly.serve.settings import ServeSettings  # noqa: E402


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tiny_detector_dir: Path) -> Any:
    with TestClient(create_app(ServeSettings(tiny_detector_dir, device="cpu"))) as test_client:
        yield test_client


def test_health_readiness_and_the_model(client: Any, tiny_detector_dir: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    model = client.get("/v1/model").json()
    assert model["model"] == "conv-bn" and model["score"] == "mse"
    assert model["input"] == {"channels": 1, "height": 28, "width": 28}
    assert len(model["weights_sha256"]) == 64
    assert model["limits"] == {"max_files": 64, "max_upload_mb": 20.0}
    assert client.get("/docs").status_code == 200


def test_multipart_and_json_give_the_detector_scores_in_order(
    client: Any, tiny_detector_dir: Path, mnist: Dataset
) -> None:
    detector = AutoencoderDetector.load(tiny_detector_dir, device="cpu")
    digits = mnist.test_images[:3]
    expected = detector.decision_function(digits)
    files = [("file", (f"d{i}.png", png(d), "image/png")) for i, d in enumerate(digits)]
    results = client.post("/v1/score", files=files).json()["results"]
    assert [r["name"] for r in results] == ["d0.png", "d1.png", "d2.png"]
    assert [r["score"] for r in results] == pytest.approx(expected.tolist(), rel=1e-5)
    assert all(r["is_anomaly"] == (r["score"] > r["threshold"]) for r in results)
    encoded = [base64.b64encode(png(d)).decode() for d in digits]
    again = client.post("/v1/score", json={"images": encoded}).json()["results"]
    assert [r["score"] for r in again] == pytest.approx(expected.tolist(), rel=1e-5)
    assert again[0]["name"] == "images[0]"


def test_maps_come_back_as_pngs(client: Any, tiny_detector_dir: Path, mnist: Dataset) -> None:
    files = [("file", ("d.png", png(mnist.test_images[0]), "image/png"))]
    result = client.post("/v1/score?maps=true", files=files).json()["results"][0]
    for key in ("error_map", "reconstruction", "input"):
        image = Image.open(io.BytesIO(base64.b64decode(result[key])))
        assert image.size == (28, 28)
    # The error map is drawn as `ae-anomaly score --error-maps` draws it.
    from ae_anomaly.deploy.batch import error_map_png

    detector = AutoencoderDetector.load(tiny_detector_dir, device="cpu")
    error = detector.reconstruct(mnist.test_images[:1])[1][0]
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["error_map"]))))
    expected = np.asarray(Image.open(io.BytesIO(error_map_png(error, "mse"))))
    assert np.abs(drawn.astype(int) - expected.astype(int)).max() <= 1


def test_a_colour_image_of_another_size_is_converted(client: Any) -> None:
    colour = (np.random.default_rng(0).random((50, 40, 3)) * 255).astype(np.uint8)
    results = client.post("/v1/score", files=[("file", ("c.png", png(colour), "image/png"))])
    assert results.status_code == 200 and len(results.json()["results"]) == 1


@pytest.mark.parametrize(
    ("send", "status", "says"),
    [
        ({"files": [("file", ("x.png", b"not an image", "image/png"))]}, 400, "x.png"),
        (
            {"files": [("file", ("t.png", png(np.zeros((9, 9), np.uint8))[:30], "image/png"))]},
            400,
            "t.png",
        ),
        ({"json": {"images": ["%%%"]}}, 400, "base64"),
        ({"json": {"pictures": []}}, 400, "images"),
        ({"json": {"images": []}}, 400, "no image"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"content": b"raw", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        (
            {"data": {"file": "text, not a file"}, "files": {"other": ("a.txt", b"x")}},
            400,
            "must be a file",
        ),
    ],
    ids=[
        "not-an-image",
        "truncated",
        "bad-base64",
        "wrong-key",
        "empty",
        "bad-json",
        "type",
        "text",
    ],
)
def test_bad_input_is_a_4xx_with_one_sentence(
    client: Any, send: dict[str, Any], status: int, says: str
) -> None:
    response = client.post("/v1/score", **send)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says.lower() in error.lower() and "\n" not in error and "Traceback" not in error


def _bomb() -> bytes:
    """A 200-byte PNG that says it is 50,000 x 50,000 pixels (2.5 GB once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_it_is_decoded(client: Any) -> None:
    response = client.post("/v1/score", files=[("file", ("bomb.png", _bomb(), "image/png"))])
    assert response.status_code == 400
    assert "bomb.png" in response.json()["error"] and "pixels" in response.json()["error"]


def test_a_failure_of_the_server_is_a_500_with_one_sentence(
    tiny_detector_dir: Path, monkeypatch: pytest.MonkeyPatch, mnist: Dataset
) -> None:
    warm_up = AutoencoderDetector.decision_function

    def out_of_memory(self: Any, images: np.ndarray) -> np.ndarray:
        if not images.any():  # the warm-up pass at start-up succeeds
            return warm_up(self, images)
        raise RuntimeError("CUDA out of memory\n  a long story")

    monkeypatch.setattr(AutoencoderDetector, "decision_function", out_of_memory)
    app = create_app(ServeSettings(tiny_detector_dir, device="cpu"))
    with TestClient(app, raise_server_exceptions=False) as failing:
        files = [("file", ("d.png", png(mnist.test_images[0]), "image/png"))]
        response = failing.post("/v1/score", files=files)
    assert response.status_code == 500
    assert response.json() == {"error": "the server failed to answer (RuntimeError)"}


def test_limits_on_size_and_count(tiny_detector_dir: Path) -> None:
    settings = ServeSettings(tiny_detector_dir, max_upload_mb=0.001, max_files=2, device="cpu")
    with TestClient(create_app(settings)) as small:
        big = [("file", ("b.png", b"x" * 5000, "image/png"))]
        assert small.post("/v1/score", files=big).status_code == 413
        tiny = png(np.zeros((4, 4), np.uint8))
        three = [("file", (f"{i}.png", tiny, "image/png")) for i in range(3)]
        response = small.post("/v1/score", files=three)
        assert response.status_code in (400, 413) and "error" in response.json()


def test_a_token_guards_everything_but_health(tiny_detector_dir: Path) -> None:
    with TestClient(
        create_app(ServeSettings(tiny_detector_dir, token="s3cret", device="cpu"))
    ) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/model").status_code == 401
        assert "bearer token" in c.get("/metrics").json()["error"]
        assert c.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # The page and its assets hold no data: the page asks for the token itself.
        assert c.get("/").status_code == 200 and c.get("/static/page.js").status_code == 200


def test_the_page_and_its_assets_come_from_the_package(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = ["/static/page.js", "/static/page.css", "/static/favicon.svg"]
    for asset in assets:
        assert asset in page.text and client.get(asset).status_code == 200
    # No CDN: nothing the page or its script names lives on another host.
    for text in (page.text, client.get("/static/page.js").text):
        assert "http://" not in text and "https://" not in text
    assert client.get("/static/../app.py").status_code == 404


def test_metrics_count_requests_and_batch_sizes(client: Any, mnist: Dataset) -> None:
    client.post("/v1/score", files=[("file", ("d.png", png(mnist.test_images[0]), "image/png"))])
    text = client.get("/metrics").text
    assert 'ae_anomaly_requests_total{path="/v1/score",status="200"}' in text
    assert "ae_anomaly_batch_images_bucket" in text and "ae_anomaly_request_seconds" in text
    # Unknown paths share one label: a scanner cannot grow the metrics without bound.
    for path in ("/nope", "/wp-admin", "/x/y"):
        assert client.get(path).status_code == 404
    text = client.get("/metrics").text
    assert 'path="other",status="404"}' in text and "wp-admin" not in text


def test_concurrent_requests_are_scored_together() -> None:
    calls: list[int] = []

    def score(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return images.reshape(len(images), -1).sum(axis=1).astype(float)

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(score, max_batch=64, max_wait=0.05)
        batcher.start()
        requests = [np.full((2, 1, 2, 2), i, np.uint8) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[4.0 * i] * 2 for i in range(10)]
    assert len(calls) < 10 and sum(calls) == 20  # gathered, each request its own slice


def test_an_error_in_scoring_reaches_every_request_of_the_batch() -> None:
    def broken(images: np.ndarray) -> np.ndarray:
        raise ValueError("boom")

    async def main() -> None:
        batcher = MicroBatcher(broken, max_wait=0.01)
        batcher.start()
        outcomes = await asyncio.gather(
            *(batcher.submit(np.zeros((1, 1, 2, 2), np.uint8)) for _ in range(3)),
            return_exceptions=True,
        )
        await batcher.stop()
        assert all(isinstance(o, ValueError) for o in outcomes)

    asyncio.run(main())


async def _load(base: str, images: list[bytes], count: int, clients: int) -> list[int]:
    """The status of ``count`` single-image requests sent by ``clients`` at once."""
    import httpx

    statuses: list[int] = []
    todo = list(range(count))

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            i = todo.pop()
            files = {"file": (f"{i}.png", images[i % len(images)], "image/png")}
            statuses.append((await http.post(f"{base}/v1/score", files=files)).status_code)

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return statuses


def test_e2e_a_real_server_answers_and_stops_on_sigterm(
    tiny_detector_dir: Path, mnist: Dataset, tmp_path: Path
) -> None:
    import httpx

    with running_server(tiny_detector_dir) as (server, base):
        files = [("file", ("d.png", png(mnist.test_images[0]), "image/png"))]
        response = httpx.post(f"{base}/v1/score", files=files, timeout=30)
        assert response.status_code == 200 and len(response.json()["results"]) == 1
        # A small version of benchmarks/serve_load.py: 100 requests from 10 clients.
        statuses = asyncio.run(_load(base, [png(d) for d in mnist.test_images[:10]], 100, 10))
        assert statuses == [200] * 100
        passes = httpx.get(f"{base}/metrics").text
        assert 'ae_anomaly_requests_total{path="/v1/score",status="200"} 101.0' in passes
        # Concurrent requests shared forward passes.
        count = next(line for line in passes.splitlines() if "batch_images_count" in line)
        assert float(count.split()[-1]) < 101, count
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (0 before 0.29).
    assert code in (0, -signal.SIGTERM), (
        server.stderr.read().decode()[-2000:] if server.stderr else ""
    )


def test_e2e_sigterm_finishes_the_requests_in_flight(
    tiny_detector_dir: Path, mnist: Dataset
) -> None:
    import httpx

    # Each request waits up to a second for company: SIGTERM arrives while all wait.
    with running_server(tiny_detector_dir, "--max-wait-ms", "1000") as (server, base):
        body = png(mnist.test_images[0])

        async def send_then_stop() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                sent = [
                    asyncio.create_task(
                        http.post(f"{base}/v1/score", files={"file": ("d.png", body)})
                    )
                    for _ in range(8)
                ]
                await asyncio.sleep(0.4)
                server.send_signal(signal.SIGTERM)
                return [(await task).status_code for task in sent]

        statuses = asyncio.run(send_then_stop())
        code = server.wait(timeout=30)
    assert statuses == [200] * 8
    assert code in (0, -signal.SIGTERM)
