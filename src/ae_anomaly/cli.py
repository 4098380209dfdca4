"""The ``ae-anomaly`` command: parse, build the config, call the API, print a summary.

Every config field is also a flag named after it (``--epochs 5``); values
are read as YAML, so ``--noise-std 0.1,0.2`` and ``--mix "{clean: 0.5, noise: 0.5}"``
work. Problems a user can fix end in one sentence and exit status 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, TextIO, Union, cast, get_args, get_origin

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

if TYPE_CHECKING:  # the real import loads torch, which commands defer until needed
    from ae_anomaly.batch_scoring import OutputFormat, ScoreSummary
    from ae_anomaly.data.folder import OnError

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
        if _is_list(leaves[name][1].annotation) and not text.lstrip().startswith("["):
            text = f"[{text}]"
        try:
            overrides[name] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(
                f"--{name.replace('_', '-')}: cannot read {text!r} as a value"
            ) from None
    return overrides


def _is_list(annotation: Any) -> bool:
    """True for ``list[...]`` and ``list[...] | None``: a flag value "1,2" means [1, 2]."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return get_origin(annotation) is list or any(get_origin(a) is list for a in options)


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
        summary = print_summary if "at_threshold" in result.metrics else print_ranking
        if config.scenario == "guard":
            summary = print_guard
        summary(Console(), result.metrics, result.folder, result.seconds)
    skipped = result.metrics.get("skipped_files", [])
    if skipped:
        # On stderr and even with --quiet: images left out change what was measured.
        Console(stderr=True).print(
            f"skipped {len(skipped)} unreadable file(s), listed in metrics.json; first: "
            f"{skipped[0]}",
            highlight=False,
        )


def _resume_config(out: Path | None, config_path: Path | None) -> Path:
    """The config a resumed run starts from: the given file, else the run's own."""
    if out is None:
        raise UserError("--resume needs --out, the folder of the interrupted run")
    folder = RunFolder(out)
    folder.check(overwrite=False, resume=True)  # says why, if there is nothing to resume
    return config_path or folder.work / CONFIG_FILE


