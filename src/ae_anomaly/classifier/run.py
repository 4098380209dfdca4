"""Runners of the ``classify`` commands: train and report, or score a saved classifier.

``train_classifier_run`` splits the training set (a held-out share for early
stopping; the test set is only scored at the end), trains, and leaves in the
output folder: ``config.yaml``, ``classifier/`` (weights + JSON),
``metrics.json``, ``plots/confusion.png``, ``plots/loss.png`` and
``report.html``. ``evaluate_classifier_run`` scores a saved classifier on a
test split and, given a folder, writes the same metrics, plot and report.
Both write into ``<out>.incomplete`` and rename it when complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from ae_anomaly.classifier.config import ClassifierConfig
from ae_anomaly.classifier.model import DigitClassifier, DigitClassifierModel
from ae_anomaly.data.sources import Dataset, load_dataset
from ae_anomaly.fileio import write_json, write_yaml
from ae_anomaly.nn.callbacks import Callback
from ae_anomaly.nn.device import select_device
from ae_anomaly.report.figures import Plot, figure_png, plot_loss
from ae_anomaly.report.metrics import format_number
from ae_anomaly.report.page import html_table, render_page, write_page
from ae_anomaly.runs.folder import CONFIG_FILE, RunFolder
from ae_anomaly.scenarios.splits import TEST_STREAM, limited_order, split_order

CLASSIFIER_DIR = "classifier"


@dataclass(frozen=True)
class ClassifierRunResult:
    folder: Path | None  # None for an evaluation that wrote nothing
    metrics: dict[str, Any]
    seconds: float


def classifier_from_config(config: ClassifierConfig) -> DigitClassifierModel:
    """The untrained classifier a config describes."""
    return DigitClassifierModel(
        **asdict(config.training),
        val_fraction=config.data.val_fraction,
        device=config.device,
        seed=config.seed,
    )


def split_training(
    dataset: Dataset, config: ClassifierConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle the training split, keep ``train_limit`` images, hold out ``val_fraction``.

    Returns train images, train labels, validation images, validation labels.
    """
    order, n_val = split_order(len(dataset.train_images), config.data, config.seed)
    val, train = order[:n_val], order[n_val:]
    images, labels = dataset.train_images, dataset.train_labels
    return images[train], labels[train], images[val], labels[val]


