"""The digit classifier: network structure, training on real MNIST, save / load, the commands.

One classifier is trained once per module on a few thousand real MNIST
digits for one epoch (a few seconds on one thread) and shared by the tests
that need a fitted one; the command-line tests train their own on a smaller
slice through click's test runner.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors import safe_open
from torch import nn

from ae_anomaly import __version__
from ae_anomaly.classifier.config import build_classifier_config
from ae_anomaly.classifier.model import META_FILE, DigitClassifierModel, classification_metrics
from ae_anomaly.classifier.network import CHANNELS, DROPOUT, HIDDEN, DigitClassifier, random_shift
from ae_anomaly.cli import cli
from ae_anomaly.data.sources import ENV_CACHE, ENV_DATA, Dataset
from ae_anomaly.errors import UserError
from ae_anomaly.estimator.files import WEIGHTS_FILE
from ae_anomaly.nn.checkpoint import CHECKPOINT_NAME, Checkpoint
from ae_anomaly.nn.loop import Task, train
from ae_anomaly.params import TrainingParams

N_TRAIN = 5000
N_TEST = 2000
# Measured: 0.925-0.936 on these 2000 test digits after one epoch on 5000 (seeds 0-2).
ACCURACY_FLOOR = 0.9
EXIT_USER_ERROR = 2


# --- the network --------------------------------------------------------------------------


def test_network_has_three_conv_three_pool_two_hidden_dense_and_a_ten_way_output() -> None:
    net = DigitClassifier((1, 28, 28))
    kinds = [type(m) for m in net.modules()]
    assert kinds.count(nn.Conv2d) == 3
    assert kinds.count(nn.MaxPool2d) == 3
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3  # two hidden layers, then the output layer
    assert [lin.out_features for lin in linears] == [*HIDDEN, 10]
    assert linears[0].in_features == CHANNELS[2] * 3 * 3  # 28 -> 14 -> 7 -> 3
    assert net.eval()(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_network_takes_other_sizes_and_channels() -> None:
    net = DigitClassifier((3, 32, 40)).eval()
    assert net(torch.rand(2, 3, 32, 40)).shape == (2, 10)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [((1, 7, 28), "at least 8x8"), ((1, 28), "(C, H, W)"), ((0, 28, 28), "(C, H, W)")],
)
def test_network_refuses_shapes_it_cannot_take(shape: tuple[int, ...], fragment: str) -> None:
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        DigitClassifier(shape)


def test_network_refuses_bad_arguments() -> None:
    with pytest.raises(UserError, match="channels"):
        DigitClassifier(channels=(8, 16))
    with pytest.raises(UserError, match="dropout"):
        DigitClassifier(dropout=1.0)


def test_random_shift_moves_each_image_by_whole_pixels() -> None:
    images = torch.zeros(64, 1, 12, 12)
    images[:, 0, 6, 5] = 1.0  # one bright pixel, far enough from the edges to survive
    shifted = random_shift(images, torch.Generator().manual_seed(0), max_shift=2)
    assert shifted.shape == images.shape
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(64))  # moved, not blurred
    rows, cols = shifted[:, 0].nonzero()[:, 1], shifted[:, 0].nonzero()[:, 2]
    assert set((rows - 6).tolist()) <= {-2, -1, 0, 1, 2}
    assert set((cols - 5).tolist()) <= {-2, -1, 0, 1, 2}
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # shifts differ
    again = random_shift(images, torch.Generator().manual_seed(0), max_shift=2)
    assert torch.equal(shifted, again)
    assert torch.equal(random_shift(images, torch.Generator(), max_shift=0), images)


def test_training_loop_needs_both_targets_or_neither() -> None:
    with pytest.raises(ValueError, match="both"):
        Task(loss=nn.functional.cross_entropy, train_targets=torch.zeros(4, dtype=torch.int64))


def test_training_loop_with_targets_loss_augmentation_and_lr_decay(tmp_path: Path) -> None:
    """The supervised path: labels as targets, cross-entropy, a per-batch augmentation."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=generator)
    y = (x[:, 0] > 0).long()  # a separable two-class problem
    seen: list[int] = []

    def augment(batch: torch.Tensor, epoch_generator: torch.Generator) -> torch.Tensor:
        seen.append(len(batch))
        return batch + 0.01 * torch.randn(batch.shape, generator=epoch_generator)

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    params = TrainingParams(epochs=3, batch_size=64, learning_rate=0.1, lr_decay=0.5, patience=3)
    task = Task(
        loss=nn.functional.cross_entropy,
        augment=augment,
        train_targets=y[:192],
        val_targets=y[192:],
    )
    progress = train(model, x[:192], x[192:], params, task, callbacks=[Checkpoint(tmp_path)])
    assert seen == [64] * 9  # every training batch, never a validation one
    assert progress.history[-1].val_loss < progress.history[0].val_loss < math.log(2)
    with safe_open(str(tmp_path / CHECKPOINT_NAME), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    assert groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)  # epoch 3's rate


