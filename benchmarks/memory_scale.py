"""Peak memory of training and scoring as the image folder grows (a script, not a test).

    python benchmarks/memory_scale.py WORK_DIR [--sizes 2000 20000 100000]

Makes folders of colour 64x64 PNGs (Fashion-MNIST images, enlarged and tinted; kept in
WORK_DIR for the next time), then for each size measures the peak resident memory of

- ``ae-anomaly run --dataset DIR --epochs 1`` (decode into the image cache, train one
  epoch, rank every training image, write the report), from an empty cache;
- the same run again, from the cache;
- ``ae-anomaly score`` of every image with the detector it saved.

Each command runs in a process of its own, whose peak (ru_maxrss) is what is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 64


def make_folder(folder: Path, n: int) -> None:
    """``n`` colour 64x64 PNGs in folder/train (made once)."""
    train = folder / "train"
    if train.is_dir() and len(list(train.iterdir())) == n:
        return
    import torch

    from ae_anomaly.data.sources import load_dataset

    fashion = load_dataset("fashion-mnist")
    shutil.rmtree(folder, ignore_errors=True)
    train.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        picked = fashion.train_images[rng.integers(0, len(fashion.train_images), count)]
        grown = torch.nn.functional.interpolate(
            torch.from_numpy(picked[:, None].astype(np.float32)), size=(SIDE, SIDE), mode="bilinear"
        ).numpy()
        tint = rng.uniform(0.4, 1.0, (count, 3, 1, 1)).astype(np.float32)
        pixels = np.clip(grown * tint, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for i, image in enumerate(pixels):
            Image.fromarray(image).save(train / f"{start + i:06d}.png")


def peak_mib(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak resident MiB, seconds) of ``command``, run in a fresh measuring process."""
    measure = (
        "import resource, subprocess, sys, json; "
        "code = subprocess.run(json.loads(sys.argv[1])).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if code == 0 else -1)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", measure, json.dumps(command)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    kib = int(done.stdout.strip().splitlines()[-1])
    if kib < 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return kib / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    args = parser.parse_args()
    cli = [sys.executable, "-m", "ae_anomaly"]
    for n in args.sizes:
        folder = args.work / f"colour-{n}"
        make_folder(folder, n)
        cache = args.work / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "AE_ANOMALY_CACHE": str(cache)}
        out = args.work / f"run-{n}"
        run = [*cli, "run", "--dataset", str(folder), "--epochs", "1", "--quiet"]
        first = peak_mib([*run, "--out", str(out), "--overwrite"], env)
        again = peak_mib([*run, "--out", str(out), "--overwrite"], env)
        scores = args.work / f"scores-{n}.csv"
        score = [*cli, "score", "--detector", str(out / "detector"), str(folder / "train")]
        scored = peak_mib([*score, "--output", str(scores), "--quiet"], env)
        print(
            f"{n:>7} images: run {first[0]:.0f} MiB ({first[1]:.0f} s, decoding), "
            f"run again {again[0]:.0f} MiB ({again[1]:.0f} s, from the cache), "
            f"score {scored[0]:.0f} MiB ({scored[1]:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
