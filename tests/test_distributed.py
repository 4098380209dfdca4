"""Many processes training one detector (nn/distributed.py), as real multi-process runs on
the CPU with gloo: the loop's arithmetic against one process, then ``torchrun`` running
``ae-anomaly run`` end to end (the same detector, repeatable, resumable after a kill)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ae_anomaly.data.sources import Dataset
from ae_anomaly.nn import distributed
from ae_anomaly.nn.loop import Task, reconstruction_loss, train
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.params import TrainingParams
from tests.helpers import CLI, cli_env, free_port

STEPS_IMAGES = 300  # 3 batches of 128, the last one 44 images


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((STEPS_IMAGES + 60, 1, 28, 28), generator=generator)
    return images[:STEPS_IMAGES], images[STEPS_IMAGES:]


def _network() -> torch.nn.Module:
    """conv-dense: batch-norm in its convolutions and in its code."""
    torch.manual_seed(0)
    return build_network("conv-dense", (1, 28, 28))


def _one_step() -> dict[str, torch.Tensor]:
    """The gradients (averaged over ranks) and buffers after one batch of 128 images."""
    network = _network()
    forward = distributed.wrapped(network)
    images = _images()[0][:128][distributed.shard(128)]
    with distributed.synced_batch_norm(network):
        reconstruction_loss("mse")(forward(images), images).backward()
    grads = {f"grad.{k}": p.grad.clone() for k, p in network.named_parameters()}
    assert all(p.grad is not None for p in network.parameters())
    return grads | {k: b.clone() for k, b in network.named_buffers()}


def _history() -> tuple[list[float], dict[str, torch.Tensor]]:
    """The losses of 2 epochs (3 batches each, the last one of 44 images) and the weights."""
    network = _network()
    train_images, val_images = _images()
    params = TrainingParams(epochs=2, batch_size=128, patience=5)
    state = train(network, train_images, val_images, params, Task(reconstruction_loss("mse")))
    losses = [loss for r in state.history for loss in (r.train_loss, r.val_loss)]
    return losses, network.state_dict()


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save((_one_step(), *_history()), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_take_the_steps_one_process_takes(tmp_path: Path) -> None:
    """DDP averages the gradients and batch-norm normalises over the whole batch: two
    ranks, each with half of every batch, compute what one process computes."""
    torch.set_num_threads(1)
    step, losses = _one_step(), _history()[0]
    mp.spawn(_rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for rank_step, rank_losses, _ in ranks:
        for key, value in step.items():
            torch.testing.assert_close(rank_step[key], value, rtol=1e-4, atol=1e-7, msg=key)
        assert rank_losses == pytest.approx(losses, rel=1e-4)
    # Both ranks end with the same network, running statistics included.
    first, second = ranks[0][2], ranks[1][2]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_alone_the_helpers_change_nothing() -> None:
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    rows = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(distributed.gathered(rows, 6), rows)
    assert distributed.summed(1.5, 2.0) == (1.5, 2.0)
    assert distributed.from_main(lambda: 7) == 7
    assert torch.equal(distributed.shard(5), torch.arange(5))


# -- torchrun, end to end --------------------------------------------------------------------

# The main job's slice, scored by mse: at 10 epochs on 3,000 digits its noise AUROC
# moves 0.03 between seeds, but only 0.001 with the thread count (float rounding), the
# scale on which two processes may differ from one.
SLICE = ["--train-limit", "3000", "--test-limit", "1000", "--score", "mse", "--quiet"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
CHECKPOINT = Path("checkpoint") / "checkpoint.safetensors"


def _torchrun(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [*TORCHRUN, "-m", "ae_anomaly", "run", *SLICE, *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _killed_after_first_epoch(out: Path, env: dict[str, str], cwd: Path) -> None:
    """A 2-process run stopped once its first checkpoint exists, as a scheduler stops a
    job: SIGTERM to torchrun, which ends its workers with SIGTERM."""
    command = [*TORCHRUN, "-m", "ae_anomaly", "run", *SLICE, "--out", str(out)]
    run = subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.DEVNULL)
    checkpoint = out.with_name(out.name + ".incomplete") / CHECKPOINT
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint was written"
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) != 0
    assert not out.exists()


def _two_nodes(out: str, env: dict[str, str], cwd: Path) -> None:
    """The multi-node form: two torchrun agents of one process each, joined by a c10d
    rendezvous (here both on this machine), as two machines would start them."""
    port = free_port()
    node = [
        *TORCHRUN[:3],
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=nodes",
    ]
    command = [*node, "-m", "ae_anomaly", "run", *SLICE, "--out", out]
    # torchrun sets one thread per process only when it starts several on a node
    agents = [
        subprocess.Popen(
            command, env={**env, "OMP_NUM_THREADS": "1"}, cwd=cwd, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for agent in agents:
            _, stderr = agent.communicate(timeout=600)
            assert agent.returncode == 0, stderr[-3000:]
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()


@pytest.fixture(scope="module")
def runs(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process, two processes twice, and two processes killed then resumed."""
    root = tmp_path_factory.mktemp("torchrun")
    env = cli_env(shared_data_dir, root / "cache")
    alone = subprocess.run(
        [*CLI, "run", *SLICE, "--out", "one"], env=env, cwd=root, capture_output=True, timeout=600
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    two = _torchrun(["--out", "two"], env, root)
    _torchrun(["--out", "again"], env, root)
    _killed_after_first_epoch(root / "resumed", env, root)
    _torchrun(["--resume", "--out", "resumed"], env, root)
    _two_nodes("nodes", env, root)
    return {"root": root, "two_stdout": two.stdout}


def _noise_auroc(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text())["by_kind"]["noise"]["auroc"])


