"""Architecture comparison: several models, the same data, seed and epoch budget.

Each model is trained and scored through the same detector and training loop
as ``ae-anomaly run``; what differs is only the network. The score is the same for
all: the one named, or the mean squared error for ``auto`` (which would give models
with and without a code different scores). The result is a table
(markdown and JSON), a figure of each model's reconstructions of a few clean
and corrupted digits, and AUROC against noise strength per model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ae_anomaly.config import RunConfig
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import write_bytes, write_json, write_text, write_yaml
from ae_anomaly.nn.callbacks import Callback
from ae_anomaly.nn.models import has_code, parameter_count
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.report.figures import figure_png
from ae_anomaly.report.metrics import format_number
from ae_anomaly.runs.experiment import detector_from_config, prepare_data
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder
from ae_anomaly.runs.results import evaluate_test
from ae_anomaly.scenarios import get_scenario
from ae_anomaly.scenarios.base import ScenarioData, TestSet
from ae_anomaly.scenarios.splits import labelled_test
from ae_anomaly.scores.names import AUTO_SCORE
from ae_anomaly.scores.term import require_code

DEFAULT_MODELS = ("fc-small", "fc-deep", "conv-strided", "conv-bn", "conv-keras")
# Test images per kind shown in the reconstruction figure.
EXAMPLES_PER_KIND = 2


@dataclass(frozen=True)
class ModelResult:
    """What one model achieved, ready for the table."""

    model: str
    parameters: int
    train_seconds: float
    epochs_run: int
    metrics: dict[str, Any]
    example_reconstructions: np.ndarray  # (k, H, W)

    def row(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "parameters": self.parameters,
            "train_seconds": round(self.train_seconds, 1),
            "epochs_run": self.epochs_run,
            "mean_error": {k: v["mean_score"] for k, v in self.metrics["by_kind"].items()},
            "mean_error_by_noise_std": {
                k: v["mean_score"] for k, v in self.metrics["by_noise_std"].items()
            },
            "auroc": {k: v["auroc"] for k, v in self.metrics["by_kind"].items() if k != "clean"},
            "auroc_by_noise_std": {k: v["auroc"] for k, v in self.metrics["by_noise_std"].items()},
            "auroc_by_angle_band": {
                k: v["auroc"] for k, v in self.metrics["by_angle_band"].items()
            },
            "overall_auroc": self.metrics["overall"]["auroc"],
        }


def compare_models(
    config: RunConfig,
    models: list[str],
    out: Path,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    on_model: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate each of ``models`` on the data ``config`` describes; write to ``out``."""
    # The comparison's tables and figures are per noise level and rotation band.
    if {"by_noise_std", "by_angle_band"} - {g.key for g in get_scenario(config.scenario).groups}:
        raise UserError(
            f"compare runs the corruptions scenario only, not {config.scenario}; "
            "use `ae-anomaly run --scenario ...` per model"
        )
    folder = RunFolder(out)
    folder.check(overwrite=overwrite, resume=False)
    if config.detector.score == AUTO_SCORE:
        mse = dataclasses.replace(config.detector, score="mse")
        config = config.model_copy(update={"detector": mse})
    data = prepare_data(config)
    shape = tuple(data.train.shape[1:])
    for name in models:  # every model must fit the data before any training starts
        require_code(config.detector.score, has_code(build_network(name, shape)), name)
    folder.prepare(overwrite=overwrite, resume=False)
    try:
        rows = _run_all(config, models, data, folder.work, callbacks, on_model)
    except BaseException:
        folder.discard()  # a comparison cannot be resumed: leave nothing half-written
        raise
    folder.finish()
    return rows


