"""``ae-anomaly compare`` and ``ae-anomaly benchmark``: many detectors on one dataset."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from rich.console import Console

from ae_anomaly.cli.app import cli
from ae_anomaly.cli.options import default_out, experiment_options, parse_overrides, resume_config
from ae_anomaly.cli.progress import RichProgress
from ae_anomaly.config import build_config, read_yaml
from ae_anomaly.errors import UserError
from ae_anomaly.scenarios.one_class import OneClass


@cli.command()
@click.option(
    "--models",
    "model_list",
    help="Comma-separated model names (see `ae-anomaly models`) "
    "[default: fc-small,fc-deep,conv-strided,conv-bn,conv-keras].",
)
@experiment_options
def compare(
    model_list: str | None,
    config_path: Path | None,
    out: Path | None,
    overwrite: bool,
    quiet: bool,
    **raw: str | None,
) -> None:
    """Train several architectures on the same data, seed and epoch budget; compare them.

    Every config field applies to all models alike; --model and --model-args
    are not used (each model keeps its own default arguments).
    """
    from ae_anomaly.nn.device import threads_if_given
    from ae_anomaly.nn.models import build_model, model_names
    from ae_anomaly.runs.comparison import DEFAULT_MODELS, compare_models, markdown_tables

    model_list = ",".join(DEFAULT_MODELS) if model_list is None else model_list
    models = [name.strip() for name in model_list.split(",") if name.strip()]
    if not models:
        raise UserError("--models needs at least one model name")
    unknown = [name for name in models if name not in model_names()]
    if unknown:
        build_model(unknown[0], (1, 28, 28))  # raises the usual "unknown model" sentence
    if len(set(models)) != len(models):
        raise UserError(f"--models names a model twice: {model_list}")
    # Every model is scored alike, by the package defaults: a recipe is for one model.
    base = read_yaml(config_path) if config_path else {}
    config = build_config(base, parse_overrides(raw), recipe=False)
    out = out or default_out("compare", config.data.dataset)

    console = Console(stderr=True, quiet=quiet)
    progress = None if quiet else RichProgress(console)
    callbacks = [progress] if progress is not None else []

    def announce(name: str) -> None:
        if progress is not None:
            progress.label = f"{name} "

    with progress or contextlib.nullcontext(), threads_if_given(config.threads):
        rows = compare_models(
            config, models, out, overwrite=overwrite, callbacks=callbacks, on_model=announce
        )
    if not quiet:
        click.echo(markdown_tables(rows))  # plain text: a table to paste, not to wrap
        click.echo(f"results: {out}")


@cli.command()
@click.option(
    "--classes",
    default="all",
    show_default=True,
    help="Normal classes to benchmark: all, or comma-separated class numbers (e.g. 0,7).",
)
@click.option(
    "--seeds",
    "seed_count",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Seeds per class: 0, 1, ... (the mean over classes is reported per seed).",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted benchmark in --out.")
@experiment_options
def benchmark(
    classes: str,
    seed_count: int,
    resume: bool,
    config_path: Path | None,
    out: Path | None,
    overwrite: bool,
    quiet: bool,
    **raw: str | None,
) -> None:
    """One-class novelty benchmark: a detector per (class, seed), AUROC per class and mean.

    Each detector trains on one class of the training split and is tested on the
    whole test split, every other class being an anomaly. Settings come from the
    config and flags, fixed once for all classes; --scenario is one-class.
    """
    overrides = parse_overrides(raw)
    if overrides.get("scenario", OneClass.name) != OneClass.name:
        raise UserError("the benchmark runs the one-class scenario; leave out --scenario")
    if overrides.get("normal_class") is not None:
        raise UserError("the benchmark sets the normal class itself; use --classes")
    chosen = _class_list(classes)
    if resume:
        config_path = resume_config(out, config_path)
    base = read_yaml(config_path) if config_path else {}
    # normal_class is replaced per detector; the first one makes the config valid.
    overrides |= {"scenario": OneClass.name, "normal_class": chosen[0] if chosen else 0}
    config = build_config(base, overrides)
    out = out or default_out("benchmark", config.data.dataset)
    from ae_anomaly.nn.device import threads_if_given
    from ae_anomaly.nn.launch import launched_rank
    from ae_anomaly.runs.benchmark import run_benchmark

    quiet = quiet or launched_rank() > 0  # under torchrun, rank 0 alone reports
    console = Console(stderr=True, quiet=quiet)
    progress = None if quiet else RichProgress(console)
    callbacks = [progress] if progress is not None else []

    def announce(normal_class: int, seed: int) -> None:
        if progress is not None:
            progress.label = f"class {normal_class} seed {seed} "

    with progress or contextlib.nullcontext(), threads_if_given(config.threads):
        result = run_benchmark(
            config,
            chosen,
            list(range(seed_count)),
            out,
            overwrite=overwrite,
            resume=resume,
            callbacks=callbacks,
            on_cell=announce,
        )
    if not quiet:
        click.echo(result.markdown)
        click.echo(f"results: {result.folder}")


def _class_list(text: str) -> list[int] | None:
    """``all`` -> None (every class of the dataset); ``0,7`` -> [0, 7]."""
    if text.strip() == "all":
        return None
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--classes takes all or class numbers such as 0,7; got {text!r}") from None
    if not chosen or len(set(chosen)) != len(chosen):
        raise UserError(f"--classes needs distinct class numbers; got {text!r}")
    return chosen
