"""The speed suite: training, scoring, start-up and memory, each against a reference
measured in the same run (a script, not a test; timings on a shared machine are noisy,
ratios much less so).

    python benchmarks/speed.py [--threads 1] [--only training scoring startup]

- **training**: images/s of the package's training loop (conv-dense, batch 128, MSE,
  Adam) against the plain PyTorch loop a tutorial writes (DataLoader over a
  TensorDataset), on the same MNIST digits; and the FLOP-based ceiling for reference
  (the model's multiply-adds at the rate this CPU multiplies large matrices).
- **scoring**: ``AutoencoderDetector.decision_function`` on the 10,000 MNIST test digits,
  uncompiled and after ``compile()`` (with the seconds its first call took), against
  ONNX Runtime running the detector's exported graph on the same thread count (its
  best of batches 256 and 1,024), for three scores; the largest difference in score
  from the uncompiled one; and the peak memory of scoring in a process of its own.
- **startup**: seconds to the end of ``ae-anomaly --help`` and of ``ae-anomaly score``
  of one image, with the detector folder and with its exported ONNX model (which never
  imports torch), against ``python -c "import torch"`` (the floor for any command that
  runs a PyTorch network).

Needs the MNIST files (AE_ANOMALY_DATA) and the ``onnx`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

SCORES = ("mse", "ssim+latent", "ssim+blur-mse+latent+knn")
TRAIN_IMAGES = 6000
BATCH = 128


def best_seconds(work: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``work`` (after one warm-up run)."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def digits() -> tuple[np.ndarray, np.ndarray]:
    from ae_anomaly.data.sources import load_dataset

    mnist = load_dataset("mnist")
    return mnist.train_images[:TRAIN_IMAGES], mnist.test_images


# -- training ----------------------------------------------------------------------------


def tutorial_epoch(model: nn.Module, images: torch.Tensor) -> None:
    """One epoch as a PyTorch tutorial writes it."""
    from torch.utils.data import DataLoader, TensorDataset

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=True)
    model.train()
    for (batch,) in loader:
        loss = nn.functional.mse_loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def package_epoch(model: nn.Module, images: torch.Tensor) -> None:
    """One epoch of the package's loop (validation on 64 images, so training dominates)."""
    from ae_anomaly.nn.loop import Task, reconstruction_loss, train
    from ae_anomaly.params import TrainingParams

    params = TrainingParams(epochs=1, batch_size=BATCH, patience=1)
    train(model, images, images[:64], params, Task(loss=reconstruction_loss("mse")))


def matmul_rate() -> float:
    """Multiply-adds per second of a large float32 matrix product on this CPU."""
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    return 1024**3 / best_seconds(lambda: a @ b, 5)


def multiply_adds(model: nn.Module, shape: tuple[int, ...]) -> int:
    """The forward pass's multiply-adds per image (convolutions and linear layers)."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output[0].numel() * module.in_channels * module.weight[0, 0].numel()
        elif isinstance(module, nn.ConvTranspose2d):
            total += inputs[0][0].numel() * module.weight[0].numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.rand(1, *shape))
    for hook in hooks:
        hook.remove()
    return total


def training(train_images: np.ndarray) -> None:
    from ae_anomaly.nn.models import build_model

    images = torch.from_numpy(train_images[:, None]).float() / 255
    shape = tuple(images.shape[1:])
    works = {}
    for name, epoch in [("tutorial loop", tutorial_epoch), ("package loop", package_epoch)]:
        torch.manual_seed(0)
        model = build_model("conv-dense", shape)
        works[name] = lambda m=model, e=epoch: e(m, images)
    rates = {name: len(images) / s for name, s in interleaved(works, rounds=2).items()}
    flops = multiply_adds(build_model("conv-dense", shape), shape)
    # forward and backward: about three times the forward pass's multiply-adds
    ceiling = matmul_rate() / (3 * flops)
    print("\n## Training (conv-dense, MNIST, batch 128)")
    print(f"tutorial loop: {rates['tutorial loop']:,.0f} img/s")
    print(f"package loop:  {rates['package loop']:,.0f} img/s")
    print(f"ratio package / tutorial: {rates['package loop'] / rates['tutorial loop']:.2f}")
    print(
        f"ceiling: {flops / 1e6:.2f} M multiply-adds per image forward; at this CPU's "
        f"{matmul_rate() / 1e9:.1f} G multiply-adds/s, {ceiling:,.0f} img/s for training"
    )


# -- scoring -----------------------------------------------------------------------------


def onnx_runner(path: Path, images: np.ndarray, threads: int) -> Callable[[int], np.ndarray]:
    """A function scoring ``images`` with ONNX Runtime in batches of its argument."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    floats = images[:, None].astype(np.float32) / 255

    def run(batch: int) -> np.ndarray:
        parts = [
            session.run(["score"], {"images": floats[s : s + batch]})[0]
            for s in range(0, len(floats), batch)
        ]
        return np.concatenate(parts)

    return run


