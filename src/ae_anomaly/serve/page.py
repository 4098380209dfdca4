"""The page at ``/``: one HTML file, its script and its style sheet, all from the package.

Nothing is fetched from elsewhere, so the page works offline; the Content-Security-Policy
header makes the browser hold it to that. The page and its assets carry no data, so they
are served without the token; the page asks for the token and sends it with its calls.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = files("ae_anomaly.serve") / "static"
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/", "/healthz")

# Scripts, styles and images from this server only; maps arrive as data: URLs.
_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"


def add_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": _POLICY})


def is_public(path: str) -> bool:
    """Whether ``path`` is answered without the token (health, the page and its assets)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