def test_e2e_two_processes_train_the_detector_one_process_trains(runs: dict[str, Any]) -> None:
    root = runs["root"]
    assert abs(_noise_auroc(root / "two") - _noise_auroc(root / "one")) < 0.005
    # Rank 0 alone wrote: one finished folder per run, nothing else, no output from rank 1.
    assert sorted(p.name for p in root.iterdir() if p.name != "cache") == [
        "again",
        "nodes",
        "one",
        "resumed",
        "two",
    ]
    assert not (root / "two" / "checkpoint").exists()
    config = (root / "two" / "config.yaml").read_text()
    assert "threads: 1" in config  # torchrun's one thread per process, recorded


def test_e2e_two_processes_repeat_their_scores(runs: dict[str, Any]) -> None:
    root = runs["root"]
    assert (root / "two" / "scores.csv").read_bytes() == (
        root / "again" / "scores.csv"
    ).read_bytes()


def test_e2e_two_machines_joined_by_a_rendezvous_train_what_one_machine_trains(
    runs: dict[str, Any],
) -> None:
    root = runs["root"]
    assert (root / "nodes" / "scores.csv").read_bytes() == (
        root / "two" / "scores.csv"
    ).read_bytes()


def test_e2e_a_killed_two_process_run_resumes_exactly(runs: dict[str, Any]) -> None:
    root = runs["root"]
    resumed = json.loads((root / "resumed" / "metrics.json").read_text())
    assert len(resumed["training"]["history"]) == 10
    assert (root / "resumed" / "scores.csv").read_bytes() == (
        root / "two" / "scores.csv"
    ).read_bytes()


# -- scoring over several processes ------------------------------------------------------------


@pytest.fixture(scope="module")
def scoring_inputs(
    mnist: Dataset, tiny_detector_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """A saved detector, and inputs: two folders of PNGs (one file unreadable) and an array."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sharded")
    shutil.copytree(tiny_detector_dir, root / "detector")
    for folder, start in (("a", 0), ("b/deeper", 300)):
        (root / folder).mkdir(parents=True)
        for i in range(start, start + 230):
            Image.fromarray(mnist.test_images[i]).save(root / folder / f"{i:04d}.png")
    (root / "a" / "0100.png").write_bytes(b"broken")
    np.save(root / "digits.npy", mnist.test_images[600:777])
    return root, ["a", "b", "digits.npy"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_e2e_sharded_scoring_writes_the_rows_of_one_process(
    scoring_inputs: tuple[Path, list[str]], fmt: str
) -> None:
    root, inputs = scoring_inputs
    (root / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(root / "tmp")}
    flags = ["score", "--detector", "detector", *inputs, "--format", fmt, "--batch-size", "50"]
    flags += ["--on-error", "skip", "--device", "cpu"]
    alone = subprocess.run(
        [*CLI, *flags, "--output", f"one.{fmt}"], cwd=root, env=env, capture_output=True, text=True
    )
    assert alone.returncode == 0, alone.stderr
    shared = subprocess.run(
        [*TORCHRUN, "-m", "ae_anomaly", *flags, "--output", f"two.{fmt}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shared.returncode == 0, shared.stderr[-3000:]
    rows = (root / f"one.{fmt}").read_bytes()
    assert rows.count(b"\n") == 230 * 2 - 1 + 177 + (fmt == "csv")
    assert (root / f"two.{fmt}").read_bytes() == rows
    # Rank 0 alone reports, and the skipped file is named once.
    assert shared.stderr.count("skipped 1 unreadable file") == 1
    assert shared.stderr.count("a/0100.png") == 1
    # The part files are gone (torchrun keeps a folder of its own there).
    assert not list((root / "tmp").glob("ae-anomaly-parts-*"))


def test_e2e_the_benchmark_spreads_its_cells_over_the_processes(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    """Each rank trains cells of its own, alone: the cells are those of one process."""
    env = cli_env(shared_data_dir, tmp_path / "cache")
    flags = ["benchmark", "--classes", "1,7", "--seeds", "2", "--train-limit", "300"]
    flags += ["--test-limit", "300", "--epochs", "1", "--batch-size", "64", "--threads", "1"]
    alone = subprocess.run(
        [*CLI, *flags, "--out", "one"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    shared = subprocess.run(
        [*TORCHRUN, "-m", "ae_anomaly", *flags, "--out", "two"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shared.returncode == 0, shared.stderr[-3000:]
    one, two = (json.loads((tmp_path / r / "benchmark.json").read_text()) for r in ("one", "two"))
    strip = ("train_seconds", "score_seconds")
    assert [{k: v for k, v in c.items() if k not in strip} for c in two["cells"]] == [
        {k: v for k, v in c.items() if k not in strip} for c in one["cells"]
    ]
    assert shared.stdout.count("Published mean AUROC") == 1  # rank 0 alone reports
