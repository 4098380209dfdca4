"""Tests for the scikit-learn style detector on small slices of MNIST."""

from __future__ import annotations

import gc
import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from ae_anomaly.data.sources import Dataset
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.detector.files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    VALIDATION_SCORES_KEY,
)
from ae_anomaly.errors import UserError
from ae_anomaly.estimator.files import WEIGHTS_FILE
from tests.helpers import rewrite_weights

FIT_SIZE = 2000
SMALL = {"channels": [4, 8]}  # a narrow network for tests where quality does not matter
# The mechanics below are tested on the classic detector, whose score is the mean
# squared error, so that scores are errors (>= 0) and error maps average to them.
CLASSIC = {"model": "conv-bn", "score": "mse"}


@pytest.fixture(scope="module")
def fitted(mnist: Dataset) -> AutoencoderDetector:
    """Two epochs on 2000 digits: good enough to tell noisy digits from clean ones."""
    detector = AutoencoderDetector(**CLASSIC, epochs=2, batch_size=64, device="cpu", seed=0)
    return detector.fit(mnist.train_images[:FIT_SIZE])


@pytest.fixture(scope="module")
def saved(fitted: AutoencoderDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("saved") / "detector")


@pytest.fixture(scope="module")
def probe(mnist: Dataset) -> np.ndarray:
    """A few test digits (uint8, read-only like every dataset array)."""
    return mnist.test_images[:64]


def small_detector(**params: Any) -> AutoencoderDetector:
    defaults: dict[str, Any] = {
        **CLASSIC,
        "model_args": SMALL,
        "epochs": 1,
        "batch_size": 32,
        "device": "cpu",
        "seed": 3,
    }
    return AutoencoderDetector(**{**defaults, **params})


# -- fitting --------------------------------------------------------------------------


def test_fit_returns_self_with_fitted_attributes(mnist: Dataset) -> None:
    detector = small_detector(threshold="mean+2std")
    assert detector.fit(mnist.train_images[:100]) is detector
    assert detector.input_shape_ == (1, 28, 28)
    assert detector.validation_scores_.shape == (10,)  # val_fraction 0.1 of 100
    assert detector.validation_scores_.dtype == np.float64
    scores = detector.validation_scores_
    assert detector.threshold_ == pytest.approx(scores.mean() + 2 * scores.std())
    assert isinstance(detector.threshold_, float)
    assert [r["epoch"] for r in detector.history_] == [1]
    assert set(detector.history_[0]) == {"epoch", "train_loss", "val_loss", "seconds"}
    assert detector.best_epoch_ == 1


def test_fitted_threshold_is_the_percentile_of_validation_scores(
    fitted: AutoencoderDetector,
) -> None:
    assert fitted.validation_scores_.shape == (FIT_SIZE // 10,)
    assert np.all(fitted.validation_scores_ > 0)
    assert fitted.threshold_ == pytest.approx(np.percentile(fitted.validation_scores_, 95))
    assert 1 <= len(fitted.history_) <= 2
    assert fitted.history_[-1]["train_loss"] < fitted.history_[0]["train_loss"] or (
        len(fitted.history_) == 1
    )
    assert 1 <= fitted.best_epoch_ <= len(fitted.history_)


def test_explicit_validation_images_set_the_threshold(mnist: Dataset) -> None:
    train, val = mnist.train_images[:80], mnist.train_images[80:120]
    detector = small_detector(threshold="percentile:50").fit(train, validation=val)
    assert detector.validation_scores_.shape == (40,)
    np.testing.assert_array_equal(detector.validation_scores_, detector.decision_function(val))
    assert detector.threshold_ == pytest.approx(np.median(detector.decision_function(val)))


def test_validation_images_of_another_shape(mnist: Dataset) -> None:
    with pytest.raises(UserError, match="validation images have shape"):
        small_detector().fit(mnist.train_images[:40], validation=np.zeros((5, 32, 32), np.uint8))


def test_bad_threshold_rule_fails_before_training(mnist: Dataset) -> None:
    with pytest.raises(UserError, match="not understood"):
        small_detector(threshold="top5%").fit(mnist.train_images[:40])


def test_too_few_images_to_hold_some_out(mnist: Dataset) -> None:
    with pytest.raises(UserError, match="at least two"):
        small_detector().fit(mnist.train_images[:1])


def test_a_size_the_model_cannot_take_is_a_user_error() -> None:
    # Sides a convolutional network cannot halve are padded (tests/test_sizes.py); lenet,
    # the Deep SVDD reference network, is defined for 28x28 only.
    small_detector().fit(np.zeros((20, 30, 30), np.uint8))
    with pytest.raises(UserError, match="28x28 images only"):
        small_detector(model="lenet", model_args=None).fit(np.zeros((20, 30, 30), np.uint8))


def test_determinism_same_seed_identical_scores(mnist: Dataset, probe: np.ndarray) -> None:
    train = mnist.train_images[:160]
    a = small_detector(seed=5).fit(train)
    b = small_detector(seed=5).fit(train)
    assert np.array_equal(a.decision_function(probe), b.decision_function(probe))
    assert a.threshold_ == b.threshold_
    c = small_detector(seed=6).fit(train)
    assert not np.array_equal(a.decision_function(probe), c.decision_function(probe))


# -- scoring --------------------------------------------------------------------------


def test_score_samples_shape_and_dtype(fitted: AutoencoderDetector, probe: np.ndarray) -> None:
    scores = fitted.decision_function(probe)
    assert scores.shape == (64,)
    assert scores.dtype == np.float64
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)
    # per image: scoring one image alone gives the same score
    assert fitted.decision_function(probe[5:6])[0] == pytest.approx(scores[5], rel=1e-5)


