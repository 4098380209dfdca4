"""Build the own-images development suite (issue 17): real-image folders of different
character, offline, from data that is on this machine (MNIST and Fashion-MNIST through
the package's own lookup, and the two photos that ship inside scikit-learn).

    python research/own_images/build_suite.py SUITE_DIR

Each set is a dataset folder (train/, test/<kind>/, and ground_truth/ where there are
masks) that `ae-anomaly run --dataset SUITE_DIR/<set>` reads as it is. The same seed
builds the same files. run_suite.py runs detectors over them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

from ae_anomaly.data.sources import load_dataset

SNEAKER, BAG, SHIRT, TROUSER = 7, 8, 6, 1


def save(image: Image.Image, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)


def tinted(grey: np.ndarray, tint: tuple[float, float, float], size: int) -> Image.Image:
    """A grey 28x28 image as a colour image of ``size`` pixels a side."""
    rgb = np.stack([grey * t for t in tint], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC)


def fashion_colour(root: Path, rng: np.random.Generator, side: int = 40) -> None:
    """Sneakers normal, bags and shirts anomalies: colour, 40x40, PNG and JPEG mixed."""
    fashion = load_dataset("fashion-mnist")
    tint = (1.0, 0.55, 0.3)
    train = fashion.train_images[fashion.train_labels == SNEAKER][:1500]
    for i, image in enumerate(train):
        save(tinted(image, tint, side), root / "train", f"{i:04d}.{'png' if i % 2 else 'jpg'}")
    for kind, label, count in (("normal", SNEAKER, 200), ("bag", BAG, 100), ("shirt", SHIRT, 100)):
        for i, image in enumerate(fashion.test_images[fashion.test_labels == label][:count]):
            save(tinted(image, tint, side), root / "test" / kind, f"{i:04d}.png")


FASHION_NAMES = (
    "t-shirt-top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip


def fashion_class(label: int) -> Callable[[Path, np.random.Generator], None]:
    """One Fashion-MNIST class normal, as the one-class benchmark has it (all its training
    images; the whole test set, the other nine classes anomalies), but tinted orange at
    40x40, PNG and JPEG mixed: the benchmark's figure for the class, as a folder."""

    def build(root: Path, rng: np.random.Generator) -> None:
        fashion = load_dataset("fashion-mnist")
        tint = (1.0, 0.55, 0.3)
        train = fashion.train_images[fashion.train_labels == label]
        for i, image in enumerate(train):
            name = f"{i:04d}.{'png' if i % 2 else 'jpg'}"
            save(tinted(image, tint, 40), root / "train", name)
        for i, (image, other) in enumerate(
            zip(fashion.test_images, fashion.test_labels, strict=True)
        ):
            kind = "normal" if other == label else FASHION_NAMES[other]
            save(tinted(image, tint, 40), root / "test" / kind, f"{i:05d}.png")

    return build


def mnist_colour(root: Path, rng: np.random.Generator) -> None:
    """Digit 3 normal in random colours (JPEG), other digits anomalies; 32x32."""
    mnist = load_dataset("mnist")

    def coloured(image: np.ndarray) -> Image.Image:
        return tinted(image, tuple(rng.uniform(0.4, 1.0, 3)), 32)  # type: ignore[arg-type]

    for i, image in enumerate(mnist.train_images[mnist.train_labels == 3][:1000]):
        save(coloured(image), root / "train", f"{i:04d}.jpg")
    for i, (image, label) in enumerate(
        zip(mnist.test_images[:600], mnist.test_labels[:600], strict=True)
    ):
        save(
            coloured(image),
            root / "test" / ("normal" if label == 3 else f"digit{label}"),
            f"{i:04d}.png",
        )


def tiny(root: Path, rng: np.random.Generator) -> None:
    """80 training trousers, grey 28x28; the other classes anomalies."""
    fashion = load_dataset("fashion-mnist")
    for i, image in enumerate(fashion.train_images[fashion.train_labels == TROUSER][:80]):
        save(Image.fromarray(image), root / "train", f"{i:03d}.png")
    for i, (image, label) in enumerate(
        zip(fashion.test_images[:500], fashion.test_labels[:500], strict=True)
    ):
        kind = (
            "normal" if label == TROUSER else fashion.class_names[label].lower().replace("/", "-")
        )
        save(Image.fromarray(image), root / "test" / kind, f"{i:03d}.png")


