"""The image cache (data/image_cache.py) and lazy reading (data/lazy_images.py): a folder
decoded once to disk, read back a batch at a time as the same numbers as in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ae_anomaly.data import decoding
from ae_anomaly.data.arrays import stored_rows
from ae_anomaly.data.disk_images import DiskImages
from ae_anomaly.data.image_cache import cached_images
from ae_anomaly.data.images import read_images
from ae_anomaly.data.lazy_images import LazyImages, as_lazy_images
from ae_anomaly.errors import UserError


def _files(folder: Path, n: int = 30, size: tuple[int, int] = (12, 10)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def test_the_cache_holds_what_reading_gives_and_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "images")
    direct = read_images(paths, (8, 8), 3)
    cached = cached_images(paths, (8, 8), 3, "fail", 10**8, tmp_path / "cache")
    assert isinstance(cached.images, DiskImages) and cached.paths == direct.paths
    assert np.array_equal(cached.images[:], direct.images)
    assert np.array_equal(cached.images[[5, 2, 7]], direct.images[[5, 2, 7]])

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached folder was decoded again")

    monkeypatch.setattr(decoding, "read_images", no_decoding)
    again = cached_images(paths, (8, 8), 3, "fail", 10**8, tmp_path / "cache")
    assert np.array_equal(again.images[:], direct.images)


def test_a_changed_file_or_size_makes_a_new_entry(tmp_path: Path) -> None:
    paths = _files(tmp_path / "images")
    cache = tmp_path / "cache"
    first = cached_images(paths, (8, 8), 3, "fail", 10**8, cache)
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(paths[4])
    os.utime(paths[4], ns=(1, 1))
    changed = cached_images(paths, (8, 8), 3, "fail", 10**8, cache)
    assert changed.images[4].max() == 0 and first.images[4].max() > 0
    smaller = cached_images(paths, (4, 4), 1, "fail", 10**8, cache)
    assert smaller.images.shape == (30, 1, 4, 4)
    assert len(list(cache.glob("*.json"))) == 3 and not list(cache.glob(".*"))  # no temporaries


def test_skipped_files_are_remembered_and_refused_when_asked_to_fail(tmp_path: Path) -> None:
    paths = _files(tmp_path / "images", n=5)
    paths[2].write_bytes(b"not an image")
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=r"002\.png"):
        cached_images(paths, (8, 8), 3, "fail", 10**8, cache)
    assert not list(cache.iterdir())  # a failed decoding leaves nothing
    kept = cached_images(paths, (8, 8), 3, "skip", 10**8, cache)
    assert len(kept.paths) == 4 and [Path(s.path).name for s in kept.skipped] == ["002.png"]
    with pytest.raises(UserError, match=r"002\.png"):
        cached_images(paths, (8, 8), 3, "fail", 10**8, cache)  # the cached entry, refused


def test_a_damaged_entry_is_decoded_again(tmp_path: Path) -> None:
    paths = _files(tmp_path / "images")
    cache = tmp_path / "cache"
    good = cached_images(paths, (8, 8), 3, "fail", 10**8, cache).images[:]
    (pixels,) = cache.glob("*.u8")
    pixels.write_bytes(pixels.read_bytes()[:-7])
    assert np.array_equal(cached_images(paths, (8, 8), 3, "fail", 10**8, cache).images[:], good)


def test_rows_read_from_disk_index_like_the_array(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 5), dtype=np.uint8)
    (tmp_path / "x.u8").write_bytes(array.tobytes())
    images = DiskImages(tmp_path / "x.u8", array.shape)
    indices = [7, -1, slice(None), slice(3, 9), slice(40, 99), slice(1, 30, 4), slice(9, 3)]
    for index in [*indices, (slice(None), 0), (3, 1, 2), ([4, 1], slice(1, 3))]:
        assert np.array_equal(images[index], array[index])
    for positions in [[5, 6, 7, 20, 21, 2], [], [-3, 0], np.array([49, 49, 0])]:
        assert np.array_equal(images[positions], array[positions])
    with pytest.raises(IndexError):
        images[[0, 50]]
    (tmp_path / "x.u8").write_bytes(array.tobytes()[:-10])
    with pytest.raises(UserError, match="shorter than its images need"):
        DiskImages(tmp_path / "x.u8", array.shape)[-1]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_reading_every_row_does_not_grow_the_process_memory(tmp_path: Path) -> None:
    rows, row_bytes = 4096, 64 * 64 * 3  # 48 MiB of colour 64x64 images
    (tmp_path / "x.u8").write_bytes(os.urandom(rows * row_bytes))
    images = DiskImages(tmp_path / "x.u8", (rows, 3, 64, 64))

    def resident_file_mib() -> float:
        status = Path("/proc/self/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("RssFile"))
        return int(line.split()[1]) / 1024

    before = resident_file_mib()
    order = np.random.default_rng(0).permutation(rows)
    for start in range(0, rows, 64):  # an epoch of random batches, as training reads
        images[np.sort(order[start : start + 64])]
    assert resident_file_mib() - before < 8


def test_lazy_images_read_the_numbers_a_whole_conversion_gives() -> None:
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 256, (20, 2, 5, 4), np.uint8)
    whole = torch.from_numpy(stored).to(torch.float32) / 255.0
    lazy = as_lazy_images(stored)
    assert lazy.shape == (20, 2, 5, 4) and len(lazy) == 20
    assert torch.equal(lazy[:], whole) and torch.equal(lazy[3], whole[3])
    picked = lazy.subset(np.array([9, 1, 4])).subset(torch.tensor([2, 0]))
    assert torch.equal(picked[:], whole[[4, 9]])
    assert torch.equal(picked[torch.tensor([1])], whole[[9]])
    grey = as_lazy_images(stored[:, 0])  # (N, H, W): one channel
    assert grey.shape == (20, 1, 5, 4)


def test_float_images_are_checked_without_a_copy_and_never_shared() -> None:
    images = np.full((3, 1, 4, 4), 0.5, np.float32)
    lazy = as_lazy_images(images)
    lazy[:][0, 0, 0, 0] = 9.0
    assert images[0, 0, 0, 0] == 0.5
    images[1, 0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        as_lazy_images(images)
    with pytest.raises(UserError, match=r"values in \[0, 1\]"):
        as_lazy_images(np.full((2, 4, 4), 2.0))
    with pytest.raises(UserError, match="empty"):
        as_lazy_images(np.zeros((0, 4, 4), np.uint8))
    with pytest.raises(UserError, match="uint8 or float"):
        as_lazy_images(np.zeros((2, 4, 4), np.int32))
    assert isinstance(as_lazy_images(LazyImages(images)), LazyImages)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_images_moved_to_a_device_once_read_as_they_did_from_the_host(dtype: type) -> None:
    rng = np.random.default_rng(2)
    stored = rng.integers(0, 256, (50, 3, 6, 5)).astype(dtype)
    if dtype != np.uint8:
        stored /= 255.0
    lazy = as_lazy_images(stored).subset(np.arange(3, 40))
    # the CPU stands in for an accelerator: the store becomes one tensor of the rows kept
    resident = lazy.resident("cpu")
    assert isinstance(resident.store, torch.Tensor) and resident.rows is None
    assert resident.store.dtype == (torch.uint8 if dtype == np.uint8 else torch.float32)
    assert resident.shape == lazy.shape
    for index in [slice(2, 9), torch.tensor([5, 1, 3]), np.array([0, 7]), 4, (slice(1, 3), 0)]:
        assert torch.equal(resident[index], lazy[index])
    assert torch.equal(resident.subset(np.array([6, 2]))[:], lazy[np.array([6, 2])])
    resident[:][0, 0, 0, 0] = 9.0  # a batch is never the store's own memory
    assert torch.equal(resident[0], lazy[0])
    # on the CPU, to() keeps reading from the host
    assert not isinstance(lazy.to("cpu").store, torch.Tensor)


def test_a_large_folder_is_decoded_by_worker_processes_into_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "in", n=40)
    alone = cached_images(paths, (12, 10), 3, "fail", 10**8, tmp_path / "c1")
    # 40 files, chunks of 4, workers from 8 files on: 10 chunks over the worker processes
    monkeypatch.setattr(decoding, "DECODE_CHUNK", 4)
    monkeypatch.setattr(decoding, "PARALLEL_FROM", 8)
    started: list[int] = []
    real_pool = decoding.ProcessPoolExecutor

    def counted_pool(workers: int, **kwargs: object) -> object:
        started.append(workers)
        return real_pool(workers, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decoding, "ProcessPoolExecutor", counted_pool)
    monkeypatch.setattr(decoding, "_usable_cpus", lambda: 2)
    shared = cached_images(paths, (12, 10), 3, "fail", 10**8, tmp_path / "c2")
    assert started == [2]
    assert np.array_equal(shared.images[:], alone.images[:])
    assert shared.paths == alone.paths
    # an unreadable file ends the decoding with the sentence one process gives
    (tmp_path / "in" / "017.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"017\.png") as failed:
        cached_images(paths, (12, 10), 3, "fail", 10**8, tmp_path / "c3")
    monkeypatch.setattr(decoding, "PARALLEL_FROM", 10**9)
    with pytest.raises(UserError) as failed_alone:
        cached_images(paths, (12, 10), 3, "fail", 10**8, tmp_path / "c4")
    assert str(failed.value) == str(failed_alone.value)
    assert not list((tmp_path / "c3").glob("*.u8"))  # nothing half-written is left


def test_a_script_without_a_main_guard_can_decode_with_workers(tmp_path: Path) -> None:
    """Spawned workers would import the script again and fail; forked ones do not."""
    paths = _files(tmp_path / "in", n=24)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from pathlib import Path\n"
        "from ae_anomaly.data import decoding\n"
        "from ae_anomaly.data.image_cache import cached_images\n"
        "decoding.DECODE_CHUNK, decoding.PARALLEL_FROM = 4, 8\n"
        "decoding._usable_cpus = lambda: 2\n"
        f"paths = sorted(Path({str(tmp_path / 'in')!r}).iterdir())\n"
        f"read = cached_images(paths, (12, 10), 3, 'fail', 10**8, Path({str(tmp_path / 'c')!r}))\n"
        "print(len(read.paths))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(len(paths))


def test_a_folder_read_before_opens_no_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_data_env: Path
) -> None:
    from ae_anomaly.data import folder as folder_module
    from ae_anomaly.data.folder import load_image_folder

    _files(tmp_path / "set" / "train", n=12)
    (tmp_path / "set" / "train" / "005.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"005\.png") as first:
        load_image_folder(tmp_path / "set")
    skipping = load_image_folder(tmp_path / "set", on_error="skip")
    assert [Path(s.path).name for s in skipping.skipped] == ["005.png"]

    def no_opening(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file of a folder read before was opened again")

    monkeypatch.setattr(folder_module, "open_image", no_opening)
    monkeypatch.setattr(decoding, "read_images", no_opening)
    again = load_image_folder(tmp_path / "set", on_error="skip")
    assert again.train_paths == skipping.train_paths and again.input_shape == (3, 12, 10)
    assert np.array_equal(again.train_images[:], skipping.train_images[:])
    with pytest.raises(UserError) as remembered_failure:
        load_image_folder(tmp_path / "set")
    assert str(remembered_failure.value) == str(first.value)
    # a changed file is read again
    monkeypatch.undo()
    monkeypatch.setenv("AE_ANOMALY_CACHE", str(isolated_data_env))
    Image.new("RGB", (10, 12)).save(tmp_path / "set" / "train" / "005.png")
    assert len(load_image_folder(tmp_path / "set").train_paths) == 12


@pytest.mark.parametrize(
    "array",
    [
        np.arange(5 * 6 * 7, dtype=np.uint8).reshape(5, 6, 7),  # (N, H, W)
        np.linspace(0, 1, 5 * 3 * 4 * 4, dtype=np.float32).reshape(5, 3, 4, 4),
        np.linspace(0, 1, 5 * 4 * 4, dtype=">f8").reshape(5, 1, 4, 4),  # big-endian
    ],
)
def test_an_npy_is_read_row_by_row_from_its_file(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", array)
    rows = stored_rows(tmp_path / "x.npy")
    assert isinstance(rows, DiskImages)
    whole = array if array.ndim == 4 else array[:, None]
    assert rows.shape == whole.shape and rows.dtype == whole.dtype
    assert np.array_equal(rows[[4, 0, 2]], whole[[4, 0, 2]]) and np.array_equal(rows[:], whole)
    assert torch.equal(LazyImages(rows)[1:3], LazyImages(whole)[1:3])


def test_a_fortran_ordered_npy_is_still_read(tmp_path: Path) -> None:
    array = np.asfortranarray(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 1, 3, 4))
    np.save(tmp_path / "x.npy", array)
    assert np.array_equal(np.asarray(stored_rows(tmp_path / "x.npy")[:]), array)