def test_predict_is_score_above_threshold(fitted: AutoencoderDetector, mnist: Dataset) -> None:
    rng = np.random.default_rng(0)
    clean = mnist.test_images[:100].astype(np.float32) / 255
    noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
    images = np.concatenate([clean, noisy])
    scores = fitted.decision_function(images)
    labels = fitted.predict(images)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, (scores > fitted.threshold_).astype(np.int64))
    assert set(np.unique(labels)) == {0, 1}  # both outcomes occur here
    # noisy digits are flagged far more often than clean ones
    assert labels[100:].mean() > 0.9
    assert labels[:100].mean() < 0.3


def test_noisy_digits_are_easy_to_separate(fitted: AutoencoderDetector, mnist: Dataset) -> None:
    rng = np.random.default_rng(1)
    clean = mnist.test_images[:500].astype(np.float64) / 255
    others = mnist.test_images[500:1000].astype(np.float64) / 255
    noisy = np.clip(others + rng.normal(0, 0.3, others.shape), 0, 1)
    scores = fitted.decision_function(np.concatenate([clean, noisy]))
    labels = np.r_[np.zeros(500), np.ones(500)]
    assert roc_auc_score(labels, scores) >= 0.95


def test_uint8_and_float_inputs_give_the_same_scores(
    fitted: AutoencoderDetector, probe: np.ndarray
) -> None:
    from_uint8 = fitted.decision_function(probe)
    assert np.array_equal(fitted.decision_function(probe.astype(np.float64) / 255), from_uint8)
    assert np.array_equal(fitted.decision_function(probe.astype(np.float32) / 255), from_uint8)
    assert np.array_equal(fitted.decision_function(probe[:, None]), from_uint8)  # (N, 1, H, W)


def test_reconstruct_matches_the_scores(fitted: AutoencoderDetector, probe: np.ndarray) -> None:
    recons, maps = fitted.reconstruct(probe[:8])
    assert recons.shape == (8, 1, 28, 28)
    assert maps.shape == (8, 28, 28)
    assert recons.min() >= 0 and recons.max() <= 1
    np.testing.assert_allclose(
        maps.mean(axis=(1, 2)), fitted.decision_function(probe[:8]), rtol=1e-5
    )
    expected = ((recons[:, 0] - probe[:8] / 255.0) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), expected, rtol=1e-4)


@pytest.mark.parametrize("method", ["predict", "decision_function", "reconstruct"])
def test_use_before_fit_is_a_user_error(method: str, probe: np.ndarray) -> None:
    with pytest.raises(UserError, match="not fitted"):
        getattr(AutoencoderDetector(), method)(probe)


def test_save_before_fit_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not fitted"):
        AutoencoderDetector().save(tmp_path / "d")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("bad", [-0.1, 1.5, 255.0])