def odd_sizes(root: Path, rng: np.random.Generator) -> None:
    """Digit 7 normal at 25x25 and 100x60 (most common size: 25x25), others anomalies."""
    mnist = load_dataset("mnist")

    def shaped(image: np.ndarray, i: int) -> Image.Image:
        size = (25, 25) if i % 4 else (60, 100)  # (width, height)
        return Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)

    for i, image in enumerate(mnist.train_images[mnist.train_labels == 7][:800]):
        save(shaped(image, i), root / "train", f"{i:04d}.png")
    for i, (image, label) in enumerate(
        zip(mnist.test_images[:600], mnist.test_labels[:600], strict=True)
    ):
        save(
            shaped(image, i),
            root / "test" / ("normal" if label == 7 else f"digit{label}"),
            f"{i:04d}.png",
        )


def _defect(
    image: Image.Image, mask: Image.Image, kind: str, rng: np.random.Generator, scale: int
) -> None:
    side = image.size[0]
    draw, mark = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    if kind == "scratch":
        ends = [tuple(int(v) for v in rng.integers(2, side - 2, 2)) for _ in range(2)]
        colour = tuple(int(v) for v in rng.integers(180, 255, 3))
        draw.line(ends, fill=colour, width=scale)
        mark.line(ends, fill=255, width=scale)
    else:
        r = int(rng.integers(2, 5)) * scale
        c = rng.integers(r + 1, side - r - 1, 2)
        box = [int(c[0] - r), int(c[1] - r), int(c[0] + r), int(c[1] + r)]
        colour = tuple(int(v) for v in rng.integers(0, 120, 3))
        draw.ellipse(box, fill=colour)
        mark.ellipse(box, fill=255)


def _crops(photo: np.ndarray, side: int, rng: np.random.Generator) -> Callable[[], Image.Image]:
    def crop() -> Image.Image:
        y, x = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        return Image.fromarray(photo[y : y + side, x : x + side])

    return crop


def textures(
    root: Path, rng: np.random.Generator, side: int = 64, n_train: int = 600, scale: int = 2
) -> None:
    """Crops of one photo normal; drawn scratches and stains (with masks) and crops of the
    other photo (a foreign texture, without defect masks) anomalies."""
    normal = _crops(load_sample_image("flower.jpg"), side, rng)
    foreign = _crops(load_sample_image("china.jpg"), side, rng)
    for i in range(n_train):
        save(normal(), root / "train" / "good", f"{i:03d}.png")
    for i in range(60):
        save(normal(), root / "test" / "good", f"{i:03d}.png")
    for kind in ("scratch", "stain"):
        for i in range(40):
            image, mask = normal(), Image.new("L", (side, side), 0)
            _defect(image, mask, kind, rng, scale)
            save(image, root / "test" / kind, f"{i:03d}.png")
            save(mask, root / "ground_truth" / kind, f"{i:03d}_mask.png")
    for i in range(40):
        save(foreign(), root / "test" / "foreign", f"{i:03d}.png")
        save(
            Image.new("L", (side, side), 255),
            root / "ground_truth" / "foreign",
            f"{i:03d}_mask.png",
        )


def large(root: Path, rng: np.random.Generator) -> None:
    """256x256 crops with small defects (with masks)."""
    normal = _crops(load_sample_image("flower.jpg"), 256, rng)
    for i in range(150):
        save(normal(), root / "train" / "good", f"{i:03d}.png")
    for i in range(30):
        save(normal(), root / "test" / "good", f"{i:03d}.png")
    for kind in ("scratch", "stain"):
        for i in range(20):
            image, mask = normal(), Image.new("L", (256, 256), 0)
            _defect(image, mask, kind, rng, 2)
            save(image, root / "test" / kind, f"{i:03d}.png")
            save(mask, root / "ground_truth" / kind, f"{i:03d}_mask.png")


SETS: dict[str, Callable[[Path, np.random.Generator], None]] = {
    "fashion-colour-40": fashion_colour,
    "mnist-colour-32": mnist_colour,
    "tiny-trousers": tiny,
    "odd-sizes": odd_sizes,
    "textures-64": textures,
    "large-256": large,
    # The same at 64x64: the time a default run takes on 1,500 colour images of that size.
    "fashion-colour-64": lambda root, rng: fashion_colour(root, rng, side=64),
    # The benchmark's classes as colour folders (built on demand: 16,000 files each).
    "fashion-trouser-40": fashion_class(TROUSER),
    "fashion-sneaker-40": fashion_class(SNEAKER),
    "fashion-bag-40": fashion_class(BAG),
}
# What `build_suite.py SUITE_DIR` builds without names: the development suite.
SUITE = (
    "fashion-colour-40", "mnist-colour-32", "tiny-trousers",
    "odd-sizes", "textures-64", "large-256",
)  # fmt: skip


def build(suite: Path, names: list[str] | None = None) -> None:
    for name in names or SUITE:
        if not (suite / name).exists():
            SETS[name](suite / name, np.random.default_rng(0))
            print("built", suite / name, flush=True)


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2:] or None)
