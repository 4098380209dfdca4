"""Tests for ae_anomaly.data.sources: registry, search order, verification and download.

Every test runs with an isolated cache and Debian folder (see ``isolated_data_env``);
downloads go only to a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ae_anomaly.data import sources
from ae_anomaly.data.download import download_dataset
from ae_anomaly.data.sources import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    dataset_names,
    dataset_status,
    get_spec,
    load_dataset,
    locate_dataset,
    search_roots,
)
from ae_anomaly.errors import UserError

BASES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


@pytest.fixture(autouse=True)
def _isolated(shared_data_dir: Path, isolated_data_env: Path) -> None:
    """Every test here sees only the roots it builds itself."""


def idx_bytes(array: np.ndarray) -> bytes:
    """A valid IDX encoding of a uint8 array."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_root(root: Path, shared: Path, replace: dict[str, bytes] | None = None) -> Path:
    """``root/mnist/`` holding links to the real files, except those named in ``replace``
    (file name, ``<base>`` or ``<base>.gz``, to content), which are written instead."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    replace = replace or {}
    for name, data in replace.items():
        (folder / name).write_bytes(data)
    for base in BASES:
        if f"{base}.gz" not in replace and base not in replace:
            (folder / f"{base}.gz").symlink_to(shared / "mnist" / f"{base}.gz")
    return root


def real_bytes(shared: Path, base: str, name: str = "mnist") -> bytes:
    """The decompressed content of a real file."""
    return gzip.decompress((shared / name / f"{base}.gz").read_bytes())


# --- registry ---------------------------------------------------------------------------


def test_dataset_names() -> None:
    assert dataset_names() == ["mnist", "fashion-mnist"]


def test_unknown_dataset() -> None:
    with pytest.raises(
        UserError, match=r"^unknown dataset 'x'; choose one of: mnist, fashion-mnist$"
    ):
        get_spec("x")
    with pytest.raises(UserError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_specs() -> None:
    mnist, fashion = get_spec("mnist"), get_spec("fashion-mnist")
    assert mnist.class_names == tuple("0123456789")
    assert fashion.class_names[0] == "T-shirt/top"
    assert fashion.class_names[9] == "Ankle boot"
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert [f.base for f in fashion.files] == list(BASES)
    assert [f.ndim for f in mnist.files] == [3, 1, 3, 1]


# --- where to look ----------------------------------------------------------------------


def test_search_roots_order(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "dir").mkdir()
    monkeypatch.setenv(sources.ENV_DATA, str(tmp_path / "env"))
    roots = search_roots(tmp_path / "dir")
    assert roots == [
        ("--data-dir", tmp_path / "dir"),
        ("AE_ANOMALY_DATA", tmp_path / "env"),
        ("cache", isolated_data_env),
        ("debian", tmp_path / "debian"),
    ]


def test_search_roots_defaults(tmp_path: Path, isolated_data_env: Path) -> None:
    assert search_roots() == [("cache", isolated_data_env), ("debian", tmp_path / "debian")]


def test_search_roots_drop_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "same").mkdir()
    monkeypatch.setenv(sources.ENV_DATA, str(tmp_path / "same"))
    labels = [label for label, _ in search_roots(tmp_path / "same")]
    assert labels == ["--data-dir", "cache", "debian"]


def test_resolution_order(
    tmp_path: Path, shared_data_dir: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = {
        "--data-dir": tmp_path / "dir",
        "AE_ANOMALY_DATA": tmp_path / "env",
        "cache": isolated_data_env,
        "debian": tmp_path / "debian",
    }
    for root in roots.values():
        make_root(root, shared_data_dir)
    monkeypatch.setenv(sources.ENV_DATA, str(roots["AE_ANOMALY_DATA"]))
    # Remove the winner each round: the next root in line must take over.
    for label, root in roots.items():
        location = locate_dataset("mnist", roots["--data-dir"])
        assert location is not None
        assert (location.source, location.folder) == (label, root / "mnist")
        shutil.rmtree(root / "mnist")
    assert locate_dataset("mnist", roots["--data-dir"]) is None


def test_missing_and_incomplete_roots_are_skipped(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incomplete = make_root(tmp_path / "incomplete", shared_data_dir)
    (incomplete / "mnist" / f"{TEST_LABELS}.gz").unlink()
    monkeypatch.setenv(sources.ENV_DATA, str(incomplete))
    make_root(tmp_path / "debian", shared_data_dir)
    (tmp_path / "empty").mkdir()
    dataset = load_dataset("mnist", tmp_path / "empty", download=False)
    assert dataset.location == tmp_path / "debian" / "mnist"


@pytest.mark.parametrize("named_by", ["--data-dir", "AE_ANOMALY_DATA"])
def test_explicit_data_folder_must_exist(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    missing = tmp_path / "typo"
    if named_by == "AE_ANOMALY_DATA":
        monkeypatch.setenv(sources.ENV_DATA, str(missing))
    data_dir = missing if named_by == "--data-dir" else None
    with pytest.raises(UserError) as info:
        load_dataset("mnist", data_dir, download=False)
    assert str(info.value) == f"the data folder {missing} given by {named_by} does not exist"


def test_not_found_without_download(tmp_path: Path, isolated_data_env: Path) -> None:
    (tmp_path / "dir" / "mnist").mkdir(parents=True)
    with pytest.raises(UserError) as info:
        load_dataset("mnist", tmp_path / "dir", download=False)
    message = str(info.value)
    assert message.startswith("dataset 'mnist' not found in ")
    assert f"{tmp_path / 'dir' / 'mnist'} (incomplete, no {TRAIN_IMAGES})" in message
    assert str(isolated_data_env / "mnist") in message
    assert str(tmp_path / "debian" / "mnist") in message
    assert "set AE_ANOMALY_DATA to a folder holding mnist/" in message


# --- loading ----------------------------------------------------------------------------


def test_load_real_mnist(shared_data_dir: Path) -> None:
    dataset = load_dataset("mnist", shared_data_dir, download=False)
    assert dataset.name == "mnist"
    assert dataset.location == shared_data_dir / "mnist"
    assert dataset.train_images.shape == (60000, 28, 28)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.shape == (60000,)
    assert dataset.train_labels.dtype == np.int64
    assert dataset.test_labels.dtype == np.int64
    assert set(np.unique(dataset.train_labels)) == set(range(10))
    assert dataset.class_names == tuple("0123456789")
    assert dataset.train_images.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert not dataset.train_images.flags.writeable
    assert not dataset.train_labels.flags.writeable


def test_load_real_fashion_mnist_from_env(
    shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sources.ENV_DATA, str(shared_data_dir))
    dataset = load_dataset("fashion-mnist", download=False)
    assert dataset.train_images.shape == (60000, 28, 28)
    assert dataset.class_names[9] == "Ankle boot"
    assert dataset.train_images.mean() / 255 == pytest.approx(0.2860, abs=1e-4)


def test_raw_files_are_accepted_and_gz_preferred(tmp_path: Path, shared_data_dir: Path) -> None:
    root = make_root(
        tmp_path,
        shared_data_dir,
        {
            TEST_IMAGES: real_bytes(shared_data_dir, TEST_IMAGES),
            TEST_LABELS: real_bytes(shared_data_dir, TEST_LABELS),
        },
    )
    # A bad raw copy next to a good .gz must be ignored.
    (root / "mnist" / TRAIN_LABELS).write_bytes(b"junk")
    dataset = load_dataset("mnist", root, download=False)
    assert dataset.test_images.shape == (10000, 28, 28)


# --- a complete but broken root is an error, not skipped -------------------------------


def _load_error(root: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The error from loading ``root`` while a good copy waits in the next root."""
    monkeypatch.setenv(sources.ENV_DATA, str(shared))
    with pytest.raises(UserError) as info:
        load_dataset("mnist", root, download=False)
    return str(info.value)