def _run_all(
    config: RunConfig,
    models: list[str],
    data: ScenarioData,
    work: Path,
    callbacks: Sequence[Callback],
    on_model: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    write_yaml(work / CONFIG_FILE, {**config.to_dict(), "models": models})
    test = labelled_test(data)
    examples = _example_indices(test)
    results = []
    for name in models:
        if on_model is not None:
            on_model(name)
        results.append(_train_and_score(config, name, data, examples, work, callbacks))
    rows = [r.row() for r in results]
    write_json(work / "comparison.json", {"models": rows})
    write_text(work / "comparison.md", markdown_tables(rows))
    write_bytes(
        work / "plots" / "reconstructions.png",
        plot_reconstructions(test, examples, results),
    )
    write_bytes(work / "plots" / "auroc_vs_noise.png", plot_auroc_vs_noise(rows))
    return rows


def _train_and_score(
    config: RunConfig,
    name: str,
    data: ScenarioData,
    examples: np.ndarray,
    folder: Path,
    callbacks: Sequence[Callback],
) -> ModelResult:
    model_config = config.model_copy(update={"model": name, "model_args": {}})
    started = time.perf_counter()
    detector = detector_from_config(model_config).fit(
        data.train, validation=data.val, callbacks=callbacks
    )
    seconds = time.perf_counter() - started
    test = labelled_test(data)
    scores = detector.decision_function(test.images)
    metrics = evaluate_test(scores, test, float(detector.threshold_), config)
    detector.save(folder / "models" / name)
    reconstructions, _ = detector.reconstruct(test.images[examples])
    return ModelResult(
        model=name,
        parameters=parameter_count(detector.model_),
        train_seconds=seconds,
        epochs_run=len(detector.history_),
        metrics=metrics,
        example_reconstructions=reconstructions[:, 0],
    )


def _example_indices(test: TestSet) -> np.ndarray:
    """The first few test images of each kind, in kind order: deterministic and varied."""
    picked = [
        np.flatnonzero(test.kinds == kind)[:EXAMPLES_PER_KIND]
        for kind in dict.fromkeys(test.kinds.tolist())
    ]
    return np.concatenate(picked)


# -- the table ---------------------------------------------------------------------------------


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Two tables: per kind (mean error and AUROC), then per noise strength."""
    kinds = list(rows[0]["mean_error"])
    corrupted = [k for k in kinds if k != "clean"]
    head = ["model", "parameters", "train s", "epochs"]
    head += [f"mean err {k}" for k in kinds] + [f"AUROC {k}" for k in corrupted]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for row in rows:
        cells = [row["model"], f"{row['parameters']:,}", f"{row['train_seconds']:.0f}"]
        cells.append(str(row["epochs_run"]))
        cells += [format_number(row["mean_error"][k], 5) for k in kinds]
        cells += [format_number(row["auroc"][k], 4) for k in corrupted]
        lines.append(_md_row(cells))
    stds = list(rows[0]["auroc_by_noise_std"])
    head = ["model"] + [f"noise {s}: mean err / AUROC" for s in stds]
    lines += ["", _md_row(head), _md_row(["---"] * len(head))]
    for row in rows:
        errors, aurocs = row["mean_error_by_noise_std"], row["auroc_by_noise_std"]
        cells = [row["model"]]
        cells += [f"{format_number(errors[s], 5)} / {format_number(aurocs[s], 4)}" for s in stds]
        lines.append(_md_row(cells))
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# -- figures -----------------------------------------------------------------------------------


def plot_reconstructions(test: TestSet, examples: np.ndarray, results: list[ModelResult]) -> bytes:
    """One row per example digit: the input, then each model's reconstruction."""
    columns = 1 + len(results)
    fig = Figure(figsize=(1.3 * columns + 1.6, 1.3 * len(examples) + 0.5), layout="constrained")
    axes = fig.subplots(len(examples), columns, squeeze=False)
    inputs = test.images[examples][:, 0].numpy()
    for row, index in enumerate(examples):
        panels = [inputs[row], *(r.example_reconstructions[row] for r in results)]
        for ax, panel in zip(axes[row], panels, strict=True):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(test.describe(int(index), sep="\n"), fontsize="small")
    for ax, title in zip(axes[0], ["input", *(r.model for r in results)], strict=True):
        ax.set_title(title, fontsize="small")
    return figure_png(fig)


def plot_auroc_vs_noise(rows: list[dict[str, Any]]) -> bytes:
    """AUROC of noisy against clean digits, per noise strength, one line per model."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for row in rows:
        stds = [float(s) for s in row["auroc_by_noise_std"]]
        aurocs = [np.nan if v is None else v for v in row["auroc_by_noise_std"].values()]
        ax.plot(stds, aurocs, marker="o", label=row["model"])
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="noise standard deviation", ylabel="AUROC (noisy vs clean)", ylim=(0.4, 1.02))
    ax.set_title("Separating noisy from clean digits")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure_png(fig)
