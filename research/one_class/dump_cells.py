"""Research harness (not part of the package or the test suite): train one-class cells
with the one-class recipe and dump what offline scoring needs.

For each (dataset, seed, variant, class) it trains the recipe's detector through
the package's own AutoencoderDetector, then saves, for the training, held-out
(val), development (dev: 2,000 training images of the other classes, drawn with
the generator [seed, 991]) and test images, and for each image and its mirror:
the five pixel scores, the code, the code of the reconstruction and the pooled
last encoder feature map. score_cells.py then tries scores on them in seconds.

    python research/one_class/dump_cells.py fashion-mnist 0 base 0 1 2 3 4 5 6 7 8 9

Variants: base (the recipe: since session 5 with its weight decay, so the base
cells of session 4 are the recipe without it), flip (random horizontal flips while training),
code32, e10 (10 epochs), deep (conv-dense with two more 3x3 conv blocks at
7x7 in the encoder and in the decoder: 110,241 parameters, registered here
only), mask (an 8x8 patch of half the images zeroed, the whole image the
target), rot90 (ARNet-style: turned by a multiple of 90
degrees, the upright image the target); session 5: noisy (noise on the code
while training), ssimloss (MSE + 0.1 x (1 - SSIM) as the loss), shift (random
shifts of up to 2 pixels), stage3 (a third stride-2 stage, 4x4x64), code8, and
wd / wd2 / wd1 (Adam's weight decay 5e-4 / 2e-3 / 1e-4; 5e-4 is the recipe's
since). "variant~N" keeps seed's split and development images but draws the
initial weights from seed + N, so such cells ensemble on one split.
flip, shift, ssimloss, mask and rot90 change the detector's training through
its training_task hook (VariantDetector below): the package has no such
options, on purpose (BENCHMARKS.md, What was tried).
Every variant is the one-class recipe (OneClass.recipe) with its own change, so since
session 5 each has the recipe's weight decay; the cells of sessions 4 and 5
(other than wd, wd1, wd2) were made before the recipe had one. Session 6:
bce (the training loss), lr2 / lr4 / lr05 (learning rate 2e-3 / 4e-3 / 5e-4),
b64 (batch 64), e30 (30 epochs); the recipe has since had lr2's learning
rate, so later cells of every variant have it. A cell is always one network
(the recipe's two members are made here as "variant~1" cells, ensembled by
score_cells.py).
Cells go to $AE_RESEARCH_CELLS (default research-cells/); each has an .npz and
the saved detector beside it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ae_anomaly.config import build_config
from ae_anomaly.data.sources import load_dataset
from ae_anomaly.data.tensors import to_image_tensor
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.nn.loop import Task
from ae_anomaly.nn.models import WithCode
from ae_anomaly.params import AutoencoderTraining
from ae_anomaly.runs.experiment import detector_from_config
from ae_anomaly.scenarios.one_class import OneClass, one_class_scenario
from ae_anomaly.scenarios.splits import labelled_test
from ae_anomaly.scores.pixel import image_scores

CELLS = Path(os.environ.get("AE_RESEARCH_CELLS", "research-cells"))
PIXEL = ["mse", "mae", "blur-mse", "rel-blur", "ssim"]
DEV_STREAM = 991


def register_research_models() -> None:
    """The research-only architectures: conv-dense-deep, -noisy and -stage3."""
    from torch import nn

    from ae_anomaly.nn import conv, models

    class ConvDenseDeep(conv.ConvDense):
        """conv-dense with two more 3x3 conv blocks at 7x7 in the encoder and the decoder."""

        name = "conv-dense-deep"

        def __init__(self, input_shape: Any, channels: Any = (16, 32), code: int = 16) -> None:
            super().__init__(input_shape, channels, code)
            c2 = self.grid[0]
            self.encoder = nn.Sequential(
                *list(self.encoder)[:-2],
                *conv._conv_bn(nn.Conv2d(c2, c2, 3, padding=1), c2),
                *conv._conv_bn(nn.Conv2d(c2, c2, 3, padding=1), c2),
                *list(self.encoder)[-2:],
            )
            self.decoder = nn.Sequential(
                *conv._conv_bn(nn.Conv2d(c2, c2, 3, padding=1), c2),
                *conv._conv_bn(nn.Conv2d(c2, c2, 3, padding=1), c2),
                *list(self.decoder),
            )

    class ConvDenseNoisy(conv.ConvDense):
        """conv-dense whose code gets noise (0.2 of each unit's batch spread) in training."""

        name = "conv-dense-noisy"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            code = self.encode(x)
            if self.training:
                code = code + 0.2 * code.detach().std(0) * torch.randn_like(code)
            return self.decode(code)

    class ConvDenseStage3(conv.ConvDense):
        """conv-dense with a third stride-2 stage: 28 -> 14 -> 7 -> 4 and back."""

        name = "conv-dense-stage3"

        def __init__(self, input_shape: Any, channels: Any = (16, 32), code: int = 16) -> None:
            super().__init__(input_shape, channels, code)
            c2 = self.grid[0]
            c3 = 2 * c2
            self.grid = (c3, 4, 4)
            self.encoder = nn.Sequential(
                *list(self.encoder)[:-2],
                *conv._conv_bn(nn.Conv2d(c2, c3, 3, stride=2, padding=1), c3),
                nn.Flatten(),
                nn.Linear(c3 * 16, code),
            )
            self.expand = nn.Sequential(
                nn.Linear(code, c3 * 16), nn.BatchNorm1d(c3 * 16), nn.ReLU(inplace=True)
            )
            self.decoder = nn.Sequential(
                *conv._conv_bn(nn.ConvTranspose2d(c3, c2, 3, stride=2, padding=1), c2),
                *list(self.decoder),
            )

    models.register_model("conv-dense-deep", ConvDenseDeep, "research only")
    models.register_model("conv-dense-noisy", ConvDenseNoisy, "research only")
    models.register_model("conv-dense-stage3", ConvDenseStage3, "research only")


def hflip_augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(batch), generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(batch.device), batch.flip(-1), batch)