def test_truncated_gzip_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = (shared_data_dir / "mnist" / f"{TEST_IMAGES}.gz").read_bytes()
    root = make_root(tmp_path, shared_data_dir, {f"{TEST_IMAGES}.gz": content[:50000]})
    message = _load_error(root, shared_data_dir, monkeypatch)
    path = root / "mnist" / f"{TEST_IMAGES}.gz"
    assert message.startswith(f"{path} is a truncated gzip file")
    assert message.endswith("delete it to have it downloaded again")


def test_corrupt_gzip_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = bytearray((shared_data_dir / "mnist" / f"{TEST_LABELS}.gz").read_bytes())
    content[2000:2010] = bytes(10)
    root = make_root(tmp_path, shared_data_dir, {f"{TEST_LABELS}.gz": bytes(content)})
    message = _load_error(root, shared_data_dir, monkeypatch)
    assert f"{TEST_LABELS}.gz is a corrupt gzip file" in message


def test_wrong_magic_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = (shared_data_dir / "mnist" / f"{TEST_IMAGES}.gz").read_bytes()
    root = make_root(tmp_path, shared_data_dir, {f"{TEST_LABELS}.gz": images})
    message = _load_error(root, shared_data_dir, monkeypatch)
    assert f"{TEST_LABELS}.gz is not an IDX label file (magic number 0x00000803" in message