# --- the estimator on real MNIST ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(mnist: Dataset) -> DigitClassifierModel:
    """One epoch on 5000 real training digits (10% of them held out), on the CPU."""
    return DigitClassifierModel(epochs=1, batch_size=32, max_shift=0, device="cpu").fit(
        mnist.train_images[:N_TRAIN],
        mnist.train_labels[:N_TRAIN],
        class_names=mnist.class_names,
        dataset="mnist",
    )


def test_fit_reaches_an_accuracy_floor_on_real_mnist(
    fitted: DigitClassifierModel, mnist: Dataset
) -> None:
    metrics = fitted.evaluate(mnist.test_images[:N_TEST], mnist.test_labels[:N_TEST])
    assert metrics["accuracy"] > ACCURACY_FLOOR, metrics["accuracy"]
    assert metrics["n"] == N_TEST
    assert metrics["errors"] == round((1 - metrics["accuracy"]) * N_TEST)
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == N_TEST
    assert np.trace(cm) == N_TEST - metrics["errors"]
    assert sum(row["support"] for row in metrics["per_class"].values()) == N_TEST
    assert metrics["min_recall"] == min(row["recall"] for row in metrics["per_class"].values())
    assert fitted.val_accuracy_ > ACCURACY_FLOOR


def test_fitted_attributes(fitted: DigitClassifierModel) -> None:
    assert fitted.input_shape_ == (1, 28, 28)
    assert fitted.n_train_ == 4500 and fitted.n_val_ == 500
    assert len(fitted.history_) == 1 and fitted.best_epoch_ == 1
    assert list(fitted.classes_) == list(range(10))
    assert fitted.dataset_ == "mnist"
    assert not fitted.model_.training  # left in eval mode: dropout and batch-norm fixed


def test_predict_and_predict_proba_agree_for_uint8_and_float_input(
    fitted: DigitClassifierModel, mnist: Dataset
) -> None:
    raw = mnist.test_images[:300]
    as_float = torch.from_numpy(np.array(raw)).float().div(255).unsqueeze(1)  # (N, 1, 28, 28)
    labels = fitted.predict(raw)
    assert labels.dtype == np.int64 and labels.shape == (300,)
    np.testing.assert_array_equal(fitted.predict(as_float), labels)
    proba = fitted.predict_proba(as_float)
    assert proba.shape == (300, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)
    assert torch.is_grad_enabled()  # inference mode does not leak out of predict


