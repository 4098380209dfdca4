"""``ae-anomaly models`` and ``ae-anomaly datasets``: what is available here."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ae_anomaly.cli.app import cli


@cli.command()
def models() -> None:
    """List the architectures: name, parameters for 28x28 grey images, description."""
    from ae_anomaly.nn.models import MODELS, build_model, parameter_count

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