def shift_augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to 2 pixels each way (zero fill), in 25 groups, no per-image loop."""
    n = len(batch)
    dy = torch.randint(-2, 3, (n,), generator=generator)
    dx = torch.randint(-2, 3, (n,), generator=generator)
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    h, w = batch.shape[-2:]
    out = torch.empty_like(batch)
    for y in range(-2, 3):
        for x in range(-2, 3):
            chosen = ((dy == y) & (dx == x)).to(batch.device)
            out[chosen] = padded[chosen, :, 2 - y : 2 - y + h, 2 - x : 2 - x + w]
    return out


def ssim_mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE plus 0.1 x the mean structural dissimilarity (1 - SSIM)."""
    from ae_anomaly.scores.pixel import ssim_map

    mse = torch.nn.functional.mse_loss(output, target)
    return mse + 0.1 * (1 - ssim_map(target, output)).mean()


def mask_restore(
    batch: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = batch.shape
    chosen = torch.rand(n, generator=generator) < 0.5
    top = torch.randint(0, h - 8, (n,), generator=generator).view(-1, 1, 1)
    left = torch.randint(0, w - 8, (n,), generator=generator).view(-1, 1, 1)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = (rows >= top) & (rows < top + 8) & (cols >= left) & (cols < left + 8)
    mask = (inside & chosen.view(-1, 1, 1)).unsqueeze(1).to(batch.device)
    return batch.masked_fill(mask, 0.0), batch


def rot90_restore(
    batch: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    turns = torch.randint(0, 4, (len(batch),), generator=generator)
    inputs = batch.clone()
    for k in (1, 2, 3):
        inputs[turns == k] = torch.rot90(batch[turns == k], k, dims=(2, 3))
    return inputs, batch


# A variant that names a model drops the recipe (config.py), so every variant
# restates the whole recipe, taken from OneClass.recipe to stay the same, and
# changes only its own part.
RECIPE = OneClass.recipe
RECIPE_TRAINING = RECIPE["training"]
OVERRIDES: dict[str, dict[str, Any]] = {
    "code32": {**RECIPE, "model_args": {"code": 32}},
    "code8": {**RECIPE, "model_args": {"code": 8}},
    "deep": {**RECIPE, "model": "conv-dense-deep"},
    "noisy": {**RECIPE, "model": "conv-dense-noisy"},
    "stage3": {**RECIPE, "model": "conv-dense-stage3"},
    "e10": {**RECIPE, "training": {**RECIPE_TRAINING, "epochs": 10, "patience": 10}},
    # Adam's L2 weight decay of 5e-4 (the recipe's since session 5), 2e-3, 1e-4.
    "wd": {**RECIPE, "training": {**RECIPE_TRAINING, "weight_decay": 5e-4}},
    "wd2": {**RECIPE, "training": {**RECIPE_TRAINING, "weight_decay": 2e-3}},
    "wd1": {**RECIPE, "training": {**RECIPE_TRAINING, "weight_decay": 1e-4}},
    # Session 6: the training loss, learning rate, batch size and length of the recipe.
    "bce": {**RECIPE, "training": {**RECIPE_TRAINING, "loss": "bce"}},
    "lr2": {**RECIPE, "training": {**RECIPE_TRAINING, "learning_rate": 2e-3}},
    "lr05": {**RECIPE, "training": {**RECIPE_TRAINING, "learning_rate": 5e-4}},
    "lr4": {**RECIPE, "training": {**RECIPE_TRAINING, "learning_rate": 4e-3}},
    "b64": {**RECIPE, "training": {**RECIPE_TRAINING, "batch_size": 64}},
    "e30": {**RECIPE, "training": {**RECIPE_TRAINING, "epochs": 30, "patience": 30}},
}
# Variants that change the detector's training (the package has no such options).
TRAIN_HOOKS: dict[str, dict[str, Any]] = {
    "flip": {"augment": hflip_augment},
    "shift": {"augment": shift_augment},
    "ssimloss": {"loss": ssim_mse_loss},
    "mask": {"restore": mask_restore},
    "rot90": {"restore": rot90_restore},
}


@dataclasses.dataclass(kw_only=True, eq=False, repr=False)
class VariantDetector(AutoencoderDetector):
    """The package's detector, trained with one research variant's change of its task."""

    variant: str = "base"

    def training_task(self, training: AutoencoderTraining) -> Task:
        return dataclasses.replace(
            super().training_task(training), **TRAIN_HOOKS.get(self.variant, {})
        )


def dump(
    model: torch.nn.Module, images: torch.Tensor, turn: int, mirror: bool
) -> dict[str, np.ndarray]:
    """Pixel scores of recon(T(x)) against x, codes, reconstruction codes, pooled features."""
    coded = WithCode(model).eval()
    out: dict[str, list[torch.Tensor]] = {k: [] for k in [*PIXEL, "code", "rcode", "feat"]}
    with torch.inference_mode():
        for start in range(0, len(images), 1024):
            x = images[start : start + 1024]
            x = x.flip(-1) if mirror else x
            seen = torch.rot90(x, turn, dims=(2, 3)).contiguous(memory_format=torch.channels_last)
            r, code = coded(seen)
            for kind in PIXEL:
                out[kind].append(image_scores(x, r, kind))
            out["code"].append(code)
            out["rcode"].append(model.encode(r))
            features = model.encoder[:-2](seen)  # the last conv block, before the dense code
            out["feat"].append(torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def run_cell(dataset_name: str, seed: int, tagged_variant: str, normal_class: int) -> None:
    path = CELLS / f"{dataset_name}-{tagged_variant}-s{seed}-c{normal_class}.npz"
    if path.exists():
        return
    # "stage3~1": the stage3 variant on seed's split and dev images, initial weights
    # from seed + 1, so cells of one split can be ensembled and measured on dev.
    variant, _, offset = tagged_variant.partition("~")
    dataset = load_dataset(dataset_name)
    tree = {
        "scenario": "one-class",
        "seed": seed + int(offset or 0),
        "data": {"dataset": dataset_name, "normal_class": normal_class},
    }
    # One network per cell: score_cells.py makes ensembles from "variant~N" cells.
    config = build_config({**tree, **OVERRIDES.get(variant, {})}, {"members": 1})
    data = one_class_scenario(dataset, config.data, seed)
    others = np.flatnonzero(dataset.train_labels != normal_class)
    dev_index = np.sort(
        np.random.default_rng([seed, DEV_STREAM]).choice(others, 2000, replace=False)
    )
    detector = VariantDetector(**detector_from_config(config).get_params(), variant=variant)
    started = time.perf_counter()
    detector.fit(data.train, validation=data.val)
    seconds = time.perf_counter() - started
    test = labelled_test(data)
    result: dict[str, Any] = {
        "train_seconds": seconds,
        "test_labels": test.labels,
        "test_classes": data.test.source_label,
        "dev_classes": dataset.train_labels[dev_index],
        "product_test": detector.decision_function(test.images),
        "product_val": detector.validation_scores_,
    }
    sets = {
        "train": data.train,
        "val": data.val,
        "dev": to_image_tensor(dataset.train_images[dev_index]),
        "test": test.images,
    }
    turns = (0, 1, 2, 3) if variant == "rot90" else (0,)
    for name, images in sets.items():
        for turn in turns:
            for mirror in (False, True) if turn == 0 else (False,):
                tag = name + ("_f" if mirror else "") + (f"_t{turn}" if turn else "")
                for key, value in dump(detector.model_, images, turn, mirror).items():
                    result[f"{tag}_{key}"] = value
    CELLS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **result)
    detector.save(CELLS / (path.stem + "-det"))
    print(dataset_name, tagged_variant, seed, normal_class, f"in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    register_research_models()
    name, seed_arg, variant_arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for k in map(int, sys.argv[4:]):
        run_cell(name, seed_arg, variant_arg, k)
