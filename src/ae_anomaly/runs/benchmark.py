"""The one-class novelty benchmark: one detector per (class, seed), AUROC per class and mean.

Protocol: for each class k, the detector trains on class k of the training split
(``val_fraction`` of it held out for early stopping and the threshold) and is
tested on the whole test split, where every image not of class k is an anomaly.
Nothing is chosen from test labels: every setting comes from the config, fixed
once for all classes. Each finished (class, seed) cell is written to
``cells/`` at once, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ae_anomaly.config import RunConfig, read_yaml, validate_config
from ae_anomaly.data.sources import Dataset, load_dataset
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_bytes, write_json, write_text, write_yaml
from ae_anomaly.nn import distributed
from ae_anomaly.nn.callbacks import Callback
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.report.figures import figure_png
from ae_anomaly.runs.experiment import detector_from_config
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder
from ae_anomaly.runs.results import evaluate_test
from ae_anomaly.scenarios.one_class import OneClass, checked_class, one_class_scenario
from ae_anomaly.scenarios.splits import labelled_test

PLAN_FILE = "plan.json"
CELLS_DIR = "cells"
# Mean AUROC (%) over the 10 classes as published; see BENCHMARKS.md for sources.
PUBLISHED: dict[str, dict[str, float]] = {
    "mnist": {
        "Deep SVDD": 94.8,
        "OCGAN": 97.5,
        "GeoTrans": 98.0,
        "l2 autoencoder": 98.3,
        "ARNet": 98.3,
    },
    "fashion-mnist": {"CAE + OC-SVM": 91.7, "GeoTrans": 93.5, "ARNet": 93.9},
}


@dataclass(frozen=True)
class Cell:
    """The result of one detector: trained on ``normal_class`` with ``seed``."""

    normal_class: int
    seed: int
    auroc: float
    auprc: float
    accuracy: float | None  # at the config's threshold
    macro_f1: float | None
    epochs_run: int
    train_seconds: float
    score_seconds: float


@dataclass(frozen=True)
class BenchmarkResult:
    folder: Path
    summary: dict[str, Any]
    markdown: str


def run_benchmark(
    config: RunConfig,
    classes: Sequence[int] | None,
    seeds: Sequence[int],
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    on_cell: Callable[[int, int], None] | None = None,
) -> BenchmarkResult:
    """Train and test one detector per (class, seed); write tables and a plot to ``out``.

    ``classes`` None means every class of the dataset. ``config`` supplies every other
    setting; its scenario must be one-class (its normal_class is replaced per cell).
    """
    started = time.perf_counter()
    if config.scenario != OneClass.name:
        raise UserError(f"the benchmark runs the one-class scenario, not {config.scenario}")
    # Under torchrun each process trains cells of its own (one per device at a time).
    with distributed.session(config.device):
        return _run(config, classes, seeds, out, overwrite, resume, callbacks, on_cell, started)


def _run(
    config: RunConfig,
    classes: Sequence[int] | None,
    seeds: Sequence[int],
    out: Path,
    overwrite: bool,
    resume: bool,
    callbacks: Sequence[Callback],
    on_cell: Callable[[int, int], None] | None,
    started: float,
) -> BenchmarkResult:
    folder = RunFolder(out)
    distributed.from_main(lambda: folder.check(overwrite=overwrite, resume=resume))
    dataset = load_dataset(config.data.dataset, config.data.data_dir)
    chosen = list(range(len(dataset.class_names))) if classes is None else list(classes)
    for k in chosen:
        checked_class(dataset, k)
    plan = {"classes": chosen, "seeds": list(seeds)}
    build_network(config.model, (1, *dataset.train_images.shape[1:]), **config.model_args)

    def start() -> None:
        if resume:
            _check_same_plan(folder.work, config, plan)
        folder.prepare(overwrite=overwrite, resume=resume)
        write_yaml(folder.work / CONFIG_FILE, config.to_dict())
        write_json(folder.work / PLAN_FILE, plan)

    distributed.from_main(start)
    rank, ranks = distributed.rank(), distributed.world_size()
    order = [(k, seed) for seed in seeds for k in chosen]
    with distributed.alone():
        for k, seed in order[rank::ranks]:
            if on_cell is not None:
                on_cell(k, seed)
            _cached_or_run(folder.work, config, dataset, k, seed, callbacks)
    distributed.barrier()
    if rank > 0:
        return BenchmarkResult(folder.work, {}, "")
    cells = [_cached_or_run(folder.work, config, dataset, k, seed, ()) for k, seed in order]
    summary = summarise(cells, dataset, config, time.perf_counter() - started)
    markdown = markdown_table(summary)
    write_json(folder.work / "benchmark.json", summary)
    write_text(folder.work / "benchmark.md", markdown)
    write_bytes(folder.work / "plots" / "auroc_per_class.png", plot_per_class(summary))
    return BenchmarkResult(folder.finish(), summary, markdown)


def _check_same_plan(work: Path, config: RunConfig, plan: dict[str, Any]) -> None:
    """A resumed benchmark must use the settings its finished cells were computed with."""
    if (work / CONFIG_FILE).exists():
        saved = validate_config(read_yaml(work / CONFIG_FILE))
        if _comparable(saved) != _comparable(config):
            raise UserError(
                f"cannot resume {work} with a different config; "
                "only the device and the data folder may change"
            )
    if (work / PLAN_FILE).exists():
        saved_plan = json.loads((work / PLAN_FILE).read_text())
        if saved_plan != plan:
            raise UserError(
                f"cannot resume {work} with other classes or seeds "
                f"(it was started with {saved_plan})"
            )


def _comparable(config: RunConfig) -> dict[str, Any]:
    """The config less what a cell's result does not depend on: the device, where the
    data files are, and the normal class (set per cell)."""
    tree = config.to_dict()
    tree["device"] = None
    tree["data"]["data_dir"] = tree["data"]["normal_class"] = None
    return tree


def _cached_or_run(
    work: Path,
    config: RunConfig,
    dataset: Dataset,
    normal_class: int,
    seed: int,
    callbacks: Sequence[Callback],
) -> Cell:
    path = work / CELLS_DIR / f"class{normal_class}-seed{seed}.json"
    if path.exists():
        return Cell(**json.loads(path.read_text()))
    cell = run_cell(config, dataset, normal_class, seed, callbacks)
    write_json(path, asdict(cell))
    return cell


def run_cell(
    config: RunConfig,
    dataset: Dataset,
    normal_class: int,
    seed: int,
    callbacks: Sequence[Callback] = (),
) -> Cell:
    """Train on ``normal_class`` with ``seed``, score the test split, measure."""
    data_config = config.data.model_copy(update={"normal_class": normal_class})
    cell_config = config.model_copy(update={"data": data_config, "seed": seed})
    data = one_class_scenario(dataset, data_config, seed)
    started = time.perf_counter()
    detector = detector_from_config(cell_config).fit(
        data.train, validation=data.val, callbacks=callbacks
    )
    trained = time.perf_counter()
    test = labelled_test(data)
    scores = detector.decision_function(test.images)
    metrics = evaluate_test(scores, test, float(detector.threshold_), config)
    at = metrics["at_threshold"]
    return Cell(
        normal_class=normal_class,
        seed=seed,
        auroc=float(metrics["overall"]["auroc"]),
        auprc=float(metrics["overall"]["auprc"]),
        accuracy=at["accuracy"],
        macro_f1=at["macro_f1"],
        epochs_run=len(detector.history_),
        train_seconds=trained - started,
        score_seconds=time.perf_counter() - trained,
    )


def summarise(
    cells: list[Cell], dataset: Dataset, config: RunConfig, seconds: float
) -> dict[str, Any]:
    """Per-class AUROC (%) per seed with mean and std, the class mean per seed, timings."""
    classes = list(dict.fromkeys(c.normal_class for c in cells))
    seeds = list(dict.fromkeys(c.seed for c in cells))
    grid = np.array(
        [[_find(cells, k, s).auroc * 100 for s in seeds] for k in classes]
    )  # (classes, seeds)
    per_seed_mean = grid.mean(axis=0)
    return {
        "dataset": dataset.name,
        "classes": [
            {
                "class": k,
                "name": dataset.class_names[k],
                "auroc_by_seed": grid[i].tolist(),
                "mean": float(grid[i].mean()),
                "std": float(grid[i].std()),
            }
            for i, k in enumerate(classes)
        ],
        "seeds": seeds,
        "mean_by_seed": per_seed_mean.tolist(),
        # The headline: the mean over classes, then its mean and spread over seeds.
        "mean": float(per_seed_mean.mean()),
        "std_over_seeds": float(per_seed_mean.std()),
        "cells": [asdict(c) for c in cells],
        "train_seconds": float(sum(c.train_seconds for c in cells)),
        "score_seconds": float(sum(c.score_seconds for c in cells)),
        "wall_seconds": seconds,
        "machine": machine_description(),
        "recipe": {
            "model": config.model,
            "model_args": config.model_args,
            "training": asdict(config.training),
            "score": config.detector.score,
            "threshold": config.detector.threshold,
        },
        "published": PUBLISHED.get(dataset.name, {}),
    }


def _find(cells: list[Cell], normal_class: int, seed: int) -> Cell:
    return next(c for c in cells if c.normal_class == normal_class and c.seed == seed)


def machine_description() -> str:
    device = "CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.system()} {platform.machine()}, {_threads(torch.get_num_threads())}, "
        f"{device}, torch {torch.__version__}"
    )


def _threads(count: int) -> str:
    return "1 torch thread" if count == 1 else f"{count} torch threads"


def markdown_table(summary: dict[str, Any]) -> str:
    """The per-class table (AUROC %, per seed, mean ± std), the mean row, published figures."""
    seeds = summary["seeds"]
    head = ["class", "name", *(f"seed {s}" for s in seeds), "mean", "std"]
    lines = [
        f"One-class benchmark on {summary['dataset']}: AUROC (%) per normal class",
        "",
        _row(head),
        _row(["---"] * len(head)),
    ]
    for row in summary["classes"]:
        cells = [str(row["class"]), row["name"], *(f"{v:.2f}" for v in row["auroc_by_seed"])]
        lines.append(_row([*cells, f"{row['mean']:.2f}", f"{row['std']:.2f}"]))
    means = [f"**{v:.2f}**" for v in summary["mean_by_seed"]]
    lines.append(
        _row(["mean", "", *means, f"**{summary['mean']:.2f}**", f"{summary['std_over_seeds']:.2f}"])
    )
    lines += [
        "",
        f"Wall time {summary['wall_seconds']:.0f} s for {len(summary['cells'])} detectors "
        f"(training {summary['train_seconds']:.0f} s, scoring {summary['score_seconds']:.0f} s); "
        f"{summary['machine']}.",
    ]
    if summary["published"]:
        published = ", ".join(f"{name} {value}" for name, value in summary["published"].items())
        lines += ["", f"Published mean AUROC (%): {published}."]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def plot_per_class(summary: dict[str, Any]) -> bytes:
    """Bars: mean AUROC per class with the spread over seeds; a line at the class mean."""
    rows = summary["classes"]
    fig = Figure(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(
        x,
        [r["mean"] for r in rows],
        yerr=[r["std"] for r in rows],
        capsize=3,
        color="tab:blue",
    )
    ax.axhline(summary["mean"], color="black", linestyle="--", label=f"mean {summary['mean']:.2f}")
    for name, value in summary["published"].items():
        ax.axhline(value, color="tab:gray", linestyle=":", linewidth=1)
        ax.text(len(rows) - 0.5, value, f" {name} {value}", va="center", fontsize="x-small")
    low = min(min(r["mean"] - r["std"] for r in rows), *summary["published"].values(), 100.0)
    ax.set_xticks(x, [f"{r['class']} {r['name']}" for r in rows], rotation=30, ha="right")
    ax.set(
        ylim=(max(0.0, low - 3), 100.5),
        ylabel="AUROC (%)",
        title=f"One-class AUROC per normal class: {summary['dataset']}",
    )
    ax.legend(loc="lower left")
    return figure_png(fig)
