"""Flags made from the config fields, the options every experiment shares, and where output goes.

Every config field is also a flag named after it (``--epochs 5``); values
are read as YAML, so ``--noise-std 0.1,0.2`` and ``--mix "{clean: 0.5, noise: 0.5}"``
work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import click
import yaml

from ae_anomaly.config import leaf_fields
from ae_anomaly.errors import UserError
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder


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


# The saved detector a command uses (score, export, serve).
detector_option = click.option(
    "--detector",
    "detector_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A saved detector folder (detector.json + weights.safetensors); score also "
    "takes the .onnx file export wrote.",
)


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Config file, output folder, --overwrite and --quiet."""
    options = [
        click.option(
            "--config", "config_path", type=click.Path(path_type=Path), help="YAML config file."
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            callback=_named_folder,
            help="Output folder [default: runs/<command>-<dataset>-<time>].",
        ),
        click.option("--overwrite", is_flag=True, help="Replace an existing output folder."),
        click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _named_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--out '' would mean the current folder, whose files a run must not mix with its own."""
    if value is not None and str(value).strip() in ("", "."):
        raise UserError("--out must name a folder for the results, not the current folder")
    return value


def default_out(kind: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{dataset}-{stamp}"


def resume_config(out: Path | None, config_path: Path | None) -> Path:
    """The config a resumed run starts from: the given file, else the run's own."""
    if out is None:
        raise UserError("--resume needs --out, the folder of the interrupted run")
    folder = RunFolder(out)
    folder.check(overwrite=False, resume=True)  # says why, if there is nothing to resume
    return config_path or folder.work / CONFIG_FILE
