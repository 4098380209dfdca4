"""Own images (data/images.py, arrays.py, folder.py, stream.py): folders, arrays, the stream.

The folder tests write real Fashion-MNIST images as PNG files: a PNG round
trip of uint8 pixels is lossless, so a detector trained from the folder must
score exactly like one trained from the same arrays.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.arrays import load_array
from ae_anomaly.data.folder import load_image_folder, load_image_source
from ae_anomaly.data.images import DEFAULT_MAX_PIXELS, list_image_files, read_images
from ae_anomaly.data.sources import Dataset
from ae_anomaly.data.stream import count_images, iter_image_chunks
from ae_anomaly.errors import UserError

SNEAKER, SHIRT, BAG = 7, 6, 8


def write_images(folder: Path, images: Sequence[np.ndarray], suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:04d}{suffix}"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, with almost no data.

    What a decompression bomb looks like to a reader that trusts the header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def sneakers(fashion: Dataset) -> dict[str, np.ndarray]:
    """Train: 300 sneakers; test: 60 other sneakers, 30 shirts, 30 bags (all real images)."""
    train = fashion.train_images[fashion.train_labels == SNEAKER][:300]
    test = fashion.test_images
    return {
        "train": train,
        "normal": test[fashion.test_labels == SNEAKER][:60],
        "shirt": test[fashion.test_labels == SHIRT][:30],
        "bag": test[fashion.test_labels == BAG][:30],
    }


@pytest.fixture(scope="module")
def dataset_folder(
    sneakers: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("folder") / "sneakers"
    write_images(root / "train", sneakers["train"])
    for kind in ("normal", "shirt", "bag"):
        write_images(root / "test" / kind, sneakers[kind])
    (root / "train" / "notes.txt").write_text("ignored: not an image", encoding="utf-8")
    (root / "train" / ".hidden.png").write_bytes(b"ignored: hidden")
    return root


# -- the folder layout ------------------------------------------------------------------------


def test_folder_reads_train_and_labelled_test(
    dataset_folder: Path, sneakers: dict[str, np.ndarray]
) -> None:
    data = load_image_folder(dataset_folder)
    assert data.train_images.dtype == np.uint8
    assert data.train_images.shape == (300, 1, 28, 28)
    assert data.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(data.train_images[:, 0], sneakers["train"])  # lossless
    assert data.skipped == []
    assert data.test is not None
    # kinds in sorted folder order: bag, normal, shirt
    assert data.test.kinds == ["bag"] * 30 + ["normal"] * 60 + ["shirt"] * 30
    np.testing.assert_array_equal(data.test.labels, [1] * 30 + [0] * 60 + [1] * 30)
    assert data.test.labels.dtype == np.int64
    np.testing.assert_array_equal(data.test.images[30:90, 0], sneakers["normal"])
    assert data.test.paths[0].endswith("test/bag/0000.png")
    assert len(data.train_paths) == 300 and data.train_paths[0].endswith("train/0000.png")


def test_folder_and_arrays_give_the_same_detector(
    dataset_folder: Path, sneakers: dict[str, np.ndarray]
) -> None:
    """Train from the PNG folder and from the arrays: same scores, same AUROC."""
    params = {
        "model_args": {"channels": [8, 16]},
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "device": "cpu",
    }
    data = load_image_source(dataset_folder)
    assert data.test is not None
    from_folder = AutoencoderDetector(**params).fit(data.train_images)
    folder_scores = from_folder.decision_function(data.test.images)

    arrays = AutoencoderDetector(**params).fit(sneakers["train"])
    test = np.concatenate([sneakers["bag"], sneakers["normal"], sneakers["shirt"]])
    labels = np.r_[np.ones(30), np.zeros(60), np.ones(30)]
    array_scores = arrays.decision_function(test)

    np.testing.assert_array_equal(folder_scores, array_scores)
    assert from_folder.threshold_ == arrays.threshold_
    auroc = roc_auc_score(data.test.labels, folder_scores)
    assert auroc == roc_auc_score(labels, array_scores)
    assert auroc > 0.75  # measured 0.857: shirts and bags are unlike sneakers even to this net


def test_only_train_means_no_test_set(tmp_path: Path, sneakers: dict[str, np.ndarray]) -> None:
    write_images(tmp_path / "train" / "batch1", sneakers["train"][:5])
    write_images(tmp_path / "train" / "batch2", sneakers["train"][5:8])
    data = load_image_source(tmp_path)
    assert data.test is None
    assert len(data.train_images) == 8  # sub-folders of train/ are read too


def test_list_image_files_is_sorted_and_skips_other_files(dataset_folder: Path) -> None:
    files = list_image_files(dataset_folder / "train")
    assert len(files) == 300
    assert files == sorted(files)
    with pytest.raises(UserError, match="is not a folder"):
        list_image_files(dataset_folder / "nowhere")


# -- formats, channels and sizes -------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_read_exactly(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 16), dtype=np.uint8)
    paths = write_images(tmp_path, list(images), suffix)
    read = read_images(paths, (12, 16), channels=1)
    np.testing.assert_array_equal(read.images[:, 0], images)


def test_jpeg_and_colour(tmp_path: Path) -> None:
    # Smooth colour gradients: JPEG keeps them to within a few grey levels.
    ramp = np.linspace(0, 255, 16)
    red, green = np.meshgrid(ramp, ramp)
    colour = np.stack([red, green, 255 - red], axis=-1).astype(np.uint8)
    paths = write_images(tmp_path / "train", [colour, colour[::-1].copy()], ".jpg")
    data = load_image_folder(tmp_path)
    assert data.train_images.shape == (2, 3, 16, 16)
    assert np.abs(data.train_images[0].astype(int) - colour.transpose(2, 0, 1)).mean() < 4
    grey = read_images(paths, (16, 16), channels=1)
    assert grey.images.shape == (2, 1, 16, 16)


def test_grey_images_as_colour(tmp_path: Path) -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    paths = write_images(tmp_path, [image])
    read = read_images(paths, (8, 8), channels=3)
    for c in range(3):
        np.testing.assert_array_equal(read.images[0, c], image)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((4, 8), np.uint8)
    stored[0, 0] = 255  # top-left as stored; a camera turned by 90 degrees says so in EXIF
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    (tmp_path / "train").mkdir()
    Image.fromarray(stored).save(tmp_path / "train" / "photo.png", exif=exif)
    data = load_image_folder(tmp_path)
    assert data.train_images.shape == (1, 1, 8, 4)  # the shown size is the default size
    np.testing.assert_array_equal(data.train_images[0, 0], np.rot90(stored, k=-1))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    read = read_images([tmp_path / "deep.png"], (1, 4), channels=1)
    np.testing.assert_array_equal(read.images[0, 0], [[0, 1, 255, 128]])


def test_mixed_grey_and_colour_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [np.zeros((8, 8), np.uint8)] * 2)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "colour.png")
    with pytest.raises(UserError, match=r"mixes grey \(2 files.*colour images \(1 files"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, channels=1).train_images.shape == (3, 1, 8, 8)
    assert load_image_folder(tmp_path, channels=3).train_images.shape == (3, 3, 8, 8)
    with pytest.raises(UserError, match="1 \\(grey\\) or 3"):
        load_image_folder(tmp_path, channels=2)


def test_default_size_is_the_most_common_one(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "a", [np.full((16, 12), 200, np.uint8)] * 3)
    write_images(tmp_path / "train" / "b", [np.full((32, 24), 100, np.uint8)] * 2)
    write_images(tmp_path / "test" / "normal", [np.full((64, 48), 50, np.uint8)])
    data = load_image_folder(tmp_path)
    assert data.train_images.shape == (5, 1, 16, 12)
    assert data.test is not None and data.test.images.shape == (1, 1, 16, 12)
    assert (data.train_images[3:] == 100).all()  # a flat image stays flat when resized
    assert data.test.images[:].max() == 50
    explicit = load_image_folder(tmp_path, size=(8, 8))
    assert explicit.train_images.shape == (5, 1, 8, 8)


def test_downscaling_averages_areas(tmp_path: Path) -> None:
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 200  # one 2x2 block bright: its area average is 200, the others 0
    paths = write_images(tmp_path, [image])
    read = read_images(paths, (2, 2), channels=1)
    np.testing.assert_array_equal(read.images[0, 0], [[200, 0], [0, 0]])


@pytest.mark.parametrize("size", [(0, 28), (28,), (28, 28.5), (100_000, 100_000)])
def test_bad_sizes_are_refused(tmp_path: Path, size: tuple[int, ...]) -> None:
    paths = write_images(tmp_path, [np.zeros((4, 4), np.uint8)])
    with pytest.raises(UserError, match="size"):
        read_images(paths, size, channels=1)


# -- unreadable files and bad folders ----------------------------------------------------------


@pytest.fixture
def with_corrupt(tmp_path: Path, sneakers: dict[str, np.ndarray]) -> Path:
    write_images(tmp_path / "train", sneakers["train"][:6])
    (tmp_path / "train" / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = (tmp_path / "train" / "0004.png").read_bytes()
    (tmp_path / "train" / "0004.png").write_bytes(good[: len(good) // 2])  # truncated
    return tmp_path


def test_corrupt_file_is_named(with_corrupt: Path) -> None:
    with pytest.raises(UserError, match=r"cannot read image .*0002\.png: .*on-error skip"):
        load_image_folder(with_corrupt)


def test_truncated_file_is_named(with_corrupt: Path) -> None:
    path = with_corrupt / "train" / "0004.png"
    with pytest.raises(UserError, match=r"cannot read image .*0004\.png: .*truncated"):
        read_images([path], (28, 28), channels=1)


def test_skip_mode_leaves_unreadable_files_out_and_lists_them(
    with_corrupt: Path, sneakers: dict[str, np.ndarray]
) -> None:
    data = load_image_folder(with_corrupt, on_error="skip")
    assert len(data.train_images) == 4
    assert [Path(s.path).name for s in data.skipped] == ["0002.png", "0004.png"]
    assert all(s.reason for s in data.skipped)
    np.testing.assert_array_equal(data.train_images[:, 0], sneakers["train"][[0, 1, 3, 5]])
    assert [Path(p).name for p in data.train_paths] == [
        "0000.png",
        "0001.png",
        "0003.png",
        "0005.png",
    ]


def test_folder_of_only_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "train" / name).write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"none of the 2 image files .* could be read"):
        load_image_folder(tmp_path, on_error="skip")
    with pytest.raises(UserError, match=r"cannot read image .*a\.png"):
        load_image_folder(tmp_path)


def test_empty_or_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is not a folder|does not exist"):
        load_image_source(tmp_path / "nowhere")
    with pytest.raises(UserError, match="has no train/ folder"):
        load_image_folder(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "readme.txt").write_text("no images here", encoding="utf-8")
    with pytest.raises(UserError, match="holds no image files"):
        load_image_folder(tmp_path)


def test_bad_test_folders(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [np.zeros((8, 8), np.uint8)] * 2)
    (tmp_path / "test").mkdir()
    with pytest.raises(UserError, match="test holds no images"):
        load_image_folder(tmp_path)
    write_images(tmp_path / "test", [np.zeros((8, 8), np.uint8)])
    with pytest.raises(UserError, match="outside a sub-folder"):
        load_image_folder(tmp_path)


def test_pixel_limit_refuses_large_images(tmp_path: Path) -> None:
    paths = write_images(tmp_path, [np.zeros((40, 50), np.uint8)])
    with pytest.raises(UserError, match=r"2,000 pixels, more than the limit of 1,000"):
        read_images(paths, (8, 8), channels=1, max_pixels=1000)


def test_absurd_size_in_a_header_is_refused_before_decoding(tmp_path: Path) -> None:
    # 8000 x 8000 claims 64 megapixels: over our limit, under Pillow's own.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "huge.png").write_bytes(png_header(8000, 8000))
    assert DEFAULT_MAX_PIXELS < 8000 * 8000
    with pytest.raises(UserError, match=r"huge\.png: it has 8000x8000 = 64,000,000 pixels"):
        load_image_folder(tmp_path)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [np.zeros((8, 8), np.uint8)] * 2)
    (tmp_path / "train" / "bomb.png").write_bytes(png_header(30_000, 30_000))
    with pytest.raises(UserError, match=r"bomb\.png: it is a possible decompression bomb"):
        load_image_folder(tmp_path)
    data = load_image_folder(tmp_path, on_error="skip")
    assert len(data.train_images) == 2
    assert [Path(s.path).name for s in data.skipped] == ["bomb.png"]


def test_bad_on_error_choice(dataset_folder: Path) -> None:
    with pytest.raises(UserError, match="on_error"):
        load_image_folder(dataset_folder, on_error="ignore")  # type: ignore[arg-type]


# -- arrays -----------------------------------------------------------------------------------


def test_npy_and_npz(tmp_path: Path, sneakers: dict[str, np.ndarray]) -> None:
    images = sneakers["train"][:10]
    np.save(tmp_path / "a.npy", images)
    np.savez(tmp_path / "one.npz", anything=images)
    np.savez_compressed(tmp_path / "named.npz", images=images, labels=np.zeros(10))
    np.savez(tmp_path / "x.npz", x=images, y=np.zeros(10))
    for name in ("a.npy", "one.npz", "named.npz", "x.npz"):
        np.testing.assert_array_equal(load_array(tmp_path / name), images)
    mapped = load_array(tmp_path / "a.npy", mmap=True)
    assert isinstance(mapped, np.memmap)
    data = load_image_source(tmp_path / "a.npy")
    assert data.train_images.shape == (10, 1, 28, 28) and data.test is None
    assert data.train_paths[3] == f"{tmp_path / 'a.npy'}[3]"


def test_npz_with_ambiguous_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", first=np.zeros((2, 4, 4)), second=np.zeros((2, 4, 4)))
    with pytest.raises(UserError, match="holds arrays first, second"):
        load_array(tmp_path / "two.npz")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    objects = np.array([{"evil": 1}, None], dtype=object)
    np.savez(tmp_path / "objects.npz", images=objects)
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    for name in ("objects.npz", "objects.npy"):
        with pytest.raises(UserError, match=r"Python objects.*unpickled"):
            load_array(tmp_path / name)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4), np.uint8), "shape"),
        (np.zeros((2, 1, 1, 4, 4), np.uint8), "shape"),
        (np.zeros((2, 4, 4), np.int32), "int32"),
        (np.zeros((0, 4, 4), np.uint8), "no images"),
    ],
    ids=["2-d", "5-d", "int32", "empty"],
)
def test_bad_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(UserError, match=message):
        load_array(tmp_path / "bad.npy")


def test_array_files_that_are_not_arrays(tmp_path: Path) -> None:
    (tmp_path / "fake.npy").write_bytes(b"not numpy")
    (tmp_path / "fake.npz").write_bytes(b"not a zip")
    for name in ("fake.npy", "fake.npz"):
        with pytest.raises(UserError, match="cannot read"):
            load_array(tmp_path / name)
    (tmp_path / "notes.txt").write_text("text", encoding="utf-8")
    with pytest.raises(UserError, match="neither a folder of images nor"):
        load_image_source(tmp_path / "notes.txt")


def test_array_source_is_not_resized(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(UserError, match="not resized"):
        load_image_source(tmp_path / "a.npy", size=(16, 16))


# -- the stream for scoring --------------------------------------------------------------------


def test_chunks_cover_files_folders_globs_and_arrays(
    tmp_path: Path, sneakers: dict[str, np.ndarray]
) -> None:
    write_images(tmp_path / "dir", sneakers["train"][:7])
    write_images(tmp_path / "glob", sneakers["train"][7:12])
    np.save(tmp_path / "a.npy", sneakers["train"][12:17])
    single = write_images(tmp_path / "single", sneakers["train"][17:18])[0]
    inputs = [tmp_path / "dir", str(tmp_path / "glob" / "*.png"), tmp_path / "a.npy", single]
    chunks = list(iter_image_chunks(inputs, (1, 28, 28), chunk_size=3))
    assert max(len(c.names) for c in chunks) == 3
    names = [n for c in chunks for n in c.names]
    assert len(names) == 18
    assert names[12] == f"{tmp_path / 'a.npy'}[0]"
    images = np.concatenate([c.images for c in chunks])
    np.testing.assert_array_equal(images[:, 0], sneakers["train"][:18])


def test_count_images_reads_array_headers_only(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", images=np.zeros((7, 4, 4), np.uint8), labels=np.zeros(7))
    np.savez_compressed(tmp_path / "b.npz", np.zeros((5, 4, 4), np.uint8))
    np.save(tmp_path / "c.npy", np.zeros((3, 4, 4), np.uint8))
    write_images(tmp_path / "pngs", [np.zeros((4, 4), np.uint8)] * 2)
    inputs = [tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npy", tmp_path / "pngs"]
    assert count_images(inputs) == 7 + 5 + 3 + 2


def test_chunks_resize_and_convert_to_the_shape(tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "colour.png")
    chunks = list(iter_image_chunks([tmp_path / "colour.png"], (1, 8, 8)))
    assert chunks[0].images.shape == (1, 1, 8, 8)
    assert (chunks[0].images == 90).all()


def test_chunk_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(UserError, match="not resized"):
        list(iter_image_chunks([tmp_path / "a.npy"], (1, 28, 28)))
    with pytest.raises(UserError, match="does not exist"):
        list(iter_image_chunks([tmp_path / "missing.png"], (1, 28, 28)))
    with pytest.raises(UserError, match="no image or array file matches"):
        list(iter_image_chunks([str(tmp_path / "*.jpg")], (1, 28, 28)))


def test_streaming_holds_one_chunk(tmp_path: Path, sneakers: dict[str, np.ndarray]) -> None:
    """3000 files read at 64x64 in chunks of 100: peak memory far below all the images'.

    The images are held at the target size (4 KiB each, 12 MB for all); a
    chunk is 400 KiB. The limit leaves room for the file listing and for
    Pillow's short-lived objects (together about 1 MB at worst here). Measured in a
    process of its own, where no other test's thread allocates meanwhile.
    """
    n = 3000
    write_images(tmp_path, list(np.resize(sneakers["train"], (n, 28, 28))))
    all_images = n * 64 * 64  # bytes of every image as uint8 at the target size
    measure = """
