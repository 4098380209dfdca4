"""The ``ae-anomaly`` command: parse, build the config, call the API, print a summary.

Every config field is also a flag named after it (``--epochs 5``); values
are read as YAML, so ``--noise-std 0.1,0.2`` and ``--mix "{clean: 0.5, noise: 0.5}"``
work. Problems a user can fix end in one sentence and exit status 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, get_origin

import click
import yaml
from rich.console import Console
from rich.table import Table

from ae_anomaly import __version__
from ae_anomaly.classifier_config import build_classifier_config, classifier_leaf_fields
from ae_anomaly.config import build_config, leaf_fields, read_yaml
from ae_anomaly.errors import UserError
from ae_anomaly.outputs import CONFIG_FILE, RunFolder
from ae_anomaly.progress import RichProgress

EXIT_USER_ERROR = 2


class _UserErrorExit(click.ClickException):
    """Click prints it as ``Error: <sentence>`` and exits with status 2."""

    exit_code = EXIT_USER_ERROR


class _Group(click.Group):
    """Turns a UserError anywhere below into click's one-line error with exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _UserErrorExit(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ae-anomaly")
def cli() -> None:
    """Anomaly detection in images with autoencoders."""


def config_options(
    command: Callable[..., Any], leaves: dict[str, tuple[str | None, Any]] | None = None
) -> Callable[..., Any]:
    """Add one ``--flag`` per config field, named and documented after the field.

    ``leaves`` defaults to the detector's RunConfig fields.
    """
    for name, (section, info) in reversed(list((leaves or leaf_fields()).items())):
        key = f"{section}.{name}" if section else name
        help_text = f"{info.description} [config: {key}]"
        command = click.option(
            f"--{name.replace('_', '-')}", name, default=None, metavar="VALUE", help=help_text
        )(command)
    return command


def parse_overrides(
    raw: dict[str, str | None], leaves: dict[str, tuple[str | None, Any]] | None = None
) -> dict[str, Any]:
    """Flag strings -> YAML values; the config validator then checks their types."""
    leaves = leaves or leaf_fields()
    overrides: dict[str, Any] = {}
    for name, text in raw.items():
        if text is None:
            continue
        is_list = get_origin(leaves[name][1].annotation) is list
        if is_list and not text.lstrip().startswith("["):
            text = f"[{text}]"
        try:
            overrides[name] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(
                f"--{name.replace('_', '-')}: cannot read {text!r} as a value"
            ) from None
    return overrides


