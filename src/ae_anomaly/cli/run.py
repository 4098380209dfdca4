"""``ae-anomaly run``: one experiment from a config to a finished output folder."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click
from rich.console import Console

from ae_anomaly.cli.app import cli
from ae_anomaly.cli.options import default_out, experiment_options, parse_overrides, resume_config
from ae_anomaly.cli.progress import RichProgress
from ae_anomaly.cli.summaries import print_guard, print_ranking, print_summary
from ae_anomaly.config import build_config, read_yaml
from ae_anomaly.errors import UndertrainedWarning
from ae_anomaly.scenarios import get_scenario


def _interrupted(out: Path) -> click.exceptions.Exit:
    """Ctrl-C: say how to continue (when there is something to continue), exit 130 as
    shells expect of an interrupted program."""
    from ae_anomaly.runs.folder import RunFolder

    if RunFolder(out).work.is_dir():
        hint = f"continue it with: ae-anomaly run --resume --out {out}"
    else:
        hint = "nothing was written"
    click.echo(f"Interrupted; {hint}", err=True)
    return click.exceptions.Exit(130)


@cli.command()
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@experiment_options
def run(
    config_path: Path | None,
    out: Path | None,
    overwrite: bool,
    resume: bool,
    quiet: bool,
    **raw: str | None,
) -> None:
    """Train a detector, fit its threshold, evaluate it and write a report."""
    if resume:
        config_path = resume_config(out, config_path)
    base = read_yaml(config_path) if config_path else {}
    config = build_config(base, parse_overrides(raw))
    out = out or default_out(config.scenario, config.data.dataset)
    # Imported only now: torch and matplotlib take seconds to load, and a bad
    # flag or config value should be reported at once.
    from ae_anomaly.nn.launch import launched_rank
    from ae_anomaly.runs.experiment import run_experiment

    # Under torchrun, rank 0 alone shows progress and results.
    quiet = quiet or launched_rank() > 0
    console = Console(stderr=True, quiet=quiet)
    progress = None if quiet else RichProgress(console)
    callbacks = [progress] if progress is not None else []
    # The run's training warnings are printed below, with the results, not as Python warnings.
    with progress or contextlib.nullcontext(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndertrainedWarning)
        try:
            result = run_experiment(
                config, out, overwrite=overwrite, resume=resume, callbacks=callbacks
            )
        except KeyboardInterrupt:
            raise _interrupted(out) from None
    if not quiet:
        # What was measured decides the table: a labelled evaluation, a guarded
        # classifier or a ranking.
        metrics, groups = result.metrics, get_scenario(config.scenario).groups
        if "accuracy_at_coverage" in metrics:
            print_guard(Console(), metrics, result.folder, result.seconds)
        elif "at_threshold" in metrics:
            print_summary(Console(), metrics, result.folder, result.seconds, groups)
        else:
            print_ranking(Console(), metrics, result.folder, result.seconds)
    for message in result.metrics.get("training", {}).get("warnings", []):
        # metrics.json keeps them too, for --quiet runs.
        console.print(f"warning: {message}", highlight=False)
    skipped = result.metrics.get("skipped_files", [])
    if skipped:
        # On stderr and even with --quiet: images left out change what was measured.
        Console(stderr=True).print(
            f"skipped {len(skipped)} unreadable file(s), listed in metrics.json; first: "
            f"{skipped[0]}",
            highlight=False,
        )
