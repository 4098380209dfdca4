"""Fixtures shared across the test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ae_anomaly.data import sources
from ae_anomaly.data.sources import Dataset
from ae_anomaly.nn.device import torch_threads


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding the real datasets (mnist/, fashion-mnist/), as IDX .gz files.

    ``$AE_ANOMALY_DATA`` wins when set; otherwise /work/shared/data next to the
    repository. Tests that need it are skipped when it is absent.
    """
    env = os.environ.get(sources.ENV_DATA)
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (root / "mnist").is_dir():
        pytest.skip(f"real datasets not found under {root}")
    return root


@pytest.fixture
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Dataset lookup that sees none of the machine's data: returns the (empty) cache folder.

    Unsets ``$AE_ANOMALY_DATA``, points ``$AE_ANOMALY_CACHE`` and the Debian
    folder into ``tmp_path``, and keeps requests to 127.0.0.1 off any proxy.
    """
    cache = tmp_path / "cache"
    monkeypatch.delenv(sources.ENV_DATA, raising=False)
    monkeypatch.setenv(sources.ENV_CACHE, str(cache))
    monkeypatch.setattr(sources, "DEBIAN_ROOT", tmp_path / "debian")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return cache


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded in the tests, then restore the previous setting.

    The tensors here are small and gain little from threads, while on a CPU shared
    with other jobs spin-waiting OpenMP threads make training several times slower
    and its timing erratic.
    """
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def mnist(shared_data_dir: Path) -> Dataset:
    """Real MNIST, loaded once for the whole session."""
    return sources.load_dataset("mnist", data_dir=shared_data_dir, download=False)


@pytest.fixture(scope="session")
def fashion(shared_data_dir: Path) -> Dataset:
    """Real Fashion-MNIST, loaded once for the whole session."""
    if not (shared_data_dir / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not found under {shared_data_dir}")
    return sources.load_dataset("fashion-mnist", data_dir=shared_data_dir, download=False)


@pytest.fixture(scope="session")
def tiny_detector_dir(mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved detector (small conv-bn, mse) trained one epoch on 300 digits, for tests
    of what takes a saved one: the service, its page, sharded scoring. Read only."""
    import warnings

    from ae_anomaly import AutoencoderDetector

    detector = AutoencoderDetector(
        model="conv-bn", score="mse", model_args={"channels": [4, 8]}, epochs=1, device="cpu"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(mnist.train_images[:300])
    return detector.save(tmp_path_factory.mktemp("tiny") / "detector")
