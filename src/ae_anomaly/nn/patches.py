"""Patch mode: a network trained on random crops, run over overlapping tiles of an image.

Large images, and textures whose defects are small, are poorly served by one network
for the whole image: its code must describe every pixel at once, and a small defect
hardly moves a score averaged over the image. In patch mode the network is built for
``size`` x ``size`` patches. It trains on one random crop of each training image per
epoch (new crops every epoch); an image is scored through a grid of tiles that overlap
by half (PatchGrid), every tile scored as an image of its own. The image's score is its
most anomalous tile's, and its reconstruction and error map are the tiles', averaged
where they overlap, at the image's own resolution.

Everything here is slicing, padding and reshaping with sizes fixed when the grid is
made, so an ONNX export of a patch detector is one graph as well.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ae_anomaly.errors import UserError
from ae_anomaly.nn.images import ImageRows
from ae_anomaly.nn.loop import Task
from ae_anomaly.params import AUTO_MIN_PATCH_STEPS, AUTO_PATCH, AUTO_PATCH_SIDE, MIN_PATCH

# Tiles overlap by half: each pixel lies in up to 4 tiles, and a defect anywhere is
# near the middle of one of them.
OVERLAP = 2


class PatchGrid:
    """The tiles of ``size`` x ``size`` pixels, ``size // 2`` apart, that cover an image of
    ``height`` x ``width`` (size <= both).

    The image is first padded (by repeating its edge pixels) up to a whole number of
    half-tiles, so that the grid is regular; what comes back is cropped to the image.
    """

    def __init__(self, size: int, height: int, width: int) -> None:
        if size % OVERLAP or size > min(height, width):
            raise ValueError(f"patch size {size} must be even and fit in {height}x{width}")
        self.size, self.height, self.width = size, height, width
        self.step = size // OVERLAP
        self.blocks = (-(-height // self.step), -(-width // self.step))  # ceil
        # Tiles per column and per row: one per block but the last OVERLAP - 1.
        self.rows, self.cols = (b - OVERLAP + 1 for b in self.blocks)

    @property
    def tiles_per_image(self) -> int:
        return self.rows * self.cols

    def tiles(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N * T, C, size, size) tiles, image by image, row by row."""
        n, c = images.shape[:2]
        step, (bh, bw) = self.step, self.blocks
        padded = F.pad(
            images, (0, bw * step - self.width, 0, bh * step - self.height), mode="replicate"
        )
        # (N, C, Bh, step, Bw, step): the image cut into half-tile blocks.
        blocks = padded.reshape(n, c, bh, step, bw, step)
        # A tile is OVERLAP x OVERLAP neighbouring blocks: gather each of its blocks for
        # every tile at once, by slicing the block grid with an offset.
        parts = [
            [blocks[:, :, a : a + self.rows, :, b : b + self.cols, :] for b in range(OVERLAP)]
            for a in range(OVERLAP)
        ]
        # Stacked on two new last axes: (N, C, rows, step, cols, step, b, a); then in
        # tile order (N, rows, cols, C, a, step, b, step).
        stacked = torch.stack([torch.stack(row, dim=-1) for row in parts], dim=-1)
        stacked = stacked.permute(0, 2, 4, 1, 7, 3, 6, 5)
        return stacked.reshape(n * self.tiles_per_image, c, self.size, self.size)

    def image_scores(self, tile_scores: torch.Tensor) -> torch.Tensor:
        """(N * T,) tile scores -> (N,): each image's most anomalous tile."""
        return tile_scores.reshape(-1, self.tiles_per_image).amax(dim=1)

    def assemble(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N * T, C, size, size) per-tile images or maps -> (N, C, H, W), the mean of the
        tiles over each pixel."""
        c = tiles.shape[1]
        step, (bh, bw) = self.step, self.blocks
        grid = tiles.reshape(-1, self.rows, self.cols, c, OVERLAP, step, OVERLAP, step)
        # (N, C, a, b, rows, step, cols, step): block (a, b) of every tile.
        grid = grid.permute(0, 3, 4, 6, 1, 5, 2, 7)
        total = torch.zeros(
            grid.shape[0], c, bh * step, bw * step, dtype=tiles.dtype, device=tiles.device
        )
        for a in range(OVERLAP):
            for b in range(OVERLAP):
                part = grid[:, :, a, b].reshape(-1, c, self.rows * step, self.cols * step)
                # Block (a, b) of tile (i, j) is block (i + a, j + b) of the image.
                total = total + F.pad(
                    part,
                    (b * step, (OVERLAP - 1 - b) * step, a * step, (OVERLAP - 1 - a) * step),
                )
        return (total / self._coverage(tiles))[:, :, : self.height, : self.width]

    def _coverage(self, like: torch.Tensor) -> torch.Tensor:
        """(1, 1, Bh * step, Bw * step): how many tiles cover each (padded) pixel."""
        step, (bh, bw) = self.step, self.blocks

        def along(blocks: int, tiles: int) -> torch.Tensor:
            index = torch.arange(blocks)
            # Block k lies in the tiles k - OVERLAP + 1 .. k that exist.
            count = (index.clamp(max=tiles - 1) - (index - OVERLAP + 1).clamp(min=0)) + 1
            return count.repeat_interleave(step).to(like.dtype)

        rows, cols = along(bh, self.rows), along(bw, self.cols)
        return (rows[:, None] * cols[None, :]).to(like.device)[None, None]


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One ``size`` x ``size`` crop of each image, at a place drawn from ``generator``."""
    n, c, height, width = images.shape
    tops = torch.randint(0, height - size + 1, (n,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator)
    offsets = torch.arange(size)
    rows = (tops[:, None] + offsets).to(images.device)  # (N, size)
    cols = (lefts[:, None] + offsets).to(images.device)
    index = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return images[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


def patch_task(task: Task, grid: PatchGrid) -> Task:
    """``task`` on a random crop of each training image (after its own augmentation),
    each image drawn once per tile of ``grid`` per epoch, for AUTO_MIN_PATCH_STEPS at
    least when the epochs are unset."""
    if task.restore is not None:
        raise UserError(
            "restore changes whole images (it turns them upright); it cannot train on "
            "patches: set patch to off"
        )
    augment, size = task.augment, grid.size

    def cropped(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if augment is not None:
            batch = augment(batch, generator)
        return random_crops(batch, size, generator)

    return dataclasses.replace(
        task, augment=cropped, repeats=grid.tiles_per_image, min_steps=AUTO_MIN_PATCH_STEPS
    )


def patch_size_for(patch: str | int, height: int, width: int, texture: bool = False) -> int | None:
    """The patch size the ``patch`` parameter means for images of ``height`` x ``width``
    (``texture``: the training images are one, see ``is_texture``); None for whole images."""
    if patch == "off":
        return None
    if patch == "auto":
        side = min(height, width)
        if side >= AUTO_PATCH_SIDE:
            return AUTO_PATCH
        # A texture at least two patches a side: the largest even patch of half the side.
        if texture and side >= 2 * MIN_PATCH:
            return min(AUTO_PATCH, side // 4 * 2)
        return None
    assert isinstance(patch, int)
    if patch > min(height, width):
        raise UserError(
            f"patch {patch} is larger than the images ({height}x{width}); use a smaller "
            "patch, or off for whole images"
        )
    return patch


# Below this, the mean training image is flat: the images are alike everywhere, a
# texture, not objects in place. Measured on the development suite (docs/own-images.md):
# textures 0.001, large crops of one photo 0.04; objects and digits 0.78 to 2.9.
TEXTURE_STRUCTURE = 0.1


def is_texture(images: ImageRows, chunk: int = 256) -> bool:
    """True when the (N, C, H, W) images look alike everywhere: the spatial variance of
    their mean image is small against the variance of a pixel across the images.

    The per-pixel sums are taken ``chunk`` images at a time, in float64, so that no copy
    of the whole set is made (the training images may fill most of the memory)."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].double().cpu()
        total += part.sum(dim=0)
        squares += part.square().sum(dim=0)
    n = len(images)
    mean_image = total / n
    structure = mean_image.var(dim=(1, 2)).mean()
    spread = ((squares - n * mean_image.square()) / max(n - 1, 1)).mean()
    return bool(structure < TEXTURE_STRUCTURE * spread)
