"""The detector's API convention (PyOD's: higher = more anomalous, 1 = anomaly), with
scikit-learn tooling, and detectors saved by ae-anomaly 0.1 (format 1) loading unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ae_anomaly import AutoencoderDetector
from ae_anomaly.data.sources import Dataset
from ae_anomaly.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
# A few dozen steps: enough for the classic detector (a wide code, the squared error) to
# tell noisy digits from clean ones, which is all the convention tests need. The default
# (conv-dense, ssim+latent) is made for other anomalies: on these 300 digits it separates
# the noisy ones at 0.87 even with its full budget, the squared error at 0.997.
QUICK = {
    "model": "conv-bn",
    "score": "mse",
    "epochs": 2,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "device": "cpu",
}


def noisy_mix(mnist: Dataset, n_clean: int, n_noisy: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean digits and noisy other digits as flat rows (as a table-minded pipeline has
    them), shuffled, with labels 1 = noisy."""
    rng = np.random.default_rng(0)
    clean = mnist.train_images[:n_clean].astype(np.float64) / 255
    others = mnist.train_images[n_clean : n_clean + n_noisy].astype(np.float64) / 255
    noisy = np.clip(others + rng.normal(0, 0.3, others.shape), 0, 1)
    images = np.concatenate([clean, noisy]).reshape(n_clean + n_noisy, -1)
    labels = np.r_[np.zeros(n_clean), np.ones(n_noisy)].astype(int)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def to_images(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 28, 28)


def pipeline() -> Pipeline:
    return Pipeline(
        [("images", FunctionTransformer(to_images)), ("detector", AutoencoderDetector(**QUICK))]
    )


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(mnist: Dataset) -> None:
    params = {**QUICK, "model_args": {"channels": [4, 8]}, "score": "ssim"}
    detector = AutoencoderDetector(**params, threshold="mean+2std").fit(mnist.train_images[:100])
    copy = clone(detector)
    assert copy.get_params() == detector.get_params()
    assert copy.model_args is not detector.model_args  # a deep copy, as clone promises
    assert not hasattr(copy, "model_") and not hasattr(copy, "threshold_")


def test_pipeline_passes_labels_to_fit_which_ignores_them(mnist: Dataset) -> None:
    rows, labels = noisy_mix(mnist, 300, 30)
    pipe = pipeline().fit(rows, labels)
    scores = pipe.decision_function(rows)
    assert scores.shape == (len(rows),)
    assert roc_auc_score(labels, scores) > 0.9  # higher = more anomalous, labels 1 = anomaly
    np.testing.assert_array_equal(
        pipe.predict(rows), (scores > pipe[-1].threshold_).astype(np.int64)
    )


def test_cross_validation_with_roc_auc_scoring(mnist: Dataset) -> None:
    rows, labels = noisy_mix(mnist, 300, 30)
    folds = KFold(n_splits=2, shuffle=True, random_state=0)
    builtin = cross_val_score(pipeline(), rows, labels, cv=folds, scoring="roc_auc")
    custom = cross_val_score(
        pipeline(),
        rows,
        labels,
        cv=folds,
        scoring=make_scorer(roc_auc_score, response_method="decision_function"),
    )
    assert builtin.shape == (2,) and (builtin > 0.9).all()
    np.testing.assert_allclose(custom, builtin)  # the same seeds give the same detectors


def test_pyod_style_usage(mnist: Dataset) -> None:
    """fit on (mostly) normal data, then decision_function / predict / threshold_ on new data,
    as with any PyOD detector."""
    rows, labels = noisy_mix(mnist, 400, 40)
    train, test = to_images(rows[:300]), to_images(rows[300:])
    clf = AutoencoderDetector(**QUICK)
    clf.fit(train)
    test_scores = clf.decision_function(test)  # higher = more anomalous
    test_labels = clf.predict(test)  # 0 normal, 1 anomaly
    assert set(np.unique(test_labels)) <= {0, 1}
    np.testing.assert_array_equal(test_labels, test_scores > clf.threshold_)
    assert roc_auc_score(labels[300:], test_scores) > 0.9


def test_images_passed_as_y_are_refused(mnist: Dataset) -> None:
    """fit(X, X_val) was the signature of 0.1; now validation images go in validation=."""
    images = mnist.train_images[:60]
    with pytest.raises(UserError, match="validation="):
        AutoencoderDetector(**QUICK).fit(images, images[:10])


def test_sklearn_outlier_methods_are_absent() -> None:
    """score_samples (scikit-learn: lower = more abnormal) is not offered, so that no caller
    gets the opposite of what it expects."""
    assert not hasattr(AutoencoderDetector(), "score_samples")


@pytest.mark.parametrize("name", ["v1-conv-bn-mse", "v1-ensemble-ssim-latent-knn"])
def test_detectors_saved_by_version_0_1_load_and_score_exactly(name: str) -> None:
    """Folders written by ae-anomaly 0.1.0 (format 1, no digest): same threshold, and the
    scores it computed for these digits, to 1e-5: scoring now runs the network with its
    batch-norm folded into the layers before (nn/fusion.py), the same sums rounded
    differently."""
    expected = json.loads((FIXTURES / "v1-scores.json").read_text())
    detector = AutoencoderDetector.load(FIXTURES / name, device="cpu")
    probe = np.load(FIXTURES / "probe.npy")
    assert detector.threshold_ == expected["thresholds"][name]
    np.testing.assert_allclose(detector.decision_function(probe), expected[name], rtol=0, atol=1e-5)


def test_a_format_2_file_without_its_digest_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for part in ("weights.safetensors", "detector.json"):
        (folder / part).write_bytes((FIXTURES / "v1-conv-bn-mse" / part).read_bytes())
    meta = json.loads((folder / "detector.json").read_text())
    meta["format_version"] = 2
    (folder / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="weights_sha256"):
        AutoencoderDetector.load(folder, device="cpu")


def test_repr_shows_the_arguments_that_differ_from_the_defaults() -> None:
    detector = AutoencoderDetector(epochs=3, model_args={"code": 8})
    assert repr(detector) == "AutoencoderDetector(epochs=3, model_args={'code': 8})"
    assert repr(AutoencoderDetector()) == "AutoencoderDetector()"


def test_set_params_refuses_a_name_that_is_not_an_argument() -> None:
    detector = AutoencoderDetector().set_params(epochs=4)
    assert detector.epochs == 4
    with pytest.raises(ValueError, match="Invalid parameter 'epoch'"):
        detector.set_params(epoch=4)


def test_loading_and_scoring_never_import_scikit_learn(tmp_path: Path) -> None:
    """scikit-learn takes 0.7 s to import; only fitting needs it."""
    folder = FIXTURES / "v1-ensemble-ssim-latent-knn"  # a combined score with code terms
    script = (
        "import sys, numpy as np\n"
        "from ae_anomaly import AutoencoderDetector\n"
        "import ae_anomaly.cli.deploy, ae_anomaly.deploy.batch\n"
        f"d = AutoencoderDetector.load({str(folder)!r}, device='cpu')\n"
        f"d.decision_function(np.load({str(FIXTURES / 'probe.npy')!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