def test_predict_refuses_images_of_another_shape(fitted: DigitClassifierModel) -> None:
    with pytest.raises(UserError, match=r"trained on images of shape \(1, 28, 28\)"):
        fitted.predict(np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        fitted.predict(torch.full((2, 1, 28, 28), 255.0))


def test_unfitted_classifier_says_so() -> None:
    with pytest.raises(UserError, match="not fitted"):
        DigitClassifierModel().predict(np.zeros((1, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"max_shift": 9}, "max_shift"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_parameters_are_refused_before_training(
    params: dict[str, object], fragment: str
) -> None:
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    with pytest.raises(UserError, match=fragment):
        DigitClassifierModel(**params).fit(images, np.arange(10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.arange(9), "one label per image"),
        (np.arange(10) + 1, r"0\.\.9"),
        (np.linspace(0, 1, 10), "integers"),
    ],
)
def test_bad_labels_are_refused(labels: np.ndarray, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        DigitClassifierModel().fit(np.zeros((10, 28, 28), dtype=np.uint8), labels)


def test_classification_metrics_on_a_hand_made_case() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 9])
    predicted = np.array([0, 1, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    metrics = classification_metrics(truth, predicted)
    assert metrics["accuracy"] == pytest.approx(12 / 14)
    assert metrics["errors"] == 2
    assert metrics["per_class"]["0"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["0"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["1"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["9"]["recall"] == pytest.approx(0.5)
    assert metrics["min_recall"] == pytest.approx(0.5)
    assert metrics["confusion_matrix"][9][0] == 1 and metrics["confusion_matrix"][0][1] == 1


# --- saving and loading -------------------------------------------------------------------------


@pytest.fixture
def saved(fitted: DigitClassifierModel, tmp_path: Path) -> Path:
    return fitted.save(tmp_path / "clf")


def test_save_load_gives_identical_predictions(
    fitted: DigitClassifierModel, saved: Path, mnist: Dataset
) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [META_FILE, WEIGHTS_FILE]
    loaded = DigitClassifierModel.load(saved, device="cpu")
    images = mnist.test_images[:500]
    np.testing.assert_array_equal(loaded.predict(images), fitted.predict(images))
    np.testing.assert_array_equal(loaded.predict_proba(images), fitted.predict_proba(images))
    assert loaded.get_params() == {
        **fitted.get_params(),
        "channels": list(CHANNELS),
        "hidden": list(HIDDEN),
    }
    assert loaded.class_names_ == list(fitted.class_names_)
    assert loaded.history_ == fitted.history_ and loaded.val_accuracy_ == fitted.val_accuracy_


def test_saved_json_describes_the_classifier(saved: Path) -> None:
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["format"] == "ae-anomaly-classifier" and meta["format_version"] == 1
    assert meta["package_version"] == __version__
    assert meta["arch"] == {
        "name": "digit-cnn",
        "channels": list(CHANNELS),
        "hidden": list(HIDDEN),
        "dropout": DROPOUT,
        "n_classes": 10,
    }
    assert meta["input_shape"] == [1, 28, 28]
    assert meta["normalisation"] == {"uint8_scale": 255.0, "pixel_range": [0.0, 1.0]}
    assert meta["dataset"] == "mnist" and len(meta["class_names"]) == 10
    assert len(meta["weights_sha256"]) == 64
    assert set(meta["training"]) >= {"history", "best_epoch", "n_train", "n_val", "val_accuracy"}


def _edit_json(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(changes)
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"format": "ae-anomaly-detector"}, "not an ae-anomaly classifier file"),
        ({"format_version": 99}, "format version 99"),
        ({"input_shape": [1, 32, 32]}, "cannot load weights"),
        ({"input_shape": [1, 4, 4]}, "at least 8x8"),
        ({"arch": {"name": "resnet"}}, "bad field"),
        ({"class_names": ["a", "b"]}, "bad field"),
        ({"weights_sha256": "0" * 64}, "does not match"),
    ],
)
def test_load_refuses_a_tampered_json(
    saved: Path, change: dict[str, object], fragment: str
) -> None:
    _edit_json(saved, **change)
    with pytest.raises(UserError, match=fragment):
        DigitClassifierModel.load(saved)


def test_load_refuses_missing_or_changed_files(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        DigitClassifierModel.load(tmp_path / "nowhere")
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # same size, other numbers
    with pytest.raises(UserError, match="does not match"):
        DigitClassifierModel.load(saved)
    weights.unlink()
    with pytest.raises(UserError, match=f"cannot load weights from .*{WEIGHTS_FILE}"):
        DigitClassifierModel.load(saved)
    (saved / META_FILE).write_text("{not json")
    with pytest.raises(UserError, match="cannot read classifier file"):
        DigitClassifierModel.load(saved)
    (saved / META_FILE).unlink()
    with pytest.raises(UserError, match="is it a saved classifier"):
        DigitClassifierModel.load(saved)


# --- the commands -------------------------------------------------------------------------------


def run(args: list[str], data_root: Path, cwd: Path) -> tuple[int, str, str]:
    """``ae-anomaly ARGS`` in-process with only the given data and no network; cwd ``cwd``."""
    env = {ENV_DATA: str(data_root), ENV_CACHE: str(cwd / "cache"), "COLUMNS": "200"}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, env=env, prog_name="ae-anomaly")
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_sentence(outcome: tuple[int, str, str], fragment: str) -> None:
    code, stdout, stderr = outcome
    assert code == EXIT_USER_ERROR, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in stdout + stderr


# Quick: one epoch on 2000 digits without shifts; the accuracy floor is the API test's job.
SMALL = [
    "--train-limit", "2000", "--test-limit", "300", "--epochs", "1", "--batch-size", "32",
    "--max-shift", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    cwd = tmp_path_factory.mktemp("classify")
    code, stdout, stderr = run(
        ["classify", "train", *SMALL, "--device", "cpu", "--out", "run"], shared_data_dir, cwd
    )
    assert code == 0, stdout + stderr
    assert "accuracy" in stdout and "report.html" in stdout
    return cwd / "run"


def test_cli_train_writes_every_artefact(trained_run: Path) -> None:
    names = {str(p.relative_to(trained_run)) for p in trained_run.rglob("*") if p.is_file()}
    assert names == {
        "config.yaml",
        "metrics.json",
        "report.html",
        "plots/confusion.png",
        "plots/loss.png",
        f"classifier/{META_FILE}",
        f"classifier/{WEIGHTS_FILE}",
    }
    assert not trained_run.with_name("run.incomplete").exists()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["n"] == 300
    assert metrics["accuracy"] > 0.5  # far above chance (0.1)
    assert metrics["training"]["n_train"] + metrics["training"]["n_val"] == 2000
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["training"]["epochs"] == 1 and config["data"]["test_limit"] == 300
    assert "Per class" in (trained_run / "report.html").read_text()


def test_cli_evaluate_matches_the_training_run(
    trained_run: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    args = ["classify", "evaluate", "--classifier", str(trained_run / "classifier")]
    code, stdout, stderr = run([*args, "--test-limit", "300"], shared_data_dir, tmp_path)
    assert code == 0, stdout + stderr
    assert f"accuracy {metrics['accuracy']:.4f}" in stdout  # the same 300 test digits
    assert "precision" in stdout and "recall" in stdout
    code, stdout, stderr = run(
        [*args, "--test-limit", "300", "--out", "ev"], shared_data_dir, tmp_path
    )
    assert code == 0, stdout + stderr
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert written["accuracy"] == metrics["accuracy"]
    assert written["confusion_matrix"] == metrics["confusion_matrix"]
    assert (tmp_path / "ev" / "plots" / "confusion.png").is_file()


def test_cli_train_repeats_from_its_config(trained_run: Path) -> None:
    config = build_classifier_config(yaml.safe_load((trained_run / "config.yaml").read_text()), {})
    assert config.data.train_limit == 2000 and config.device == "cpu"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--epochs", "0"], "training.epochs"),
        (["--dataset", "cifar"], "unknown dataset"),
        (["--learning-rate", "fast"], "training.learning_rate"),
        (["--max-shift", "9"], "training.max_shift"),
        (["--val-fraction", "1"], "data.val_fraction"),
        (["--device", "tpu"], "device"),
        (["--train-limit", "5"], "data.train_limit"),
    ],
)
def test_cli_train_refuses_bad_values(
    extra: list[str], fragment: str, shared_data_dir: Path, tmp_path: Path
) -> None:
    outcome = run(["classify", "train", *SMALL, *extra, "--out", "o"], shared_data_dir, tmp_path)
    assert_one_sentence(outcome, fragment)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.incomplete").exists()


def test_cli_train_refuses_a_bad_config_file(shared_data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("training: {epochs: 1, epoks: 2}\n")
    outcome = run(
        ["classify", "train", "--config", "c.yaml", "--out", "o"], shared_data_dir, tmp_path
    )
    assert_one_sentence(outcome, "training.epoks: unknown key")


def test_cli_evaluate_refuses_a_missing_or_broken_classifier(
    trained_run: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    outcome = run(["classify", "evaluate", "--classifier", "nowhere"], shared_data_dir, tmp_path)
    assert_one_sentence(outcome, "does not exist")
    broken = tmp_path / "broken"
    shutil.copytree(trained_run / "classifier", broken)
    (broken / META_FILE).write_text("[]")
    outcome = run(["classify", "evaluate", "--classifier", str(broken)], shared_data_dir, tmp_path)
    assert_one_sentence(outcome, "not an ae-anomaly classifier file")
    outcome = run(
        ["classify", "evaluate", "--classifier", str(trained_run / "classifier"), "--dataset", "x"],
        shared_data_dir,
        tmp_path,
    )
    assert_one_sentence(outcome, "unknown dataset")


def test_estimator_defaults_match_the_config_defaults() -> None:
    """The Python API and ``classify train`` without flags train the same classifier."""
    config = build_classifier_config({}, {})
    params = DigitClassifierModel().get_params()
    for name, value in asdict(config.training).items():
        assert params[name] == value, name
    assert params["val_fraction"] == config.data.val_fraction
    assert params["seed"] == config.seed and params["device"] == config.device