def test_slice(dataset: Dataset, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole test split, or a random ``limit`` of it (a prefix could miss some classes)."""
    if limit is None or limit >= len(dataset.test_images):
        return dataset.test_images, dataset.test_labels
    chosen = limited_order(len(dataset.test_images), limit, seed, TEST_STREAM)
    return dataset.test_images[chosen], dataset.test_labels[chosen]


def train_classifier_run(
    config: ClassifierConfig,
    out: Path,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> ClassifierRunResult:
    """Train the classifier ``config`` describes, evaluate it on the test split, write ``out``."""
    started = time.perf_counter()
    folder = RunFolder(out)
    # Everything that can be refused cheaply is refused before anything is written.
    folder.check(overwrite=overwrite, resume=False)
    select_device(config.device)
    dataset = load_dataset(config.data.dataset, config.data.data_dir)
    train_x, train_y, val_x, val_y = split_training(dataset, config)
    test_x, test_y = test_slice(dataset, config.data.test_limit, config.seed)
    DigitClassifier((1, *train_x.shape[1:]))  # an image size it cannot take fails here
    folder.prepare(overwrite=overwrite, resume=False)
    try:
        write_yaml(folder.work / CONFIG_FILE, config.to_dict())
        classifier = classifier_from_config(config).fit(
            train_x,
            train_y,
            val_x,
            val_y,
            class_names=dataset.class_names,
            dataset=dataset.name,
            callbacks=callbacks,
        )
        metrics = {
            "dataset": dataset.name,
            "split": "test",
            **classifier.evaluate(test_x, test_y),
            "training": training_summary(classifier),
        }
        classifier.save(folder.work / CLASSIFIER_DIR)
        metrics["seconds"] = time.perf_counter() - started
        title = f"ae-anomaly: digit classifier on {dataset.name}"
        write_outputs(
            folder.work,
            title,
            metrics,
            classifier.history_,
            yaml.safe_dump(config.to_dict(), sort_keys=False),
        )
    except BaseException:
        # Nothing to resume from: leave no half-written folder behind.
        folder.discard()
        raise
    return ClassifierRunResult(folder.finish(), metrics, metrics["seconds"])


def training_summary(classifier: DigitClassifierModel) -> dict[str, Any]:
    return {
        "epochs_run": len(classifier.history_),
        "best_epoch": classifier.best_epoch_,
        "n_train": classifier.n_train_,
        "n_val": classifier.n_val_,
        "val_accuracy": classifier.val_accuracy_,
        "seconds": classifier.train_seconds_,
        "device": str(classifier.device_),
        "history": classifier.history_,
    }


def evaluate_classifier_run(
    classifier_dir: Path,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    test_limit: int | None = None,
    device: str = "auto",
    seed: int = 0,
    out: Path | None = None,
    overwrite: bool = False,
) -> ClassifierRunResult:
    """Score a saved classifier on a test split (by default, of the dataset it was trained on)."""
    started = time.perf_counter()
    folder = RunFolder(out) if out is not None else None
    if folder is not None:
        folder.check(overwrite=overwrite, resume=False)
    classifier = DigitClassifierModel.load(classifier_dir, device=device)
    name = dataset or classifier.dataset_ or "mnist"
    data = load_dataset(name, data_dir)
    test_x, test_y = test_slice(data, test_limit, seed)
    metrics = {
        "dataset": name,
        "split": "test",
        "classifier": str(Path(classifier_dir).resolve()),
        "trained_on": classifier.dataset_,
        **classifier.evaluate(test_x, test_y),
    }
    metrics["seconds"] = time.perf_counter() - started
    if folder is None:
        return ClassifierRunResult(None, metrics, metrics["seconds"])
    settings = {
        "classifier": metrics["classifier"],
        "dataset": name,
        "data_dir": None if data_dir is None else str(data_dir),
        "test_limit": test_limit,
        "device": device,
        "seed": seed,
    }
    folder.prepare(overwrite=overwrite, resume=False)
    try:
        write_yaml(folder.work / CONFIG_FILE, settings)
        title = f"ae-anomaly: digit classifier evaluated on {name}"
        text = yaml.safe_dump(settings, sort_keys=False)
        write_outputs(folder.work, title, metrics, classifier.history_, text)
    except BaseException:
        folder.discard()
        raise
    return ClassifierRunResult(folder.finish(), metrics, metrics["seconds"])


# ----------------------------------------------------------------------------- artefacts


def write_outputs(
    folder: Path,
    title: str,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    config_text: str,
) -> None:
    """``metrics.json``, ``plots/confusion.png``, ``plots/loss.png`` (with a history), report."""
    write_json(folder / "metrics.json", metrics)
    plots = [
        Plot(
            "confusion.png",
            plot_class_confusion(metrics),
            "Confusion matrix",
            "Test images counted by true class (rows) and predicted class (columns); "
            "everything off the diagonal is a mistake.",
        )
    ]
    if history:
        plots.append(
            Plot(
                "loss.png",
                plot_loss(history, title="Cross-entropy"),
                "Training curve",
                "Mean cross-entropy per epoch on the training images (shifted, with dropout) "
                "and the held-out validation images; the weights of the best validation "
                "epoch are kept.",
            )
        )
    write_page(folder, plots, render_classifier_html(title, metrics, plots, config_text))


def plot_class_confusion(metrics: dict[str, Any]) -> bytes:
    """The class confusion matrix with counts in the cells; a log colour scale shows the errors."""
    cm = np.asarray(metrics["confusion_matrix"])
    names = metrics["class_names"]
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    # log1p: the diagonal holds ~1000 per class, errors a handful; a linear scale
    # would show the errors as blank.
    image = ax.imshow(np.log1p(cm), cmap="Blues", vmin=0)
    for (row, col), count in np.ndenumerate(cm):
        if count:
            dark = np.log1p(count) > np.log1p(cm.max()) / 2
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ticks = list(range(len(names)))
    ax.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(
        f"{metrics['dataset']} test: accuracy {metrics['accuracy']:.4f} "
        f"({metrics['errors']} errors in {metrics['n']})"
    )
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    return figure_png(fig)


def render_classifier_html(
    title: str, metrics: dict[str, Any], plots: list[Plot], config_text: str
) -> str:
    """One self-contained page: headline, per-class table, figures, configuration."""
    f = format_number
    headline = [
        ("dataset (test split)", metrics["dataset"]),
        ("test images", str(metrics["n"])),
        ("accuracy", f(metrics["accuracy"])),
        ("errors", str(metrics["errors"])),
        ("macro precision", f(metrics["macro"]["precision"])),
        ("macro recall", f(metrics["macro"]["recall"])),
        ("macro F1", f(metrics["macro"]["f1"])),
        ("lowest recall of a class", f(metrics["min_recall"])),
    ]
    training = metrics.get("training")
    if training:
        headline += [
            ("validation accuracy", f(training["val_accuracy"])),
            ("epochs run (best)", f"{training['epochs_run']} ({training['best_epoch']})"),
            ("training seconds", f"{training['seconds']:.0f}"),
        ]
    rows = [
        (
            f"{key} {row['name']}" if row["name"] != key else key,
            f(row["precision"]),
            f(row["recall"]),
            f(row["f1"]),
            str(row["support"]),
        )
        for key, row in metrics["per_class"].items()
    ]
    sections = [
        "<h2>Headline</h2>",
        html_table(("metric", "value"), headline),
        "<h2>Per class</h2>",
        html_table(("class", "precision", "recall", "F1", "images"), rows),
    ]
    return render_page(title, sections, plots, config_text)