def print_summary(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """A short table: AUROC / AUPRC / share flagged per kind, then the threshold figures."""
    detector = metrics.get("detector")
    caption = (
        f"{detector['model']}, score {detector['score']}; {detector['assumes']}"
        if detector
        else None
    )
    table = Table(title=f"Results ({seconds:.0f} s)", caption=caption)
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
    cm = at["confusion_matrix"]
    console.print(
        "confusion matrix (rows: true normal, anomaly; columns: predicted normal, anomaly):\n"
        f"[[{cm[0][0]}, {cm[0][1]}],\n [{cm[1][0]}, {cm[1][1]}]]",
        highlight=False,
    )
    from ae_anomaly.evaluation import classification_report_text

    console.print(classification_report_text(cm), highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def print_guard(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """The classifier's accuracy per kind, without and with the autoencoder's rejection."""
    table = Table(title=f"Classifier behind the detector ({seconds:.0f} s)")
    for column in ("kind", "n", "accuracy", "rejected", "accuracy on accepted"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for name, row in metrics["by_kind"].items():
        table.add_row(
            name,
            str(row["n"]),
            _fmt(row["accuracy"]),
            _fmt(row["rejected"]),
            _fmt(row["accuracy_accepted"]),
        )
    console.print(table)
    at = metrics["accuracy_at_coverage"]
    lines = [
        f"coverage {c}: " + ", ".join(f"{name} {value:.4f}" for name, value in row.items())
        for c, row in at.items()
    ]
    console.print("accuracy at coverage:\n  " + "\n  ".join(lines), highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def print_ranking(console: Console, metrics: dict[str, Any], folder: Path, seconds: float) -> None:
    """The unsupervised ranking: per label, how many of the top 1% it holds."""
    table = Table(title=f"Ranking ({seconds:.0f} s): labels for reading only")
    if not metrics["by_label"]:
        table = Table(title=f"Most anomalous of {metrics['n_images']['train']} images")
        for column in ("rank", "file", "score"):
            table.add_column(column)
        for r in metrics["most_anomalous"]:
            table.add_row(str(r["rank"]), r.get("path", str(r["index"])), f"{r['score']:.4g}")
        console.print(table)
        console.print(f"report: {folder / 'report.html'}")
        return
    for column in ("label", "n", "mean score", "in top 1%", "share of top", "lift"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for name, row in metrics["by_label"].items():
        table.add_row(
            name,
            str(row["n"]),
            f"{row['mean_score']:.4g}",
            str(row["n_top"]),
            f"{row['share_of_top']:.3f}",
            f"{row['lift']:.2f}",
        )
    console.print(table)
    top = ", ".join(
        f"{r['split']} #{r['index']} ({r['label']})" for r in metrics["most_anomalous"][:5]
    )
    console.print(f"most anomalous: {top}", highlight=False)
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
    # Every model is scored alike, by the package defaults: a recipe is for one model.
    base = read_yaml(config_path) if config_path else {}
    config = build_config(base, parse_overrides(raw), recipe=False)
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
    if overrides.get("scenario", "one-class") != "one-class":
        raise UserError("the benchmark runs the one-class scenario; leave out --scenario")
    if overrides.get("normal_class") is not None:
        raise UserError("the benchmark sets the normal class itself; use --classes")
    chosen = _class_list(classes)
    if resume:
        config_path = _resume_config(out, config_path)
    base = read_yaml(config_path) if config_path else {}
    # normal_class is replaced per detector; the first one makes the config valid.
    overrides |= {"scenario": "one-class", "normal_class": chosen[0] if chosen else 0}
    config = build_config(base, overrides)
    out = out or default_out("benchmark", config.data.dataset)
    from ae_anomaly.benchmark import run_benchmark

    console = Console(stderr=True, quiet=quiet)
    listener = None if quiet else RichProgress(console)

    def announce(normal_class: int, seed: int) -> None:
        if listener is not None:
            listener.label = f"class {normal_class} seed {seed} "

    with listener or contextlib.nullcontext():
        result = run_benchmark(
            config,
            chosen,
            list(range(seed_count)),
            out,
            overwrite=overwrite,
            resume=resume,
            listener=listener,
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


@cli.command()
@click.option(
    "--detector",
    "detector_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A saved detector folder (detector.json + weights.safetensors).",
)
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
    quiet: bool,
) -> None:
    """Score image files, folders, globs and .npy/.npz arrays with a saved detector.

    Writes one row per image: path, score, threshold, is_anomaly (1 = score
    above the threshold). Images are resized to the detector's input size and
    converted to its channel count; arrays must already have its shape.
    """
    from ae_anomaly.batch_scoring import describe_skipped, score_inputs
    from ae_anomaly.data.folder import count_images
    from ae_anomaly.detector import AutoencoderDetector
    from ae_anomaly.fileio import atomic_write
    from ae_anomaly.progress import CountProgress

    detector = AutoencoderDetector.load(detector_dir, device=device)
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

    summaries: list[ScoreSummary] = []
    with contextlib.ExitStack() as stack:
        if progress is not None:
            stack.enter_context(progress)
        if output is None:
            summaries.append(run_into(sys.stdout))
        else:
            atomic_write(output, lambda tmp: _write_scores(tmp, run_into, summaries))
    summary = summaries[0]
    for line in describe_skipped(summary.skipped):
        click.echo(line, err=True)
    if summary.skipped:
        count = len(summary.skipped)
        click.echo(f"skipped {count} unreadable file{'s' if count > 1 else ''}", err=True)
    if not quiet:
        console.print(
            f"scored {summary.scored} images: {summary.anomalies} above the threshold "
            f"{detector.threshold_:.5g}" + (f"; rows in {output}" if output else "")
        )


def _write_scores(
    path: Path, run_into: Callable[[TextIO], ScoreSummary], summaries: list[ScoreSummary]
) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        summaries.append(run_into(stream))


@cli.command("export")
@click.option(
    "--detector",
    "detector_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A saved detector folder (detector.json + weights.safetensors).",
)
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
    from ae_anomaly.detector import AutoencoderDetector
    from ae_anomaly.export import export_onnx, require_onnx

    require_onnx()  # before the slow part, so a missing extra is said at once
    detector = AutoencoderDetector.load(detector_dir, device="cpu")
    path = export_onnx(detector, output or Path(detector_dir) / f"detector.{fmt}")
    click.echo(f"wrote {path}")


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
