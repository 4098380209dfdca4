"""``ae-anomaly score`` over several processes (torchrun): each scores its share, rank 0
merges the rows in input order.

The inputs are listed the same way on every rank and cut into the same chunks; rank r
reads and scores chunks r, r + N, r + 2N, ... (data.stream's ``shard``) and writes its
rows to a part file as JSON lines, which keep every digit of a score and never break a
row over lines. Rank 0 then reads the parts chunk by chunk, in the order of the inputs,
and writes the rows as one process would have: the same bytes. Memory holds one chunk
per rank, and the part files are removed however the pass ends.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch.distributed as dist

from ae_anomaly.data.images import OnError, Skipped
from ae_anomaly.data.stream import ImageChunk, iter_image_chunks
from ae_anomaly.deploy.batch import OutputFormat, RowWriter, ScoreSummary, score_chunks
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.errors import UserError
from ae_anomaly.nn import distributed


@dataclass(frozen=True)
class _Part:
    """What one rank scored: its summary and the rows of each of its chunks."""

    rank: int
    rows_per_chunk: dict[int, int]
    summary: ScoreSummary
    skipped_before: list[int]  # per skipped file: the index of the chunk read after it


def score_sharded(
    detector: AutoencoderDetector,
    inputs: list[str],
    write_output: Callable[[Callable[[TextIO], None]], None],
    *,
    fmt: OutputFormat,
    chunk_size: int,
    on_error: OnError,
    on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary | None:
    """Score ``inputs`` with every rank; rank 0 merges, hands a function writing the rows
    to ``write_output`` and returns the summary of all ranks (None on the others)."""
    detector._fitted_model()
    folder = Path(distributed.from_main(lambda: tempfile.mkdtemp(prefix="ae-anomaly-parts-")))
    try:
        part = _score_my_share(detector, inputs, folder, chunk_size, on_error, on_chunk)
        parts: list[_Part | None] = [None] * distributed.world_size()
        dist.all_gather_object(parts, part)
        if not distributed.is_main():
            return None
        done = [p for p in parts if p is not None]
        summary = _merged_summary(done)
        if summary.scored == 0:
            skipped = len(summary.skipped)
            detail = f" ({skipped} unreadable files skipped)" if skipped else ""
            raise UserError(f"no image could be scored{detail}")
        write_output(lambda stream: _merge(folder, done, RowWriter(stream, fmt)))
        return summary
    finally:
        dist.barrier()  # rank 0 has read every part
        if distributed.is_main():
            shutil.rmtree(folder, ignore_errors=True)


def _score_my_share(
    detector: AutoencoderDetector,
    inputs: list[str],
    folder: Path,
    chunk_size: int,
    on_error: OnError,
    on_chunk: Callable[[int], None] | None,
) -> _Part:
    rank = distributed.rank()
    skipped: list[Skipped] = []
    rows: dict[int, int] = {}
    before: list[int] = []

    def counted(chunks: Iterator[ImageChunk]) -> Iterator[ImageChunk]:
        for chunk in chunks:
            rows[chunk.index] = len(chunk.names)
            before.extend([chunk.index] * (len(skipped) - len(before)))
            yield chunk

    chunks = iter_image_chunks(
        inputs,
        detector.input_shape_,
        chunk_size=chunk_size,
        on_error=on_error,
        skipped=skipped,
        shard=(rank, distributed.world_size()),
    )
    with (folder / f"rank-{rank}.jsonl").open("w", encoding="utf-8") as stream:
        summary = score_chunks(
            detector, counted(chunks), RowWriter(stream, "jsonl"), on_chunk=on_chunk
        )
    summary.skipped = skipped
    before.extend([2**62] * (len(skipped) - len(before)))
    return _Part(rank, rows, summary, before)


def _merged_summary(parts: list[_Part]) -> ScoreSummary:
    summary = ScoreSummary()
    for part in parts:
        summary.scored += part.summary.scored
        summary.anomalies += part.summary.anomalies
    # The skipped files in about the order of the inputs (by the chunk read next).
    placed = [
        (index, part.rank, skipped)
        for part in parts
        for index, skipped in zip(part.skipped_before, part.summary.skipped, strict=True)
    ]
    summary.skipped = [skipped for *_, skipped in sorted(placed, key=lambda t: (t[0], t[1]))]
    return summary


def _merge(folder: Path, parts: list[_Part], writer: RowWriter) -> None:
    """Every rank's rows, chunk by chunk in input order, through ``writer``."""
    owner = {index: part.rank for part in parts for index in part.rows_per_chunk}
    count = {index: n for part in parts for index, n in part.rows_per_chunk.items()}
    with ExitStack() as stack:
        streams = {
            part.rank: stack.enter_context(
                (folder / f"rank-{part.rank}.jsonl").open(encoding="utf-8")
            )
            for part in parts
        }
        for index in sorted(owner):
            stream = streams[owner[index]]
            for _ in range(count[index]):
                row = json.loads(stream.readline())
                writer.write(row["path"], row["score"], row["threshold"], row["is_anomaly"])