def experiment_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every experiment command shares: config fields, file, output, verbosity."""
    return config_options(output_options(command))


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Config file, output folder, --overwrite and --quiet."""
    options = [
        click.option(
            "--config", "config_path", type=click.Path(path_type=Path), help="YAML config file."
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            help="Output folder [default: runs/<command>-<dataset>-<time>].",
        ),
        click.option("--overwrite", is_flag=True, help="Replace an existing output folder."),
        click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def default_out(kind: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{dataset}-{stamp}"


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
        config_path = _resume_config(out, config_path)
    base = read_yaml(config_path) if config_path else {}
    config = build_config(base, parse_overrides(raw))
    out = out or default_out(config.scenario, config.data.dataset)
    # Imported only now: torch and matplotlib take seconds to load, and a bad
    # flag or config value should be reported at once.
    from ae_anomaly.experiment import run_experiment

    console = Console(stderr=True, quiet=quiet)
    listener = None if quiet else RichProgress(console)
    with listener or contextlib.nullcontext():
        result = run_experiment(config, out, overwrite=overwrite, resume=resume, listener=listener)
    if not quiet:
        print_summary(Console(), result.metrics, result.folder, result.seconds)


def _resume_config(out: Path | None, config_path: Path | None) -> Path:
    """The config a resumed run starts from: the given file, else the run's own."""
    if out is None:
        raise UserError("--resume needs --out, the folder of the interrupted run")
    folder = RunFolder(out)
    folder.check(overwrite=False, resume=True)  # says why, if there is nothing to resume
    return config_path or folder.work / CONFIG_FILE


def print_summary(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """A short table: AUROC / AUPRC / share flagged per kind, then the threshold figures."""
    table = Table(title=f"Results ({seconds:.0f} s)")
    for column in ("group", "n", "AUROC", "AUPRC", "flagged"):
        table.add_column(column, justify="left" if column == "group" else "right")
    table.add_row(
        "all",
        str(metrics["n_test"]),
        _fmt(metrics["overall"]["auroc"]),
        _fmt(metrics["overall"]["auprc"]),
        "",
    )
    for section, prefix in (
        ("by_kind", ""),
        ("by_noise_std", "noise std "),
        ("by_angle_band", "rotation "),
    ):
        for name, row in metrics[section].items():
            table.add_row(
                f"{prefix}{name}",
                str(row["n"]),
                _fmt(row.get("auroc")),
                _fmt(row.get("auprc")),
                _fmt(row["flagged"]),
            )
    console.print(table)
    at = metrics["at_threshold"]
    console.print(
        f"threshold {metrics['threshold_rule']} = {metrics['threshold']:.5g}: "
        f"precision {_fmt(at['precision'])}, recall {_fmt(at['recall'])}, F1 {_fmt(at['f1'])}"
    )
    console.print(f"report: {folder / 'report.html'}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
    from ae_anomaly.comparison import DEFAULT_MODELS, compare_models, markdown_tables
    from ae_anomaly.models import build_model, model_names

    model_list = ",".join(DEFAULT_MODELS) if model_list is None else model_list
    models = [name.strip() for name in model_list.split(",") if name.strip()]
    if not models:
        raise UserError("--models needs at least one model name")
    unknown = [name for name in models if name not in model_names()]
    if unknown:
        build_model(unknown[0], (1, 28, 28))  # raises the usual "unknown model" sentence
    if len(set(models)) != len(models):
        raise UserError(f"--models names a model twice: {model_list}")
    config = build_config(read_yaml(config_path) if config_path else {}, parse_overrides(raw))
    out = out or default_out("compare", config.data.dataset)

    console = Console(stderr=True, quiet=quiet)
    listener = None if quiet else RichProgress(console)

    def announce(name: str) -> None:
        if listener is not None:
            listener.label = f"{name} "

    with listener or contextlib.nullcontext():
        rows = compare_models(
            config, models, out, overwrite=overwrite, listener=listener, on_model=announce
        )
    if not quiet:
        click.echo(markdown_tables(rows))  # plain text: a table to paste, not to wrap
        click.echo(f"results: {out}")


@cli.command()
def models() -> None:
    """List the architectures: name, parameters for 28x28 grey images, description."""
    from ae_anomaly.models import MODELS, build_model, parameter_count

    table = Table()
    for column in ("model", "parameters", "description"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for name, entry in MODELS.items():
        count = parameter_count(build_model(name, (1, 28, 28)))
        table.add_row(name, f"{count:,}", entry.description)
    Console().print(table)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder searched first.")
def datasets(data_dir: Path | None) -> None:
    """List the known datasets, where each was found and whether its checksums verify."""
    from ae_anomaly.data.sources import dataset_status

    table = Table()
    for column in ("dataset", "found via", "folder", "status"):
        table.add_column(column)
    for row in dataset_status(data_dir):
        folder = str(row.location) if row.location else "-"
        table.add_row(row.name, row.source or "-", folder, row.verdict)
    Console().print(table)


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
    from ae_anomaly.classifier_run import train_classifier_run

    console = Console(stderr=True, quiet=quiet)
    listener = None if quiet else RichProgress(console)
    with listener or contextlib.nullcontext():
        result = train_classifier_run(config, out, overwrite=overwrite, listener=listener)
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
    from ae_anomaly.classifier_run import evaluate_classifier_run

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


def print_class_table(console: Console, metrics: dict[str, Any], seconds: float) -> None:
    """Accuracy, then precision / recall / F1 / images per class."""
    table = Table(title=f"{metrics['dataset']} test split ({seconds:.0f} s)")
    for column in ("class", "precision", "recall", "F1", "images"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for key, row in metrics["per_class"].items():
        label = key if row["name"] == key else f"{key} {row['name']}"
        table.add_row(
            label, _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"])
        )
    console.print(table)
    console.print(
        f"accuracy {metrics['accuracy']:.4f} ({metrics['errors']} errors in {metrics['n']}), "
        f"macro F1 {_fmt(metrics['macro']['f1'])}, "
        f"lowest class recall {_fmt(metrics['min_recall'])}"
    )


def main() -> None:
    cli(prog_name="ae-anomaly")


if __name__ == "__main__":
    main()