def interleaved(works: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """The fastest of ``rounds`` runs of each work, taking turns: this machine's speed
    drifts by up to 2x within minutes, and alternating exposes every contender to it."""
    best = {name: float("inf") for name in works}
    for work in works.values():
        work()  # warm-up
    for _ in range(rounds):
        for name, work in works.items():
            started = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def scoring(train_images: np.ndarray, test_images: np.ndarray, threads: int, work: Path) -> None:
    from ae_anomaly import AutoencoderDetector
    from ae_anomaly.deploy.onnx import export_onnx

    # Compiles from scratch: no code generated by an earlier run is reused.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor-cache")
    print("\n## Scoring (conv-dense, 10,000 MNIST test digits)")
    print(
        "| score | PyTorch img/s | compiled img/s (compile s) | ONNX Runtime img/s "
        "| PyTorch / ONNX Runtime | compiled / ONNX Runtime | max diff | compiled max diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for score in SCORES:
        detector = AutoencoderDetector(model="conv-dense", score=score, epochs=1, seed=0)
        detector.fit(train_images)
        detector.save(work / score)
        compiled = AutoencoderDetector.load(work / score, device="cpu").compile()
        started = time.perf_counter()
        compiled.decision_function(test_images)
        compile_seconds = time.perf_counter() - started
        onnx = onnx_runner(export_onnx(detector, work / f"{score}.onnx"), test_images, threads)
        seconds = interleaved(
            {
                "ours": lambda d=detector: d.decision_function(test_images),
                "compiled": lambda d=compiled: d.decision_function(test_images),
                "onnx 256": lambda o=onnx: o(256),
                "onnx 1024": lambda o=onnx: o(1024),
            }
        )
        rate = {name: len(test_images) / s for name, s in seconds.items()}
        theirs = max(rate["onnx 256"], rate["onnx 1024"])
        reference = detector.decision_function(test_images)
        diff = np.abs(reference - onnx(1024)).max()
        compiled_diff = np.abs(reference - compiled.decision_function(test_images)).max()
        print(
            f"| {score} | {rate['ours']:,.0f} | {rate['compiled']:,.0f} ({compile_seconds:.0f}) "
            f"| {theirs:,.0f} | {rate['ours'] / theirs:.2f} | {rate['compiled'] / theirs:.2f} "
            f"| {diff:.1e} | {compiled_diff:.1e} |"
        )
    peak = peak_mib(["score", "--detector", str(work / "mse"), str(work / "digits.npy")], work)
    print(f"peak memory of `ae-anomaly score` of the 10,000 digits (mse): {peak:.0f} MiB")


def peak_mib(arguments: list[str], work: Path) -> float:
    measure = (
        "import resource, subprocess, sys, json; "
        "subprocess.run(json.loads(sys.argv[1]), check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [sys.executable, "-m", "ae_anomaly", *arguments, "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", measure, json.dumps(command)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return int(done.stdout) / 1024


# -- start-up ----------------------------------------------------------------------------


def wall_seconds(command: list[str], repeats: int = 5) -> float:
    """Median wall time of ``command``, run ``repeats`` times."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def startup(work: Path) -> None:
    from PIL import Image

    from ae_anomaly import AutoencoderDetector
    from ae_anomaly.deploy.onnx import export_onnx

    detector_dir = work / "mse"
    if not detector_dir.is_dir():
        train_images, _ = digits()
        AutoencoderDetector(model="conv-dense", score="mse", epochs=1).fit(train_images).save(
            detector_dir
        )
    model = export_onnx(AutoencoderDetector.load(detector_dir), work / "mse.onnx")
    image = work / "one.png"
    Image.fromarray(digits()[1][0]).save(image)
    cli = [sys.executable, "-m", "ae_anomaly"]
    rows = [
        ('python -c "import torch"', [sys.executable, "-c", "import torch"]),
        ("ae-anomaly --help", [*cli, "--help"]),
        (
            "ae-anomaly score (one image, the detector folder)",
            [*cli, "score", "--detector", str(detector_dir), str(image), "--quiet"],
        ),
        (
            "ae-anomaly score (one image, its ONNX model)",
            [*cli, "score", "--detector", str(model), str(image), "--quiet"],
        ),
    ]
    print("\n## Start-up (median of 5, seconds to the end of the command)")
    for name, command in rows:
        print(f"{name}: {wall_seconds(command):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", default=["training", "scoring", "startup"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the commands started
    warnings.simplefilter("ignore")
    print(
        f"# Speed suite: torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs"
    )
    train_images, test_images = digits()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        np.save(work / "digits.npy", test_images)
        if "training" in args.only:
            training(train_images)
        if "scoring" in args.only:
            scoring(train_images, test_images, args.threads, work)
        if "startup" in args.only:
            startup(work)


if __name__ == "__main__":
    main()
