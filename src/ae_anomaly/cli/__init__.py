"""The ``ae-anomaly`` command line: thin commands that parse, build a config, call the API, print.

One module per group of commands; importing them registers them on the group.
Problems a user can fix end in one sentence and exit status 2.
"""

from ae_anomaly.cli import catalogue, classify, deploy, experiments, run, serve
from ae_anomaly.cli.app import cli, main

__all__ = ["catalogue", "classify", "cli", "deploy", "experiments", "main", "run", "serve"]