def test_data_length_mismatch_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = real_bytes(shared_data_dir, TEST_LABELS)[:-1]
    root = make_root(tmp_path, shared_data_dir, {TEST_LABELS: short})
    message = _load_error(root, shared_data_dir, monkeypatch)
    assert (
        f"{TEST_LABELS} holds 9999 bytes of data but its IDX header declares shape 10000" in message
    )


def test_checksum_mismatch_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = np.frombuffer(real_bytes(shared_data_dir, TEST_LABELS), np.uint8, offset=8)
    shuffled = idx_bytes((labels + 1) % 10)  # valid IDX, right length, wrong content
    root = make_root(tmp_path, shared_data_dir, {f"{TEST_LABELS}.gz": gzip.compress(shuffled)})
    message = _load_error(root, shared_data_dir, monkeypatch)
    path = root / "mnist" / f"{TEST_LABELS}.gz"
    assert message.startswith(f"{path} is not the published mnist {TEST_LABELS} file")
    assert get_spec("mnist").test_labels.sha256 in message
    assert message.endswith("delete it to have it downloaded again")


def test_label_count_mismatch_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = np.frombuffer(real_bytes(shared_data_dir, TEST_LABELS), np.uint8, offset=8)
    root = make_root(tmp_path, shared_data_dir, {TEST_LABELS: idx_bytes(labels[:-1])})
    message = _load_error(root, shared_data_dir, monkeypatch)
    assert f"the files in {root / 'mnist'} do not belong together" in message
    assert f"{TEST_IMAGES}.gz holds 10000 images but {TEST_LABELS} holds 9999 labels" in message