def test_float_input_outside_unit_interval(
    fitted: AutoencoderDetector, probe: np.ndarray, bad: float
) -> None:
    images = probe.astype(np.float32) / 255
    images[0, 0, 0] = bad
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        fitted.decision_function(images)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((3, 32, 32), np.uint8),
        np.zeros((3, 3, 28, 28), np.uint8),
        np.zeros((3, 28, 27), np.uint8),
        np.zeros((28, 28), np.uint8),
        np.zeros((2, 1, 1, 28, 28), np.uint8),
        np.zeros((0, 28, 28), np.uint8),
        np.zeros((3, 28, 28), np.int32),
        np.zeros((3, 28, 28), bool),
    ],
    ids=["32x32", "3-channel", "28x27", "2-d", "5-d", "empty", "int32", "bool"],
)
def test_wrong_images_are_user_errors(fitted: AutoencoderDetector, images: np.ndarray) -> None:
    with pytest.raises(UserError):
        fitted.decision_function(images)
    with pytest.raises(UserError):
        fitted.predict(images)


def test_nan_input_is_a_user_error(fitted: AutoencoderDetector, probe: np.ndarray) -> None:
    images = probe.astype(np.float32) / 255
    images[0, 3, 3] = np.nan
    with pytest.raises(UserError):
        fitted.decision_function(images)


def test_flipped_view_is_accepted(fitted: AutoencoderDetector, probe: np.ndarray) -> None:
    flipped = probe.copy()[:, :, ::-1]  # a writeable view; read-only arrays are copied
    np.testing.assert_array_equal(
        fitted.decision_function(flipped), fitted.decision_function(np.ascontiguousarray(flipped))
    )


def raised(call: Any) -> type[BaseException] | None:
    """The type of exception ``call()`` raises, or None.

    Only the type is kept: a live traceback would keep a half-run scoring generator
    (and with it torch's inference mode) alive, see test_failed_scoring_leaves_no_inference_mode.
    """
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


def test_unknown_score_kind_is_a_user_error(mnist: Dataset) -> None:
    kind = raised(lambda: small_detector(score="ssim2").fit(mnist.train_images[:40]))
    assert kind is UserError


def test_unknown_loss_is_a_user_error(mnist: Dataset) -> None:
    kind = raised(lambda: small_detector(loss="huber").fit(mnist.train_images[:40]))
    assert kind is UserError


def test_failed_scoring_leaves_no_inference_mode(
    fitted: AutoencoderDetector, probe: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any) -> Any:
        raise ValueError("scoring failed")

    monkeypatch.setattr(fitted.scorer_, "combine", failing)
    caught: list[BaseException] = []
    try:
        fitted.decision_function(probe)
    except ValueError as exc:
        caught.append(exc)  # keep the traceback alive, as a REPL or debugger does
    leaked = torch.is_inference_mode_enabled() or not torch.is_grad_enabled()
    caught.clear()
    gc.collect()
    # guard for the rest of the session: once the traceback is gone the mode is restored
    assert not torch.is_inference_mode_enabled()
    assert torch.is_grad_enabled()
    assert not leaked


@pytest.mark.parametrize(
    "params",
    [
        {"batch_size": 0},
        {"learning_rate": -1.0},
        {"weight_decay": -1e-4},
        {"epochs": 0},
        {"patience": 0},
    ],
    ids=[
        "batch_size-0",
        "learning_rate-negative",
        "weight_decay-negative",
        "epochs-0",
        "patience-0",
    ],
)
def test_invalid_hyper_parameters_are_user_errors(mnist: Dataset, params: dict[str, Any]) -> None:
    kind = raised(lambda: small_detector(**params).fit(mnist.train_images[:40]))
    assert kind is UserError


# -- saving and loading ---------------------------------------------------------------


def test_save_writes_weights_and_metadata(saved: Path, fitted: AutoencoderDetector) -> None:
    assert sorted(p.name for p in saved.iterdir()) == sorted([META_FILE, WEIGHTS_FILE])
    meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    assert meta["format"] == FORMAT_NAME
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["input_shape"] == [1, 28, 28]
    assert meta["threshold"] == {"rule": "percentile:95", "value": fitted.threshold_}
    assert meta["score"] == "mse"
    assert meta["params"] == fitted.get_params()
    assert meta["training"]["history"] == fitted.history_


