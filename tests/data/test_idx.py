"""Tests for ae_anomaly.data.idx: reading gzip and raw IDX files and rejecting bad ones."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from ae_anomaly.data import idx
from ae_anomaly.data.sources import REGISTRY
from ae_anomaly.errors import UserError

MNIST = REGISTRY["mnist"]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """A valid IDX encoding of a uint8 array (header + C-order data)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def mnist_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "mnist"


# --- reading good files -----------------------------------------------------------------


def test_reads_real_gzip_images(mnist_dir: Path) -> None:
    images, data = idx.read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", ndim=3)
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert hashlib.sha256(data).hexdigest() == MNIST.test_images.sha256
    assert not images.flags.writeable  # a view on the bytes, not a copy


def test_reads_real_gzip_labels(mnist_dir: Path) -> None:
    labels = idx.read_labels(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))


def test_raw_and_gzip_give_the_same_array(mnist_dir: Path, tmp_path: Path) -> None:
    gz = mnist_dir / "t10k-images-idx3-ubyte.gz"
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(idx.read_images(raw), idx.read_images(gz))


def test_gzip_is_detected_by_content_not_by_name(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz_named_raw = tmp_path / "images.idx"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(array)))
    raw_named_gz = tmp_path / "images.gz"
    raw_named_gz.write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(idx.read_images(gz_named_raw), array)
    np.testing.assert_array_equal(idx.read_images(raw_named_gz), array)


def test_any_number_of_dims_without_ndim(tmp_path: Path) -> None:
    array = np.arange(16, dtype=np.uint8).reshape(2, 2, 2, 2)
    path = tmp_path / "four.idx"
    path.write_bytes(idx_bytes(array))
    got, data = idx.read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert data == idx_bytes(array)


# --- rejecting bad files ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.gz"
    with pytest.raises(UserError, match=r"cannot read .*nope\.gz"):
        idx.read_images(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        idx.read_images(tmp_path)


def test_labels_file_read_as_images(mnist_dir: Path) -> None:
    path = mnist_dir / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(UserError) as info:
        idx.read_images(path)
    message = str(info.value)
    assert str(path) in message
    assert "not an IDX image file" in message
    assert "magic number 0x00000801, expected 0x00000803" in message


def test_images_file_read_as_labels(mnist_dir: Path) -> None:
    with pytest.raises(UserError, match=r"not an IDX label file .*expected 0x00000801"):
        idx.read_labels(mnist_dir / "t10k-images-idx3-ubyte.gz")


def test_not_an_idx_file(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(
        UserError, match=r"picture\.png is not an IDX file \(magic number 0x89504e47"
    ):
        idx.read_idx(path)


def test_unsupported_value_type(tmp_path: Path) -> None:
    path = tmp_path / "floats.idx"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8), type_code=0x0D))
    with pytest.raises(UserError, match=r"type 0x0d \(float\); only 0x08 \(unsigned byte\)"):
        idx.read_idx(path)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "scalar.idx"
    path.write_bytes(bytes([0, 0, 8, 0]))
    with pytest.raises(UserError, match="zero dimensions"):
        idx.read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"])
def test_too_short_for_a_magic_number(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "short.idx"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"holds only {len(content)} bytes"):
        idx.read_idx(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "header.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))[:10])
    with pytest.raises(UserError, match="header needs 16 bytes, the file holds 10"):
        idx.read_images(path)


@pytest.mark.parametrize("extra", [-1, 1])
def test_data_length_does_not_match_header(tmp_path: Path, extra: int) -> None:
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))
    data = data[:extra] if extra < 0 else data + bytes(extra)
    path = tmp_path / "images.idx"
    path.write_bytes(data)
    with pytest.raises(UserError, match=f"holds {24 + extra} bytes of data .* shape 2x3x4"):
        idx.read_images(path)


def test_truncated_gzip(mnist_dir: Path, tmp_path: Path) -> None:
    content = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz is a truncated gzip file"):
        idx.read_labels(path)


@pytest.mark.parametrize("where", ["middle", "crc"])
def test_corrupt_gzip(mnist_dir: Path, tmp_path: Path, where: str) -> None:
    content = bytearray((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    # Garbled deflate data fails in zlib; a bad CRC32 trailer fails in gzip itself.
    start = len(content) // 2 if where == "middle" else len(content) - 8
    for i in range(start, start + 4):
        content[i] ^= 0xFF
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(content))
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz is a corrupt gzip file"):
        idx.read_labels(path)
