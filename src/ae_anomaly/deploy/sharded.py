"""``ae-anomaly score`` over several processes (torchrun): each scores its share, rank 0
merges the rows in input order.

The inputs are listed the same way on every rank and cut into the same chunks; rank r
reads and scores chunks r, r + N, r + 2N, ... (data.stream's ``shard``) and writes its
rows to a part file as JSON lines, which keep every digit of a score and never break a
row over lines. Rank 0 then reads the parts chunk by chunk, in the order of the inputs,
and writes the rows as one process would have: the same bytes. Memory holds one chunk
per rank, and the part files are removed however the pass ends.

With error maps, each rank writes its maps into a hidden folder of its own inside the
maps folder, numbered by its own rows; rank 0 renames each to the name one process
gives it (``<row>_<file>.png``, the row counted over all inputs) as it merges the rows.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from ae_anomaly.deploy.batch import (
    OutputFormat,
    RowWriter,
    ScoreSummary,
    error_map_name,
    make_folder,
    score_chunks,
)
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
    error_maps: Path | None = None,
) -> ScoreSummary | None:
    """Score ``inputs`` with every rank; rank 0 merges, hands a function writing the rows
    to ``write_output`` and returns the summary of all ranks (None on the others)."""
    detector._fitted_model()
    folder = Path(distributed.from_main(lambda: tempfile.mkdtemp(prefix="ae-anomaly-parts-")))
    made = error_maps is not None and distributed.from_main(lambda: _made(error_maps))
    maps = None if error_maps is None else _MapParts(error_maps)
    try:
        part = _score_my_share(detector, inputs, folder, chunk_size, on_error, on_chunk, maps)
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
        write_output(lambda stream: _merge(folder, done, RowWriter(stream, fmt), maps))
        return summary
    except BaseException:
        if maps is not None and distributed.is_main():
            maps.remove_renamed(made)
        raise
    finally:
        dist.barrier()  # rank 0 has read every part
        if distributed.is_main():
            shutil.rmtree(folder, ignore_errors=True)
            if maps is not None:
                maps.remove_parts()


def _score_my_share(
    detector: AutoencoderDetector,
    inputs: list[str],
    folder: Path,
    chunk_size: int,
    on_error: OnError,
    on_chunk: Callable[[int], None] | None,
    maps: _MapParts | None,
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
            detector,
            counted(chunks),
            RowWriter(stream, "jsonl"),
            on_chunk=on_chunk,
            error_maps=None if maps is None else maps.of_rank(rank),
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


def _merge(folder: Path, parts: list[_Part], writer: RowWriter, maps: _MapParts | None) -> None:
    """Every rank's rows, chunk by chunk in input order, through ``writer``; each error
    map renamed to its row's number over all inputs."""
    rows_of_rank = dict.fromkeys((part.rank for part in parts), 0)
    row = 0
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
                line = json.loads(stream.readline())
                writer.write(line["path"], line["score"], line["threshold"], line["is_anomaly"])
                if maps is not None:
                    maps.rename(owner[index], rows_of_rank[owner[index]], row, line["path"])
                rows_of_rank[owner[index]] += 1
                row += 1


def _made(folder: Path) -> bool:
    """Make the maps folder; whether it was made now (and is to go if the pass fails)."""
    existed = folder.exists()
    make_folder(folder)
    return not existed


class _MapParts:
    """The error maps of every rank, written apart and renamed into place by rank 0."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.renamed: list[Path] = []

    def of_rank(self, rank: int) -> Path:
        """The folder ``rank`` writes its maps to, made."""
        part = self._part(rank)
        part.mkdir(exist_ok=True)
        return part

    def rename(self, rank: int, rank_row: int, row: int, name: str) -> None:
        target = self.folder / error_map_name(row, name)
        os.replace(self._part(rank) / error_map_name(rank_row, name), target)
        self.renamed.append(target)

    def remove_renamed(self, made: bool) -> None:
        """A failed pass leaves no map behind, nor a maps folder it made."""
        for path in self.renamed:
            path.unlink(missing_ok=True)
        self.remove_parts()
        if made:
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def _part(self, rank: int) -> Path:
        return self.folder / f".parts-{rank}"

    def remove_parts(self) -> None:
        for part in self.folder.glob(".parts-*"):
            shutil.rmtree(part, ignore_errors=True)
