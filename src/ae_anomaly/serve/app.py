"""The FastAPI application: a saved detector behind HTTP.

Endpoints: ``/healthz`` (the process runs), ``/readyz`` (the detector is loaded and
warm), ``/v1/model`` (what the detector is), ``POST /v1/score`` (multipart ``file``
fields or JSON base64 images; ``?maps=true`` adds error maps and reconstructions),
``/metrics`` (Prometheus text), the OpenAPI docs at ``/docs`` and the page at ``/``
(page.py). A client's mistake
is a 4xx with ``{"error": "<one sentence>"}``; concurrent requests are scored together
(batching.py), off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ae_anomaly import __version__
from ae_anomaly.deploy.batch import error_map_png, image_png
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.detector.files import META_FILE
from ae_anomaly.errors import UserError
from ae_anomaly.serve.batching import MicroBatcher
from ae_anomaly.serve.inputs import BadInput, decode, from_json
from ae_anomaly.serve.page import add_page, is_public
from ae_anomaly.serve.settings import ServeSettings


class _Metrics:
    """The Prometheus metrics of one application (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ae_anomaly_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ae_anomaly_request_seconds", "Request latency", ["path"], registry=self.registry
        )
        self.batch = Histogram(
            "ae_anomaly_batch_images",
            "Images per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )


def create_app(settings: ServeSettings) -> FastAPI:
    """The application serving the detector saved in ``settings.detector_dir``."""
    metrics = _Metrics()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        detector = AutoencoderDetector.load(settings.detector_dir, device=settings.device)
        if settings.compile:
            detector.compile()
        # Warm up before the first request. Compiled, each of these batch sizes has code
        # of its own, made on first use: one image, and more (2 to 15 apart from 16 and
        # more where the convolutions are in the compiled graph, as on a GPU); a compile
        # during serving stalled requests for seconds.
        sizes = (1, 2, 16) if settings.compile else (1,)
        for size in (n for n in sizes if n <= settings.max_batch):
            detector.decision_function(np.zeros((size, *detector.input_shape_), np.uint8))
        batcher = MicroBatcher(
            detector.decision_function,
            settings.max_batch,
            settings.max_wait_ms / 1000,
            on_batch=metrics.batch.observe,
        )
        batcher.start()
        state.update(detector=detector, batcher=batcher, model=_description(detector, settings))
        yield
        await batcher.stop()

    app = FastAPI(title="ae-anomaly", version=__version__, lifespan=lifespan)
    app.add_middleware(_Guard, settings=settings, metrics=metrics)
    add_page(app)

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput) -> Response:
        return _error(exc.status, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The server's own failure: one sentence to the client, the traceback to the log.
        return _error(500, f"the server failed to answer ({type(exc).__name__})")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if "batcher" not in state:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        return state["model"]  # type: ignore[no-any-return]

    @app.post("/v1/score")
    async def score(request: Request, maps: bool = False) -> Response:
        detector: AutoencoderDetector = state["detector"]
        blobs = await _uploads(request, settings)
        # Decoding and scoring run on worker threads: the event loop keeps accepting.
        images = await asyncio.to_thread(decode, blobs, detector.input_shape_)
        scores = await state["batcher"].submit(images)
        threshold = float(detector.threshold_)
        results: list[dict[str, Any]] = [
            {
                "name": name,
                "score": float(s),
                "threshold": threshold,
                "is_anomaly": bool(s > threshold),
            }
            for (name, _), s in zip(blobs, scores, strict=True)
        ]
        if maps:
            reconstructions, error_maps = await asyncio.to_thread(detector.reconstruct, images)
            kind = detector.error_map_kind()
            for result, image, recon, error in zip(
                results, images, reconstructions, error_maps, strict=True
            ):
                # Drawn as `ae-anomaly score --error-maps` draws them: in pixel units.
                result["error_map"] = _base64(error_map_png(error, kind))
                result["reconstruction"] = _base64(image_png(recon))
                result["input"] = _base64(image_png(image / 255.0))  # as the detector saw it
        return JSONResponse({"results": results})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(generate_latest(metrics.registry).decode())

    return app


class _Guard:
    """The token, the upload limit and the request metrics, as plain ASGI middleware.

    (Starlette's BaseHTTPMiddleware would cost a task and a stream per request.)
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: _Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        refusal = self._refusal(scope["path"], Headers(scope=scope))
        try:
            await (refusal or self.app)(scope, receive, send_noting_status)
        finally:
            path = _route(scope["path"])
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)

    def _refusal(self, path: str, headers: Headers) -> Response | None:
        token = self.settings.token
        if token and not is_public(path) and headers.get("authorization") != f"Bearer {token}":
            return _error(401, "a bearer token is required: Authorization: Bearer <token>")
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.settings.max_upload_mb * 2**20:
            return _error(413, f"the request is larger than {self.settings.max_upload_mb:g} MB")
        return None


_ROUTES = ("/", "/healthz", "/readyz", "/v1/model", "/v1/score", "/metrics", "/docs")


def _route(path: str) -> str:
    """The metrics' path label: a known route, or one label for all others (a scanner's
    thousand paths must not become a thousand series)."""
    if path in _ROUTES:
        return path
    return "/static" if path.startswith("/static/") else "other"


async def _uploads(request: Request, settings: ServeSettings) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart or JSON request."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = int(settings.max_upload_mb * 2**20)
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=settings.max_files + 1)
        except Exception as exc:  # the multipart parser's errors have no common type
            raise BadInput(400, f"the multipart body cannot be read ({exc})") from None
        files = [item for key, item in form.multi_items() if key == "file"]
        blobs = []
        for item in files:
            if isinstance(item, str):
                raise BadInput(400, "each 'file' field must be a file, not text")
            blobs.append((item.filename or "file", await item.read()))
    elif kind == "application/json":
        body = await request.body()
        if len(body) > limit:
            raise BadInput(413, f"the request is larger than {settings.max_upload_mb:g} MB")
        try:
            blobs = from_json(json.loads(body))
        except json.JSONDecodeError:
            raise BadInput(400, "the body is not valid JSON") from None
    else:
        raise BadInput(415, "send multipart/form-data with 'file' fields, or application/json")
    if len(blobs) > settings.max_files:
        raise BadInput(400, f"at most {settings.max_files} images per request")
    if sum(len(data) for _, data in blobs) > limit:
        raise BadInput(413, f"the request is larger than {settings.max_upload_mb:g} MB")
    return blobs


def _description(detector: AutoencoderDetector, settings: ServeSettings) -> dict[str, Any]:
    meta = json.loads((settings.detector_dir / META_FILE).read_text(encoding="utf-8"))
    channels, height, width = detector.input_shape_
    training = detector.training_summary()
    return {
        "model": detector.model,
        "score": detector.score_,
        "threshold": float(detector.threshold_),
        "threshold_rule": detector.threshold,
        "input": {"channels": channels, "height": height, "width": width},
        "patch_size": detector.patch_size_,
        "training": {
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
        },
        "limits": {"max_files": settings.max_files, "max_upload_mb": settings.max_upload_mb},
        "package_version": __version__,
        "weights_sha256": meta.get("weights_sha256"),
    }


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