def test_save_load_round_trip_gives_identical_scores(
    saved: Path, fitted: AutoencoderDetector, probe: np.ndarray
) -> None:
    loaded = AutoencoderDetector.load(saved, device="cpu")
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.input_shape_ == fitted.input_shape_
    assert loaded.history_ == fitted.history_
    assert loaded.best_epoch_ == fitted.best_epoch_
    assert loaded.get_params() == fitted.get_params()
    assert np.array_equal(loaded.decision_function(probe), fitted.decision_function(probe))
    np.testing.assert_array_equal(loaded.predict(probe), fitted.predict(probe))


def test_load_with_auto_device(saved: Path, fitted: AutoencoderDetector, probe: np.ndarray) -> None:
    loaded = AutoencoderDetector.load(str(saved))
    assert loaded.device == "auto"
    np.testing.assert_allclose(
        loaded.decision_function(probe), fitted.decision_function(probe), rtol=1e-4
    )


def test_saving_twice_overwrites(saved: Path, fitted: AutoencoderDetector, tmp_path: Path) -> None:
    again = fitted.save(tmp_path / "d")
    fitted.save(again)
    assert sorted(p.name for p in again.iterdir()) == sorted([META_FILE, WEIGHTS_FILE])
    assert (again / WEIGHTS_FILE).read_bytes() == (saved / WEIGHTS_FILE).read_bytes()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_on_a_missing_device_is_a_user_error(saved: Path) -> None:
    with pytest.raises(UserError, match="CUDA is not available"):
        AutoencoderDetector.load(saved, device="cuda")


def test_save_onto_a_regular_file_is_a_user_error(
    fitted: AutoencoderDetector, tmp_path: Path
) -> None:
    target = tmp_path / "taken"
    target.write_text("mine", encoding="utf-8")
    kind = raised(lambda: fitted.save(target))
    assert target.read_text(encoding="utf-8") == "mine"
    assert kind is UserError


def tamper(saved: Path, tmp_path: Path, change: Any) -> Path:
    """A copy of the saved detector with ``change(meta)`` applied to detector.json."""
    folder = tmp_path / "tampered"
    folder.mkdir(parents=True)
    (folder / WEIGHTS_FILE).write_bytes((saved / WEIGHTS_FILE).read_bytes())
    meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    change(meta)
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_weights_changed_after_saving_are_refused(saved: Path, tmp_path: Path) -> None:
    """One NaN written into a weight: refused by the digest, not scored as nonsense."""
    folder = tamper(saved, tmp_path, lambda meta: None)
    state = load_file(str(folder / WEIGHTS_FILE))
    name = next(k for k in state if k.endswith("weight"))
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(UserError, match=r"does not match detector\.json"):
        AutoencoderDetector.load(folder, device="cpu")
    for i, digest in enumerate(("0" * 63, 7)):
        bad = tamper(saved, tmp_path / str(i), _set("weights_sha256", digest))
        with pytest.raises(UserError, match="weights_sha256"):
            AutoencoderDetector.load(bad, device="cpu")


def _set(key: str, value: Any) -> Any:
    return lambda meta: meta.__setitem__(key, value)


def _model(name: Any) -> Any:
    """Change the model name where detector.json holds it: top level and params."""
    return lambda meta: (meta.__setitem__("model", name), meta["params"].update(model=name))


