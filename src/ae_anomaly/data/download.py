"""Downloading a registered dataset into the cache, checked file by file.

Each of its four files is tried on every mirror in turn and written (atomically)
only once its decompressed bytes match the registered SHA-256.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ae_anomaly.data import idx
from ae_anomaly.data.sources import (
    DOWNLOAD_TIMEOUT_S,
    ENV_CACHE,
    DatasetSpec,
    FileSpec,
    _scan,
    cache_root,
    get_spec,
)
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_bytes

_log = logging.getLogger(__name__)


class _FetchError(Exception):
    """A URL could not be fetched or gave bad content; the message says why."""


def download_dataset(
    name: str,
    mirrors: Sequence[str] | None = None,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the four files of ``name`` into ``<cache>/<name>/`` and return that folder.

    Each file is tried on every mirror in turn and only written (atomically)
    once its decompressed bytes match the registered SHA-256. Files already in
    the cache that verify are kept.
    """
    spec = get_spec(name)
    bases = list(spec.mirrors if mirrors is None else mirrors)
    if not bases:
        raise UserError(f"could not download {spec.name}: no mirrors to try")
    folder = cache_root() / spec.name
    present, _ = _scan(spec, folder)
    for fs in spec.files:
        if fs.base in present and _verifies(present[fs.base], fs):
            continue
        _download_file(spec, fs, folder, bases, timeout)
    return folder


def _verifies(path: Path, fs: FileSpec) -> bool:
    try:
        data = idx.decompress(idx.read_file(path), path)
    except UserError:
        return False
    return hashlib.sha256(data).hexdigest() == fs.sha256


def _download_file(
    spec: DatasetSpec, fs: FileSpec, folder: Path, bases: Sequence[str], timeout: float
) -> None:
    failures = []
    for base in bases:
        url = f"{base.rstrip('/')}/{fs.base}.gz"
        try:
            payload = _fetch_verified(url, fs, timeout)
        except _FetchError as exc:
            failures.append(f"{url} ({exc})")
            continue
        # Mirrors serve .gz, but a server may hand out the file already decompressed.
        target = folder / (f"{fs.base}.gz" if payload.startswith(idx.GZIP_MAGIC) else fs.base)
        try:
            write_bytes(target, payload)
        except OSError as exc:
            raise UserError(
                f"cannot write {target} into the download cache: {exc.strerror or exc}; "
                f"set {ENV_CACHE} to a writable folder"
            ) from None
        return
    raise UserError(f"could not download {spec.name}: tried {', '.join(failures)}")


def _fetch_verified(url: str, fs: FileSpec, timeout: float) -> bytes:
    """The bytes at ``url``, once their decompressed form matches ``fs.sha256``."""
    payload = _fetch(url, timeout)
    try:
        data = idx.decompress(payload, "the file")
    except UserError as exc:
        raise _FetchError(str(exc)) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != fs.sha256:
        raise _FetchError(
            f"checksum mismatch: SHA-256 of the decompressed file is {digest}, expected {fs.sha256}"
        )
    return payload


def _fetch(url: str, timeout: float) -> bytes:
    _log.info("downloading %s", url)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "ae-anomaly"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise _FetchError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _FetchError(str(exc.reason)) from exc
    except TimeoutError as exc:
        raise _FetchError(f"timed out after {timeout:g} s") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise _FetchError(f"transfer failed: {exc!r}") from exc
    except ValueError as exc:  # a mirror that is not a URL urllib can open
        raise _FetchError(str(exc)) from exc
