"""The ``ae-anomaly`` command group: a UserError anywhere below becomes one sentence and
exit 2, and so does an error of the file system (a full disk, a read-only folder, a
folder where a file was to be written), which the user fixes, not the code."""

from __future__ import annotations

from typing import Any

import click

from ae_anomaly import __version__
from ae_anomaly.errors import UserError

EXIT_USER_ERROR = 2


class _UserErrorExit(click.ClickException):
    """Click prints it as ``Error: <sentence>`` and exits with status 2."""

    exit_code = EXIT_USER_ERROR


class _Group(click.Group):
    """Turns a UserError or a file-system error anywhere below into click's one-line error
    with exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _UserErrorExit(str(exc)) from None
        except OSError as exc:
            raise _UserErrorExit(file_system_sentence(exc)) from None


def file_system_sentence(exc: OSError) -> str:
    """One sentence for an OSError: what failed, on which file."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot read or write{where}: {exc.strerror or exc}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ae-anomaly")
def cli() -> None:
    """Anomaly detection in images with autoencoders."""


def main() -> None:
    cli(prog_name="ae-anomaly")
