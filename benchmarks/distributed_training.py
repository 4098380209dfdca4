"""Training throughput: N processes x 1 thread (torchrun, DDP) against 1 process x N threads.

    python benchmarks/distributed_training.py [--processes 2] -- RUN FLAGS...

Runs ``ae-anomaly run RUN FLAGS`` both ways on the same machine, one after the other,
and prints the seconds per epoch of each (from the runs' own per-epoch timings, so
start-up and evaluation are left out), training images per second when
``--train-images`` says how many there are, and the speed ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def epoch_seconds(out: Path) -> float:
    """Mean seconds per training epoch (validation included), from the run's history."""
    history = json.loads((out / "metrics.json").read_text())["training"]["history"]
    return sum(epoch["seconds"] for epoch in history) / len(history)


def run(command: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--train-images", type=int, help="training images per epoch")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="after --: flags of run")
    args = parser.parse_args()
    flags = [f for f in args.flags if f != "--"]
    n = args.processes
    with tempfile.TemporaryDirectory() as tmp:
        alone, spread = Path(tmp, "alone"), Path(tmp, "spread")
        cli = [sys.executable, "-m", "ae_anomaly", "run", *flags, "--quiet"]
        run([*cli, "--threads", str(n), "--out", str(alone)], n)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        torchrun += [f"--nproc-per-node={n}", "-m", "ae_anomaly", "run", *flags, "--quiet"]
        run([*torchrun, "--out", str(spread)], 1)
        one, many = epoch_seconds(alone), epoch_seconds(spread)
    for name, seconds in ((f"1 process x {n} threads", one), (f"{n} processes x 1 thread", many)):
        rate = f", {args.train_images / seconds:,.0f} images/s" if args.train_images else ""
        print(f"{name}: {seconds:.2f} s per epoch{rate}")
    print(f"speed of {n} processes / 1 process: {one / many:.2f}")


if __name__ == "__main__":
    main()
