"""``ae-anomaly classify train`` and ``classify evaluate``: the digit classifier."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ae_anomaly.classifier.config import build_classifier_config, classifier_leaf_fields
from ae_anomaly.cli.app import _Group, cli
from ae_anomaly.cli.options import config_options, default_out, output_options, parse_overrides
from ae_anomaly.cli.progress import RichProgress
from ae_anomaly.cli.summaries import print_class_table
from ae_anomaly.config import read_yaml


@cli.group(cls=_Group)
def classify() -> None:
    """Train and evaluate the digit classifier (a small CNN for MNIST and Fashion-MNIST)."""


def _classifier_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return config_options(output_options(command), classifier_leaf_fields())


@classify.command("train")
@_classifier_options
def classify_train(
    config_path: Path | None,
    out: Path | None,
    overwrite: bool,
    quiet: bool,
    **raw: str | None,
) -> None:
    """Train the classifier, evaluate it on the test split and write a report.

    The output folder holds config.yaml, classifier/ (weights.safetensors and
    classifier.json), metrics.json, plots/ and report.html.
    """
    base = read_yaml(config_path) if config_path else {}
    config = build_classifier_config(base, parse_overrides(raw, classifier_leaf_fields()))
    out = out or default_out("classify", config.data.dataset)
    from ae_anomaly.classifier.run import train_classifier_run

    console = Console(stderr=True, quiet=quiet)
    progress = None if quiet else RichProgress(console)
    callbacks = [progress] if progress is not None else []
    with progress or contextlib.nullcontext():
        result = train_classifier_run(config, out, overwrite=overwrite, callbacks=callbacks)
    if not quiet:
        print_class_table(Console(), result.metrics, result.seconds)
        Console().print(
            f"classifier: {result.folder}/classifier\nreport: {result.folder}/report.html"
        )


@classify.command("evaluate")
@click.option(
    "--classifier",
    "classifier_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of a saved classifier (the classifier/ of a `classify train` run).",
)
@click.option(
    "--dataset", help="Dataset whose test split is scored [default: the one it was trained on]."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder searched first.")
@click.option(
    "--test-limit",
    type=click.IntRange(min=1),
    help="Score a random subset of this many test images [default: all].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the --test-limit subset; the training run's seed picks the subset it scored.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Also write metrics.json, plots/confusion.png and report.html here.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def classify_evaluate(
    classifier_dir: Path,
    dataset: str | None,
    data_dir: Path | None,
    test_limit: int | None,
    device: str,
    seed: int,
    out: Path | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Score a saved classifier on a test split: accuracy and per-class precision / recall."""
    from ae_anomaly.data.sources import get_spec

    if dataset is not None:
        get_spec(dataset)  # an unknown name is refused before torch loads
    from ae_anomaly.classifier.run import evaluate_classifier_run

    result = evaluate_classifier_run(
        classifier_dir,
        dataset=dataset,
        data_dir=data_dir,
        test_limit=test_limit,
        device=device,
        seed=seed,
        out=out,
        overwrite=overwrite,
    )
    if not quiet:
        print_class_table(Console(), result.metrics, result.seconds)
        if result.folder is not None:
            Console().print(f"report: {result.folder}/report.html")
