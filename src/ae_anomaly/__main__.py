"""``python -m ae_anomaly``: the same command as the ``ae-anomaly`` script."""

from ae_anomaly.cli import main

main()
