"""The C heap keeps freed activations for the next batch (nn/heap.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Page faults over three passes of 512 digits after a first one, in a fresh process.
_FAULTS = """
import resource, sys, torch
from ae_anomaly.nn import inference
from ae_anomaly.nn.models import build_model
if sys.argv[1] == "default":
    inference.keep_freed_memory = lambda: False
torch.set_num_threads(1)
model = build_model("conv-dense", (1, 28, 28))
images = torch.rand(1536, 1, 28, 28)
cpu = torch.device("cpu")
list(inference.batched_outputs(model, images, cpu, 512))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
list(inference.batched_outputs(model, images, cpu, 512))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _faults_per_pass(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux"
    or platform.libc_ver()[0] != "glibc"
    or bool(os.environ.get("LD_PRELOAD")),  # another malloc
    reason="glibc's malloc only",
)
def test_scoring_batch_after_batch_faults_no_pages_in() -> None:
    # glibc's defaults hand the activations' pages back and fault them in again: about
    # 16,000 faults a pass measured; kept in the heap, none. (Huge pages would make
    # fewer faults of both kinds, so the test compares the two.)
    default, kept = _faults_per_pass("default"), _faults_per_pass("kept")
    assert default > 100
    assert kept < default / 20


def test_the_setting_can_be_left_alone() -> None:
    code = "from ae_anomaly.nn.heap import keep_freed_memory; print(keep_freed_memory())"
    env = {**os.environ, "AE_ANOMALY_KEEP_FREED_MEMORY": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
