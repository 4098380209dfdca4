"""``ae-anomaly score`` and ``ae-anomaly export``: use a saved detector."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

import click
from rich.console import Console

if TYPE_CHECKING:  # the real import loads torch, which commands defer until needed
    from ae_anomaly.data.images import OnError
    from ae_anomaly.deploy.batch import OutputFormat, ScoreSummary

from ae_anomaly.cli.app import cli
from ae_anomaly.cli.options import detector_option
from ae_anomaly.errors import UserError

T = TypeVar("T")


@cli.command()
@detector_option
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="Output format: CSV with a header, or one JSON object per line.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write the rows to this file (atomically) [default: stdout].",
)
@click.option(
    "--error-maps",
    type=click.Path(path_type=Path),
    help="Save each image's error map as a PNG in this folder.",
)
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="What an unreadable image file does: end the run, or be skipped and counted.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images read and scored at a time (memory holds one batch).",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, mps or auto.")
@click.option(
    "--compile",
    "compile_scoring",
    is_flag=True,
    help="Compile the scoring with torch.compile first: up to 15% faster on a CPU, "
    "after 10-30 s of compiling. For millions of images.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def score(
    detector_dir: Path,
    inputs: tuple[str, ...],
    fmt: str,
    output: Path | None,
    error_maps: Path | None,
    on_error: str,
    batch_size: int,
    device: str,
    compile_scoring: bool,
    quiet: bool,
) -> None:
    """Score image files, folders, globs and .npy/.npz arrays with a saved detector.

    Writes one row per image: path, score, threshold, is_anomaly (1 = score
    above the threshold). Images are resized to the detector's input size and
    converted to its channel count; arrays must already have its shape. Under
    torchrun, each process scores its share and rank 0 writes every row, in order.

    --detector may also name the .onnx file `ae-anomaly export` wrote: ONNX
    Runtime scores it, without loading PyTorch (a faster start; no error maps).
    """
    from ae_anomaly.nn.launch import launched

    onnx = detector_dir.suffix.lower() == ".onnx"
    if onnx:
        _check_onnx_options(error_maps, device, compile_scoring)
    if launched():
        if onnx:
            raise UserError(
                "an ONNX model is scored by one process; torchrun shares a "
                "saved detector folder between processes"
            )
        _score_over_ranks(
            detector_dir,
            inputs,
            fmt,
            output,
            error_maps,
            on_error,
            batch_size,
            device,
            compile_scoring,
            quiet,
        )
        return
    from ae_anomaly.cli.progress import CountProgress
    from ae_anomaly.data.stream import count_images
    from ae_anomaly.deploy.batch import score_inputs

    detector = (
        _onnx_detector(detector_dir)
        if onnx
        else _scoring_detector(detector_dir, device, compile_scoring)
    )
    console = Console(stderr=True, quiet=quiet)
    total = None if quiet else count_images(inputs)
    progress = CountProgress(console, total, "scoring") if not quiet else None

    def run_into(stream: TextIO) -> ScoreSummary:
        return score_inputs(
            detector,
            inputs,
            stream,
            fmt=cast("OutputFormat", fmt),
            chunk_size=batch_size,
            on_error=cast("OnError", on_error),
            error_maps=error_maps,
            on_chunk=progress.advance if progress is not None else None,
        )

    with progress or contextlib.nullcontext():
        summary = _into_output(output, run_into)
    _report(summary, console, detector.threshold_, output)


def _report(summary: ScoreSummary, console: Console, threshold: float, output: Path | None) -> None:
    """The skipped files (always, on stderr) and the count of anomalies."""
    from ae_anomaly.deploy.batch import describe_skipped

    for line in describe_skipped(summary.skipped):
        click.echo(line, err=True)
    if summary.skipped:
        count = len(summary.skipped)
        click.echo(f"skipped {count} unreadable file{'s' if count > 1 else ''}", err=True)
    console.print(
        f"scored {summary.scored} images: {summary.anomalies} above the threshold "
        f"{threshold:.5g}" + (f"; rows in {output}" if output else "")
    )


def _score_over_ranks(
    detector_dir: Path,
    inputs: tuple[str, ...],
    fmt: str,
    output: Path | None,
    error_maps: Path | None,
    on_error: str,
    batch_size: int,
    device: str,
    compile_scoring: bool,
    quiet: bool,
) -> None:
    """``score`` as one of several processes (deploy/sharded.py); rank 0 writes."""
    from ae_anomaly.deploy.sharded import score_sharded
    from ae_anomaly.nn import distributed

    def write_output(write_rows: Callable[[TextIO], None]) -> None:
        _into_output(output, write_rows)

    with distributed.session(device):
        detector = _scoring_detector(detector_dir, device, compile_scoring)
        summary = score_sharded(
            detector,
            list(inputs),
            write_output,
            fmt=cast("OutputFormat", fmt),
            chunk_size=batch_size,
            on_error=cast("OnError", on_error),
            error_maps=error_maps,
        )
    if summary is not None:  # rank 0
        _report(summary, Console(stderr=True, quiet=quiet), detector.threshold_, output)


def _scoring_detector(detector_dir: Path, device: str, compile_scoring: bool) -> Any:
    """The saved detector, loaded onto ``device``; its scoring compiled when asked."""
    from ae_anomaly.detector.estimator import AutoencoderDetector

    detector = AutoencoderDetector.load(detector_dir, device=device)
    return detector.compile() if compile_scoring else detector


def _check_onnx_options(error_maps: Path | None, device: str, compile_scoring: bool) -> None:
    """One sentence for an option that an ONNX model cannot serve."""
    from ae_anomaly.deploy.onnx_detector import NO_ERROR_MAPS

    if error_maps is not None:
        raise UserError(NO_ERROR_MAPS)
    if compile_scoring:
        raise UserError(
            "--compile compiles PyTorch's scoring; an ONNX model is scored by ONNX Runtime"
        )
    if device not in ("auto", "cpu"):
        raise UserError(f"an ONNX model is scored on the CPU here, not on {device!r}")


def _onnx_detector(path: Path) -> Any:
    from ae_anomaly.deploy.onnx_detector import OnnxDetector

    return OnnxDetector.load(path)


def _into_output(output: Path | None, write: Callable[[TextIO], T]) -> T:
    """``write(stream)`` into stdout, or into ``output`` atomically; what it returned."""
    from ae_anomaly.fileio import atomic_write

    if output is None:
        return write(sys.stdout)
    results: list[T] = []

    def write_file(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            results.append(write(stream))

    atomic_write(output, write_file)
    return results[0]


@cli.command("export")
@detector_option
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="The file to write [default: detector.onnx in the detector folder].",
)
def export_command(detector_dir: Path, fmt: str, output: Path | None) -> None:
    """Export a saved detector to ONNX.

    The model takes float32 images (N, C, H, W) in [0, 1] and returns each
    image's score and its reconstruction.
    """
    from ae_anomaly.deploy.onnx import export_onnx, require_onnx
    from ae_anomaly.detector.estimator import AutoencoderDetector

    require_onnx()  # before the slow part, so a missing extra is said at once
    detector = AutoencoderDetector.load(detector_dir, device="cpu")
    path = export_onnx(detector, output or Path(detector_dir) / f"detector.{fmt}")
    click.echo(f"wrote {path}")