def _drop(key: str) -> Any:
    return lambda meta: meta.pop(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("format", "something-else"), "not an ae-anomaly detector"),
        (_drop("format"), "not an ae-anomaly detector"),
        (_set("format_version", FORMAT_VERSION + 1), "format version"),
        (_set("format_version", "1"), "format version"),
        (_drop("format_version"), "format version"),
        (_drop("input_shape"), "missing or has a bad field"),
        (_drop("params"), "missing or has a bad field"),
        (_drop("threshold"), "missing or has a bad field"),
        (_drop("training"), "missing or has a bad field"),
        (_set("input_shape", ["a", 28, 28]), "missing or has a bad field"),
        (_set("threshold", {"rule": "percentile:95", "value": "high"}), "bad field"),
        (lambda meta: meta["params"].update(colour="red"), "bad field"),
        (_model("transformer"), "unknown model 'transformer'"),
        (_model(7), "bad field"),
        (lambda meta: meta["params"].update(epochs="many"), "bad field"),
        (lambda meta: meta["params"].update(threshold="top5%"), "bad field"),
        (lambda meta: meta["params"].update(model_args=[16, 32]), "bad field"),
        (lambda meta: meta["params"].update(model_args={"width": 3}), "no usable model"),
        (_set("params", [1, 2]), "bad field"),
        (_set("score", "ssim"), "bad field"),
        (_set("model", "fc-small"), "bad field"),
        (_set("input_shape", [1, 28]), "bad field"),
        (_set("input_shape", [1, -28, 28]), "bad field"),
        (_set("input_shape", [1.0, 28, 28]), "bad field"),
        (_set("input_shape", "1x28x28"), "bad field"),
        (_set("threshold", {"rule": "percentile:95", "value": float("nan")}), "bad field"),
        (_set("threshold", {"rule": "percentile:95", "value": float("inf")}), "bad field"),
        (_set("threshold", {"rule": "percentile:95", "value": True}), "bad field"),
        (_set("threshold", 0.02), "bad field"),
        (_set("training", {"history": "none", "best_epoch": 1}), "bad field"),
        (_set("training", {"history": [], "best_epoch": "1"}), "bad field"),
        (_set("input_shape", [3, 28, 28]), "does not match the model"),
        (lambda meta: meta["params"].update(model_args={"channels": [8, 16]}), "does not match"),
        (_model("conv-strided"), "does not match"),
    ],
    ids=[
        "wrong-format",
        "no-format",
        "newer-version",
        "version-as-string",
        "no-version",
        "no-input-shape",
        "no-params",
        "no-threshold",
        "no-training",
        "bad-input-shape",
        "bad-threshold-value",
        "unknown-param",
        "unknown-model",
        "model-not-a-string",
        "epochs-not-a-number",
        "bad-threshold-rule",
        "model-args-not-a-mapping",
        "unknown-model-argument",
        "params-not-a-mapping",
        "score-differs-from-params",
        "model-differs-from-params",
        "two-dimensional-shape",
        "negative-size",
        "float-channels",
        "shape-as-string",
        "nan-threshold",
        "infinite-threshold",
        "boolean-threshold",
        "threshold-not-a-mapping",
        "history-not-a-list",
        "best-epoch-as-string",
        "shape-with-other-channels",
        "wider-channels-than-the-weights",
        "other-model-than-the-weights",
    ],
)
def test_tampered_metadata_is_a_user_error(
    saved: Path, tmp_path: Path, change: Any, message: str
) -> None:
    folder = tamper(saved, tmp_path, change)
    with pytest.raises(UserError, match=message):
        AutoencoderDetector.load(folder, device="cpu")


def test_tampered_error_is_one_sentence(saved: Path, tmp_path: Path) -> None:
    folder = tamper(saved, tmp_path, _set("input_shape", [3, 28, 28]))
    with pytest.raises(UserError) as caught:
        AutoencoderDetector.load(folder, device="cpu")
    assert "\n" not in str(caught.value)
    assert "has shape" in str(caught.value)


def test_image_size_that_does_not_match_dense_weights(mnist: Dataset, tmp_path: Path) -> None:
    # A convolutional network's weights fit any image size; a dense one's fix it.
    saved = small_detector(model="fc-small", model_args=None).fit(mnist.train_images[:50])
    folder = tamper(saved.save(tmp_path / "fc"), tmp_path, _set("input_shape", [1, 32, 32]))
    with pytest.raises(UserError, match=r"has shape \(784,\), the model needs \(1024,\)"):
        AutoencoderDetector.load(folder, device="cpu")


def test_validation_scores_that_are_not_finite(saved: Path, tmp_path: Path) -> None:
    folder = tamper(saved, tmp_path, lambda meta: None)
    state = load_file(str(saved / WEIGHTS_FILE))
    state[VALIDATION_SCORES_KEY][0] = float("nan")
    rewrite_weights(folder, state)
    with pytest.raises(UserError, match="validation scores"):
        AutoencoderDetector.load(folder, device="cpu")
    del state[VALIDATION_SCORES_KEY]
    rewrite_weights(folder, state)
    with pytest.raises(UserError, match="no validation scores"):
        AutoencoderDetector.load(folder, device="cpu")


