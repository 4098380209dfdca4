"""The one default detector: what ``auto`` stands for (the score, the patch size), how it is
set from a config or flag, and how it is saved."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ae_anomaly import AutoencoderDetector
from ae_anomaly.config import build_config
from ae_anomaly.data.sources import Dataset
from ae_anomaly.detector.files import META_FILE
from ae_anomaly.errors import UserError
from ae_anomaly.scores.names import auto_score


def test_auto_score_rules() -> None:
    assert auto_score(patches=False, has_code=True) == "ssim+latent"
    assert auto_score(patches=False, has_code=False) == "ssim"
    assert auto_score(patches=True, has_code=True) == "mse"


def quick_fit(images: np.ndarray, **params: object) -> AutoencoderDetector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit says it is undertrained
        return AutoencoderDetector(epochs=1, batch_size=32, device="cpu", **params).fit(images)


def test_the_default_is_conv_dense_with_ssim_and_the_codes_density(mnist: Dataset) -> None:
    detector = quick_fit(mnist.train_images[:200])
    assert (detector.model, detector.score, detector.patch) == ("conv-dense", "auto", "auto")
    assert (detector.score_, detector.patch_size_) == ("ssim+latent", None)
    assert detector.training_summary()["score"] == "ssim+latent"
    assert detector.description()["input"] == "whole images"


def test_a_model_without_a_code_gets_ssim_alone(mnist: Dataset) -> None:
    assert quick_fit(mnist.train_images[:100], model="conv-bn").score_ == "ssim"


def test_a_named_score_is_used_as_it_is(mnist: Dataset) -> None:
    detector = quick_fit(mnist.train_images[:100], score="mae", patch=16)
    assert (detector.score_, detector.patch_size_) == ("mae", 16)
    assert detector.description()["input"] == "16 x 16 patches"


def test_patches_get_the_squared_error(mnist: Dataset) -> None:
    assert quick_fit(mnist.train_images[:100], patch=14).score_ == "mse"


def test_auto_is_saved_as_what_it_chose(mnist: Dataset, tmp_path: Path) -> None:
    detector = quick_fit(mnist.train_images[:200])
    folder = detector.save(tmp_path / "d")
    meta = json.loads((folder / META_FILE).read_text())
    assert (meta["params"]["score"], meta["score"], meta["patch_size"]) == (
        "auto",
        "ssim+latent",
        None,
    )
    loaded = AutoencoderDetector.load(folder, device="cpu")
    assert loaded.score_ == "ssim+latent"
    probe = mnist.test_images[:50]
    assert np.array_equal(loaded.decision_function(probe), detector.decision_function(probe))
    # auto is no fitted score, and mse is not the one whose state was saved.
    for fitted, message in (("auto", "bad field"), (3, "bad field"), ("mse", "no usable")):
        meta["score"] = fitted
        (folder / META_FILE).write_text(json.dumps(meta))
        with pytest.raises(UserError, match=message):
            AutoencoderDetector.load(folder, device="cpu")


@pytest.mark.parametrize(("flag", "value"), [("off", "off"), ("auto", "auto"), ("24", 24)])
def test_the_patch_flag_reads_off_auto_and_sizes(flag: str, value: object) -> None:
    from ae_anomaly.cli.options import parse_overrides

    overrides = parse_overrides({"patch": flag})
    assert build_config({}, overrides).detector.patch == value


@pytest.mark.parametrize("flag", ["7", "on", "big"])
def test_a_bad_patch_flag_is_refused(flag: str) -> None:
    from ae_anomaly.cli.options import parse_overrides

    with pytest.raises(UserError, match="patch"):
        build_config({}, parse_overrides({"patch": flag}))