def test_image_size_mismatch_is_an_error(
    tmp_path: Path, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(
        tmp_path,
        shared_data_dir,
        {
            TEST_IMAGES: idx_bytes(np.zeros((3, 14, 14), np.uint8)),
            TEST_LABELS: idx_bytes(np.zeros(3, np.uint8)),
        },
    )
    message = _load_error(root, shared_data_dir, monkeypatch)
    assert f"{TRAIN_IMAGES}.gz holds 28x28 images but {TEST_IMAGES} holds 14x14 images" in message


# --- status -----------------------------------------------------------------------------


def test_dataset_status(tmp_path: Path, shared_data_dir: Path) -> None:
    root = make_root(tmp_path, shared_data_dir)
    mnist, fashion = dataset_status(root)
    assert (mnist.name, mnist.source, mnist.location, mnist.verdict) == (
        "mnist",
        "--data-dir",
        root / "mnist",
        "verified",
    )
    assert mnist.ok
    assert (fashion.name, fashion.source, fashion.location, fashion.verdict) == (
        "fashion-mnist",
        None,
        None,
        "not found",
    )
    assert not fashion.ok


def test_dataset_status_reports_a_broken_file(tmp_path: Path, shared_data_dir: Path) -> None:
    root = make_root(tmp_path, shared_data_dir, {f"{TEST_LABELS}.gz": b"\x1f\x8bjunk"})
    mnist = dataset_status(root)[0]
    assert not mnist.ok
    assert mnist.verdict.startswith(f"{root / 'mnist' / TEST_LABELS}.gz is a")


# --- download ---------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Iterator[str]:
    """Base URL of a local server: good/ (real MNIST), corrupt/ and truncated/ mirrors."""
    www = tmp_path_factory.mktemp("www")
    shutil.copytree(shared_data_dir / "mnist", www / "good")
    (www / "corrupt").mkdir()
    tiny = gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    (www / "corrupt" / f"{TRAIN_IMAGES}.gz").write_bytes(tiny)
    (www / "truncated").mkdir()
    (www / "truncated" / f"{TRAIN_IMAGES}.gz").write_bytes(tiny[:-10])
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    """A URL on a local port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_falls_back_to_second_mirror_then_loads_from_cache(
    mirror: str, isolated_data_env: Path, shared_data_dir: Path, dead_url: str
) -> None:
    dataset = load_dataset("mnist", mirrors=[f"{mirror}/missing/", f"{mirror}/good"])
    folder = isolated_data_env / "mnist"
    assert dataset.location == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{b}.gz" for b in BASES)
    for base in BASES:
        served = (shared_data_dir / "mnist" / f"{base}.gz").read_bytes()
        assert (folder / f"{base}.gz").read_bytes() == served
    # Now found in the cache: no mirror is needed any more.
    location = locate_dataset("mnist")
    assert location is not None
    assert location.source == "cache"
    again = load_dataset("mnist", mirrors=[dead_url])
    np.testing.assert_array_equal(again.test_labels, dataset.test_labels)


def test_download_keeps_verified_files(
    mirror: str, isolated_data_env: Path, shared_data_dir: Path, dead_url: str
) -> None:
    make_root(isolated_data_env, shared_data_dir)
    (isolated_data_env / "mnist" / f"{TEST_LABELS}.gz").unlink()
    folder = isolated_data_env / "mnist"
    # Only the missing file is fetched (the dead first mirror is passed over for it);
    # the others stay the links make_root made.
    assert download_dataset("mnist", [dead_url, f"{mirror}/good/"]) == folder
    assert (folder / f"{TEST_LABELS}.gz").is_file()
    assert not (folder / f"{TEST_LABELS}.gz").is_symlink()
    assert all((folder / f"{base}.gz").is_symlink() for base in BASES if base != TEST_LABELS)
    assert download_dataset("mnist", [dead_url]) == folder


def test_all_mirrors_fail(mirror: str, isolated_data_env: Path, dead_url: str) -> None:
    missing = f"{mirror}/missing/"
    with pytest.raises(UserError) as info:
        download_dataset("mnist", [missing, dead_url])
    message = str(info.value)
    assert message.startswith("could not download mnist: tried ")
    assert f"{missing}{TRAIN_IMAGES}.gz (HTTP 404 File not found)" in message
    assert f"{dead_url}{TRAIN_IMAGES}.gz (" in message
    assert "refused" in message.lower()
    assert not (isolated_data_env / "mnist").exists()


def test_load_reports_where_it_looked_and_why_download_failed(
    tmp_path: Path, isolated_data_env: Path, dead_url: str
) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError) as info:
        load_dataset("mnist", tmp_path / "dir", mirrors=[dead_url])
    message = str(info.value)
    assert message.startswith(f"dataset 'mnist' not found in {tmp_path / 'dir' / 'mnist'}, ")
    assert ", and could not be downloaded (could not download mnist: tried " in message
    assert message.endswith("pass --data-dir or set AE_ANOMALY_DATA to a folder holding mnist/")


def test_mirror_that_is_not_a_url(isolated_data_env: Path) -> None:
    with pytest.raises(UserError, match=r"tried not-a-url/train-images-idx3-ubyte\.gz \(unknown"):
        download_dataset("mnist", ["not-a-url"])


def test_download_without_mirrors(isolated_data_env: Path) -> None:
    with pytest.raises(UserError, match="could not download mnist: no mirrors to try"):
        download_dataset("mnist", [])


@pytest.mark.parametrize(
    ("folder", "reason"), [("corrupt", "checksum mismatch"), ("truncated", "truncated gzip")]
)
def test_bad_mirror_file_is_never_stored(
    mirror: str, isolated_data_env: Path, folder: str, reason: str
) -> None:
    with pytest.raises(UserError, match=f"could not download mnist: tried .*{reason}"):
        download_dataset("mnist", [f"{mirror}/{folder}/"])
    stored = list((isolated_data_env / "mnist").glob("*"))
    assert stored == []  # neither under the final name nor as a leftover temporary file


def test_download_into_an_unwritable_cache_is_a_clear_error(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(sources.ENV_CACHE, str(blocker / "cache"))
    with pytest.raises(UserError, match=r"cannot write .* into the download cache"):
        download_dataset("mnist", [f"{mirror}/good"])