def test_loading_never_unpickles(
    saved: Path, fitted: AutoencoderDetector, probe: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load() unpickled something")

    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    loaded = AutoencoderDetector.load(saved, device="cpu")
    assert np.array_equal(loaded.decision_function(probe), fitted.decision_function(probe))


def test_metadata_that_is_not_json_or_not_a_mapping(saved: Path, tmp_path: Path) -> None:
    folder = tamper(saved, tmp_path, lambda meta: None)
    (folder / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read detector file"):
        AutoencoderDetector.load(folder, device="cpu")
    (folder / META_FILE).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="not an ae-anomaly detector"):
        AutoencoderDetector.load(folder, device="cpu")


def test_missing_folder_or_files_are_user_errors(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read detector file"):
        AutoencoderDetector.load(tmp_path / "nowhere", device="cpu")
    folder = tamper(saved, tmp_path, lambda meta: None)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match="cannot load weights"):
        AutoencoderDetector.load(folder, device="cpu")
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="does not match"):
        AutoencoderDetector.load(folder, device="cpu")
    meta = json.loads((folder / META_FILE).read_text())  # signed, yet not safetensors
    meta["weights_sha256"] = hashlib.sha256(b"\x00" * 100).hexdigest()
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="cannot load weights"):
        AutoencoderDetector.load(folder, device="cpu")


# -- scikit-learn parameters ----------------------------------------------------------


def test_get_params_lists_every_init_argument() -> None:
    detector = AutoencoderDetector(epochs=3, threshold="fixed:0.1", model_args={"code": 8})
    params = detector.get_params()
    assert params == {
        "model": "conv-dense",
        "model_args": {"code": 8},
        "score": "auto",
        "threshold": "fixed:0.1",
        "members": 1,
        "patch": "auto",
        "epochs": 3,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "lr_decay": 1.0,
        "weight_decay": 0.0,
        "patience": 2,
        "loss": "mse",
        "schedule": "constant",
        "precision": "float32",
        "restore": "none",
        "restore_angle": 30.0,
        "restore_share": 0.5,
        "val_fraction": 0.1,
        "device": "auto",
        "seed": 0,
    }


def test_set_params_returns_self_and_changes_params() -> None:
    detector = AutoencoderDetector()
    assert detector.set_params(epochs=9, score="mae") is detector
    assert (detector.epochs, detector.score) == (9, "mae")
    with pytest.raises(ValueError, match="colour"):
        detector.set_params(colour="red")


def test_package_exports_the_detector() -> None:
    import ae_anomaly

    assert ae_anomaly.AutoencoderDetector is AutoencoderDetector
    assert "AutoencoderDetector" in ae_anomaly.__all__
    with pytest.raises(AttributeError):
        ae_anomaly.NoSuchThing  # noqa: B018


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, ae_anomaly; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_clone_of_unfitted_detector_from_the_package() -> None:
    from ae_anomaly import AutoencoderDetector as Exported

    original = Exported(model="conv-bn", epochs=30, threshold="percentile:95")
    copy = clone(original)
    assert copy is not original
    assert copy.get_params() == original.get_params()
    assert copy.set_params(epochs=2).epochs == 2
    assert original.epochs == 30


def test_clone_copies_params_not_fitted_state(fitted: AutoencoderDetector) -> None:
    copy = clone(fitted)
    assert isinstance(copy, AutoencoderDetector)
    assert copy is not fitted
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")
    assert not hasattr(copy, "threshold_")
    with pytest.raises(UserError, match="not fitted"):
        copy.predict(np.zeros((1, 28, 28), np.uint8))


def test_a_detector_never_gives_a_verdict_from_a_score_that_is_not_finite(
    saved: Path, tmp_path: Path, probe: np.ndarray
) -> None:
    """NaN is above no threshold, so it would read as "normal": a NaN weight, even with
    the digest made to match, is refused on load, and a NaN score at scoring time."""
    folder = tamper(saved, tmp_path, lambda meta: None)
    state = load_file(str(folder / WEIGHTS_FILE))
    name = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    state[name].view(-1)[0] = float("nan")
    rewrite_weights(folder, state)
    with pytest.raises(UserError, match=f"not finite in tensor '{name}'"):
        AutoencoderDetector.load(folder, device="cpu")
    detector = AutoencoderDetector.load(saved, device="cpu")
    with torch.no_grad():
        next(iter(detector.model_.parameters())).view(-1)[0] = float("nan")
    with pytest.raises(UserError, match="not finite numbers"):
        detector.predict(probe)