import sys, tracemalloc
from ae_anomaly.data.stream import iter_image_chunks
tracemalloc.start()
sizes = [len(c.names) for c in iter_image_chunks([sys.argv[1]], (1, 64, 64), chunk_size=100)]
print(sum(sizes), max(sizes), tracemalloc.get_traced_memory()[1])
"""
    done = subprocess.run(
        [sys.executable, "-c", measure, str(tmp_path)], capture_output=True, text=True, check=True
    )
    seen, largest, peak = map(int, done.stdout.split())
    assert seen == n and largest == 100
    assert peak < all_images / 4, f"peak {peak} bytes for {all_images} bytes of images"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_among_the_images_is_skipped_not_read(tmp_path: Path) -> None:
    """Reading a FIFO would wait forever: it is skipped and said so, whatever on_error."""
    write_images(tmp_path / "set" / "train", [np.full((8, 8), 9 * i, np.uint8) for i in range(4)])
    os.mkfifo(tmp_path / "set" / "train" / "x.png")
    data = load_image_folder(tmp_path / "set")  # on_error="fail"
    assert len(data.train_images) == 4
    assert [Path(s.path).name for s in data.skipped] == ["x.png"]
    assert "not a regular file" in data.skipped[0].reason


def test_a_big_endian_array_is_read_in_the_machines_byte_order(tmp_path: Path) -> None:
    from ae_anomaly.data.tensors import to_image_tensor

    images = np.linspace(0, 1, 2 * 8 * 8).reshape(2, 8, 8)
    np.save(tmp_path / "be.npy", images.astype(">f8"))
    loaded = load_array(tmp_path / "be.npy")
    assert torch.equal(to_image_tensor(loaded), to_image_tensor(images.astype(np.float32)))
    chunks = list(iter_image_chunks([tmp_path / "be.npy"], (1, 8, 8)))
    assert to_image_tensor(chunks[0].images).shape == (2, 1, 8, 8)


def test_an_array_header_that_claims_more_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    """A crafted header claiming 10^9 images must not make numpy allocate for them."""
    np.save(tmp_path / "small.npy", np.zeros((10, 28, 28), np.uint8))
    raw = (tmp_path / "small.npy").read_bytes()
    end = raw.index(b"\n") + 1
    header = raw[10:end].decode("latin1").replace("(10, 28, 28)", "(1000000000, 28, 28)")
    header = header.rstrip("\n").ljust(end - 11) + "\n"
    (tmp_path / "huge.npy").write_bytes(raw[:10] + header.encode("latin1") + raw[end:])
    with pytest.raises(UserError, match=r"claims an array of shape \(1000000000, 28, 28\)"):
        load_array(tmp_path / "huge.npy")


def test_a_folder_too_large_for_the_image_cache_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ae_anomaly.data import image_cache

    monkeypatch.setenv("AE_ANOMALY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "big"
    for i in range(4):
        (folder / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 50), i * 60, np.uint8)).save(folder / "train" / f"{i}.png")
    # 4 training images of 2,000 bytes each, decoded.
    monkeypatch.setattr(image_cache, "free_bytes", lambda folder: 4 * 2000)
    assert load_image_folder(folder).train_images.shape == (4, 1, 40, 50)  # just fits
    monkeypatch.setattr(image_cache, "free_bytes", lambda folder: 4 * 2000 - 1)
    with pytest.raises(UserError, match=r"would need 0\.0 GiB in the image cache"):
        load_image_folder(folder, size=(41, 50))
    with pytest.raises(UserError, match="use a smaller --image-size"):
        load_image_folder(folder, size=(400, 500))
    assert not list((tmp_path / "cache").rglob(".*"))  # no temporaries


def test_a_run_that_cannot_fit_ends_in_one_sentence_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from ae_anomaly.cli import cli
    from ae_anomaly.data import image_cache

    monkeypatch.setenv("AE_ANOMALY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "big" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 20), i * 80, np.uint8)).save(folder / f"{i}.png")
    monkeypatch.setattr(image_cache, "free_bytes", lambda folder: 1000)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", "--dataset", str(tmp_path / "big"), "--out", str(out)])
    assert result.exit_code == 2
    assert "in the image cache" in result.output and "more than the 0.0 GiB free" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_name("out.incomplete").exists()
