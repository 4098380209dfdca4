"""Tests for detectors with several member networks (ensemble.py), on small slices of MNIST."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from ae_anomaly.cli import cli
from ae_anomaly.config import build_config
from ae_anomaly.data.sources import Dataset
from ae_anomaly.detector.estimator import AutoencoderDetector
from ae_anomaly.detector.files import META_FILE
from ae_anomaly.errors import UserError
from ae_anomaly.estimator.files import WEIGHTS_FILE
from ae_anomaly.nn.ensemble import Ensemble, EnsembleScorer, member_seed
from ae_anomaly.runs.experiment import detector_from_config
from tests.helpers import rewrite_weights

# A narrow coded network and the recipe's four-term score, which fits a code
# density, reference codes and a calibration per member.
PARAMS: dict[str, Any] = {
    "model": "conv-dense",
    "model_args": {"channels": [4, 8], "code": 8},
    "score": "ssim+blur-mse+latent+knn",
    "threshold": "mean+2std",
    "epochs": 1,
    "batch_size": 32,
    "device": "cpu",
    "seed": 5,
}


@pytest.fixture(scope="module")
def split(mnist: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """600 training digits and 100 held-out ones, given explicitly so that plain detectors
    can train on exactly the members' images."""
    return mnist.train_images[:600], mnist.train_images[600:700]


@pytest.fixture(scope="module")
def pair(split: tuple[np.ndarray, np.ndarray]) -> AutoencoderDetector:
    return AutoencoderDetector(**PARAMS, members=2).fit(split[0], validation=split[1])


def test_an_ensemble_scores_the_mean_of_its_members_as_plain_detectors(
    pair: AutoencoderDetector, split: tuple[np.ndarray, np.ndarray], mnist: Dataset
) -> None:
    first = AutoencoderDetector(**PARAMS).fit(split[0], validation=split[1])
    second = AutoencoderDetector(**{**PARAMS, "seed": member_seed(5, 1)}).fit(
        split[0], validation=split[1]
    )
    probe = mnist.test_images[:200]
    expected = (first.decision_function(probe) + second.decision_function(probe)) / 2
    np.testing.assert_allclose(pair.decision_function(probe), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        pair.validation_scores_,
        (first.validation_scores_ + second.validation_scores_) / 2,
        rtol=1e-5,
        atol=1e-5,
    )
    scores = pair.validation_scores_
    assert pair.threshold_ == pytest.approx(scores.mean() + 2 * scores.std())
    # Two different networks: the members differ, and the reconstruction is their mean.
    assert not np.allclose(first.decision_function(probe), second.decision_function(probe))
    recon, maps = pair.reconstruct(probe[:10])
    mean_recon = (first.reconstruct(probe[:10])[0] + second.reconstruct(probe[:10])[0]) / 2
    np.testing.assert_allclose(recon, mean_recon, atol=1e-5)
    assert maps.shape == (10, 28, 28)


def test_an_ensemble_holds_its_members_and_their_training(pair: AutoencoderDetector) -> None:
    assert isinstance(pair.model_, Ensemble) and len(pair.model_.members) == 2
    assert isinstance(pair.scorer_, EnsembleScorer) and len(pair.scorer_.members) == 2
    assert [len(m["history"]) for m in pair.member_training_] == [1, 1]
    assert pair.history_ == pair.member_training_[0]["history"]
    losses = [m["history"][0]["train_loss"] for m in pair.member_training_]
    assert losses[0] != losses[1]


def test_one_member_is_the_plain_detector(split: tuple[np.ndarray, np.ndarray]) -> None:
    one = AutoencoderDetector(**PARAMS, members=1).fit(split[0], validation=split[1])
    assert not isinstance(one.model_, Ensemble)
    assert member_seed(5, 0) == 5
    assert one.member_training_ == [{"history": one.history_, "best_epoch": one.best_epoch_}]


def test_members_draw_distinct_seeds() -> None:
    seeds = {member_seed(seed, member) for seed in range(5) for member in range(1, 4)}
    assert len(seeds) == 15 and not seeds & set(range(5))


def test_a_saved_ensemble_loads_and_scores_exactly(
    pair: AutoencoderDetector, mnist: Dataset, tmp_path: Path
) -> None:
    folder = pair.save(tmp_path / "pair")
    state = load_file(str(folder / WEIGHTS_FILE))
    assert any(k.startswith("members.1.") for k in state)
    assert any(k.startswith("scorer.members.1.neighbours.") for k in state)
    loaded = AutoencoderDetector.load(folder, device="cpu")
    probe = mnist.test_images[:100]
    np.testing.assert_array_equal(loaded.decision_function(probe), pair.decision_function(probe))
    assert loaded.members == 2
    assert loaded.member_training_ == pair.member_training_
    assert loaded.threshold_ == pair.threshold_


def _tampered_copy(pair: AutoencoderDetector, tmp_path: Path) -> Path:
    return pair.save(tmp_path / "copy")


def test_a_member_count_that_differs_from_the_saved_training_is_refused(
    pair: AutoencoderDetector, tmp_path: Path
) -> None:
    folder = _tampered_copy(pair, tmp_path)
    meta = json.loads((folder / META_FILE).read_text())
    meta["params"]["members"] = 3
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="training of 2 networks, but its detector has 3 members"):
        AutoencoderDetector.load(folder, device="cpu")


def test_a_missing_member_network_or_score_is_refused(
    pair: AutoencoderDetector, tmp_path: Path
) -> None:
    folder = _tampered_copy(pair, tmp_path)
    state = load_file(str(folder / WEIGHTS_FILE))
    without_network = {k: v for k, v in state.items() if not k.startswith("members.1.")}
    rewrite_weights(folder, without_network)
    with pytest.raises(UserError, match=re.escape("lacks tensor 'members.1.")):
        AutoencoderDetector.load(folder, device="cpu")
    without_score = {
        k: v for k, v in state.items() if not k.startswith("scorer.members.1.neighbours")
    }
    rewrite_weights(folder, without_score)
    with pytest.raises(UserError, match="lacks the reference codes"):
        AutoencoderDetector.load(folder, device="cpu")
    stray = {**state, "scorer.members.7.calibration": torch.zeros(4, 2)}
    rewrite_weights(folder, stray)
    with pytest.raises(
        UserError, match=re.escape("unexpected fitted-score tensor 'members.7.calibration'")
    ):
        AutoencoderDetector.load(folder, device="cpu")


@pytest.mark.parametrize("members", [0, 11])
def test_a_bad_member_count_is_one_sentence(members: int, mnist: Dataset) -> None:
    with pytest.raises(UserError, match="members"):
        AutoencoderDetector(**PARAMS, members=members).fit(mnist.train_images[:50])


def test_the_config_and_flag_set_the_member_count() -> None:
    config = build_config({"scenario": "one-class"}, {"members": 3, "normal_class": 7})
    assert detector_from_config(config).members == 3
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "--members" in result.output


def test_each_member_checkpoints_in_its_own_folder(
    split: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    detector = AutoencoderDetector(**PARAMS, members=2)
    detector.fit(split[0], validation=split[1], checkpoint_dir=tmp_path / "checkpoints")
    assert (tmp_path / "checkpoints" / "member-1").is_dir()
    # Resuming finished members trains nothing more and gives the same detector.
    resumed = AutoencoderDetector(**PARAMS, members=2)
    resumed.fit(split[0], validation=split[1], checkpoint_dir=tmp_path / "checkpoints", resume=True)
    assert resumed.member_training_ == detector.member_training_
