"""Scoring files, folders, globs and arrays with a fitted detector, one chunk at a time.

What ``ae-anomaly score`` does: the inputs are streamed in chunks
(``data.stream.iter_image_chunks``), each chunk is scored and its rows are
written out before the next chunk is read, so memory holds one chunk of
images however many there are. Rows are ``path, score, threshold,
is_anomaly`` (for an array file the path is ``file.npy[i]``), as CSV or
JSON lines. Error maps, if asked for, are written as 8-bit grey PNGs whose
brightness is the pixel's error in pixel units (255 = an error of 1): the
absolute error for ``mae``, its root (RMS over channels) for ``mse``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import numpy as np
from PIL import Image

from ae_anomaly.data.images import IMAGE_SUFFIXES, OnError, Skipped
from ae_anomaly.data.stream import DEFAULT_CHUNK_SIZE, ImageChunk, iter_image_chunks
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_bytes

if TYPE_CHECKING:  # at run time it is not needed, and would import torch
    from ae_anomaly.deploy.onnx_detector import OnnxDetector
    from ae_anomaly.detector.estimator import AutoencoderDetector

    Scoring = AutoencoderDetector | OnnxDetector

OutputFormat = Literal["csv", "jsonl"]
OUTPUT_FORMATS: tuple[str, ...] = ("csv", "jsonl")
COLUMNS = ("path", "score", "threshold", "is_anomaly")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ScoreSummary:
    """What a scoring pass did: images scored, how many were anomalies, files skipped."""

    scored: int = 0
    anomalies: int = 0
    skipped: list[Skipped] = field(default_factory=list)


class RowWriter:
    """Writes score rows to a text stream as CSV (with a header) or JSON lines."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise UserError(f"unknown output format {fmt!r}; choose csv or jsonl")
        self._stream = stream
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)

    def write(self, name: str, score: float, threshold: float, is_anomaly: bool) -> None:
        if self._csv is not None:
            # repr keeps every digit, so the CSV holds the scores exactly.
            self._csv.writerow([name, repr(score), repr(threshold), int(is_anomaly)])
        else:
            row: dict[str, Any] = {
                "path": name,
                "score": score,
                "threshold": threshold,
                "is_anomaly": is_anomaly,
            }
            self._stream.write(json.dumps(row) + "\n")


# Error maps of these kinds hold squared differences: shown as their root, in pixel units.
SQUARED_MAPS = ("mse", "blur-mse", "rel-blur")


def error_map_png(error: np.ndarray, map_kind: str) -> bytes:
    """One (H, W) error map as PNG bytes, brightness = error in pixel units."""
    values = np.sqrt(np.maximum(error, 0.0)) if map_kind in SQUARED_MAPS else error
    return image_png(values)


def image_png(image: np.ndarray) -> bytes:
    """A (H, W) or (C, H, W) array of values in [0, 1] as PNG bytes (grey or RGB)."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255)
    pixels = pixels.astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def error_map_name(row: int, name: str) -> str:
    """``<row>_<file name>.png``: the row number keeps names from different folders apart."""
    file_name = Path(name.replace("[", "-").replace("]", "")).name
    if Path(file_name).suffix.lower() in IMAGE_SUFFIXES:
        file_name = Path(file_name).stem
    base = _UNSAFE.sub("_", file_name).strip("_")
    return f"{row:08d}_{base or 'image'}.png"


def score_chunks(
    detector: Scoring,
    chunks: Iterable[ImageChunk],
    writer: RowWriter,
    *,
    error_maps: Path | None = None,
    on_chunk: Callable[[int], None] | None = None,
    written: list[Path] | None = None,
) -> ScoreSummary:
    """Score each chunk and write its rows (and error maps) before the next one is read;
    each error map's path is added to ``written``."""
    threshold = float(detector.threshold_)
    summary = ScoreSummary()
    for chunk in chunks:
        scores = detector.decision_function(chunk.images)
        maps = detector.reconstruct(chunk.images)[1] if error_maps is not None else None
        for i, (name, score) in enumerate(zip(chunk.names, scores.tolist(), strict=True)):
            is_anomaly = score > threshold
            writer.write(name, score, threshold, is_anomaly)
            if maps is not None and error_maps is not None:
                png = error_map_png(maps[i], detector.error_map_kind())
                target = error_maps / error_map_name(summary.scored + i, name)
                write_bytes(target, png)
                if written is not None:
                    written.append(target)
            summary.anomalies += int(is_anomaly)
        summary.scored += len(chunk.names)
        if on_chunk is not None:
            on_chunk(len(chunk.names))
    return summary


def score_inputs(
    detector: Scoring,
    inputs: Iterable[Path | str],
    stream: TextIO,
    *,
    fmt: OutputFormat = "csv",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: OnError = "fail",
    error_maps: Path | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Stream ``inputs`` through ``detector`` and write one row per image to ``stream``."""
    fitted = getattr(detector, "_fitted_model", None)  # an ONNX model is always fitted
    if fitted is not None:
        fitted()  # refuse an unfitted detector before reading anything
    made = error_maps is not None and not error_maps.exists()
    if error_maps is not None:
        make_folder(error_maps)
    skipped: list[Skipped] = []
    counted = 0

    def advance(scored: int) -> None:
        # Skipped files count as done too, so that the bar reaches its total.
        nonlocal counted
        if on_chunk is not None:
            on_chunk(scored + len(skipped) - counted)
        counted = len(skipped)

    chunks = iter_image_chunks(
        inputs, detector.input_shape_, chunk_size=chunk_size, on_error=on_error, skipped=skipped
    )
    written: list[Path] = []
    try:
        summary = score_chunks(
            detector,
            chunks,
            RowWriter(stream, fmt),
            error_maps=error_maps,
            on_chunk=advance,
            written=written,
        )
    except BaseException:
        # The rows are not written either: leave no error map of a failed pass behind.
        for path in written:
            path.unlink(missing_ok=True)
        if made and error_maps is not None:
            # A folder this pass made, now empty again (rmdir refuses one that is not).
            with contextlib.suppress(OSError):
                error_maps.rmdir()
        raise
    advance(0)
    summary.skipped = skipped
    if summary.scored == 0:
        detail = f" ({len(skipped)} unreadable files skipped)" if skipped else ""
        raise UserError(f"no image could be scored{detail}")
    return summary


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder}: {exc.strerror or exc}") from None


def describe_skipped(skipped: list[Skipped], limit: int = 20) -> list[str]:
    """Lines naming the skipped files and why, at most ``limit`` of them, then a count."""
    lines = [f"skipped {s.path}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"... and {len(skipped) - limit} more")
    return lines
