"""Tests for ae_anomaly.config: validation of YAML/CLI settings, with messages naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ae_anomaly.config import (
    RunConfig,
    build_config,
    leaf_fields,
    read_yaml,
    validate_config,
)
from ae_anomaly.errors import UserError
from ae_anomaly.params import group_fields, is_group
from ae_anomaly.scenarios.corruptions import CORRUPTION_KINDS


def invalid(data: dict[str, Any]) -> str:
    """The message of the UserError that validating ``data`` raises."""
    with pytest.raises(UserError) as info:
        validate_config(data)
    return str(info.value)


# -- defaults -------------------------------------------------------------------------


def test_defaults_validate() -> None:
    config = validate_config({})
    assert isinstance(config, RunConfig)
    assert config.seed == 0
    assert config.model == "conv-dense"
    assert config.model_args == {}  # conv-dense's own default: a 32-unit code
    assert config.detector.score == "auto"  # ssim+latent, mse for patches (auto_score)
    assert config.detector.patch == "auto"
    assert config.training.epochs is None  # adapts to the image count (resolved_epochs)
    assert config.training.batch_size == 128
    assert config.data.val_fraction == 0.1
    assert config.detector.threshold == "percentile:95"
    assert sum(config.corruptions.mix.values()) == pytest.approx(1.0)
    assert config.corruptions.angle_bands[-1] >= config.corruptions.max_angle


def test_to_dict_round_trips() -> None:
    config = validate_config({"seed": 3, "training": {"epochs": 2}})
    again = validate_config(config.to_dict())
    assert again == config
    assert again.to_dict()["training"]["epochs"] == 2


def test_leaf_names_are_unique_flags() -> None:
    # Every leaf has its own name (it is also a command-line flag): no two sections may
    # share one, or leaf_fields() would silently hide one of them.
    count = 0
    for info in RunConfig.model_fields.values():
        annotation = info.annotation
        if isinstance(annotation, type) and is_group(annotation):
            count += len(group_fields(annotation))
        else:
            count += 1
    leaves = leaf_fields()
    assert len(leaves) == count
    assert leaves["epochs"][0] == "training"
    assert leaves["threshold"][0] == "detector"
    assert leaves["seed"][0] is None


# -- unknown keys ---------------------------------------------------------------------


def test_unknown_top_level_key_is_named() -> None:
    message = invalid({"epochs": 5})
    assert "epochs: unknown key" in message


def test_unknown_nested_key_is_named_with_its_section() -> None:
    message = invalid({"training": {"epoch": 5}})
    assert "training.epoch: unknown key" in message


def test_every_problem_is_reported() -> None:
    message = invalid({"training": {"epoch": 5, "batch_size": 0}, "sed": 1})
    assert "training.epoch" in message
    assert "training.batch_size" in message
    assert "sed: unknown key" in message


# -- types and ranges -----------------------------------------------------------------


def test_wrong_type_is_named_with_the_value() -> None:
    message = invalid({"training": {"epochs": "five"}})
    assert "training.epochs" in message
    assert "'five'" in message


def test_section_that_is_not_a_mapping() -> None:
    assert "training" in invalid({"training": 5})


@pytest.mark.parametrize(
    ("data", "key", "bad"),
    [
        ({"training": {"epochs": 0}}, "training.epochs", "0"),
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction", "1.5"),
        ({"data": {"val_fraction": 0}}, "data.val_fraction", "0"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate", "0"),
        ({"training": {"weight_decay": -0.1}}, "training.weight_decay", "-0.1"),
        ({"training": {"patience": 0}}, "training.patience", "0"),
        ({"seed": -1}, "seed", "-1"),
        ({"data": {"train_limit": 5}}, "data.train_limit", "5"),
        ({"corruptions": {"resample_factor": 9}}, "corruptions.resample_factor", "9"),
        ({"corruptions": {"noise_std": [0.0]}}, "corruptions.noise_std", "[0.0]"),
        ({"corruptions": {"noise_std": []}}, "corruptions.noise_std", "[]"),
        ({"report": {"top_k": 0}}, "report.top_k", "0"),
    ],
)
def test_out_of_range_values_are_named(data: dict[str, Any], key: str, bad: str) -> None:
    message = invalid(data)
    assert message.startswith("invalid config: ")
    assert f"{key}:" in message
    assert f"(got {bad})" in message


def test_percentile_out_of_range_in_threshold() -> None:
    message = invalid({"detector": {"threshold": "percentile:120"}})
    assert "detector.threshold" in message
    assert "between 0 and 100" in message


def test_unparseable_threshold() -> None:
    message = invalid({"detector": {"threshold": "median"}})
    assert "detector.threshold" in message
    assert "not understood" in message


@pytest.mark.parametrize("value", ["mae", "mse"])
def test_score_and_loss_kinds_accepted(value: str) -> None:
    config = validate_config({"detector": {"score": value}, "training": {"loss": value}})
    assert config.detector.score == value
    assert config.training.loss == value


@pytest.mark.parametrize("score", ["ssim2", "mse+", "ssim+ssim", "latent+psnr", ""])
def test_unknown_score_kind_rejected(score: str) -> None:
    assert "detector.score" in invalid({"detector": {"score": score}})


@pytest.mark.parametrize(
    "score",
    ["ssim", "latent", "knn", "ssim+latent", "blur-mse+rel-blur", "ssim+blur-mse+latent+knn"],
)
def test_score_kinds_and_combinations_accepted(score: str) -> None:
    assert validate_config({"detector": {"score": score}}).detector.score == score


def test_corruptions_recipe_fills_unset_fields_only() -> None:
    config = build_config({"training": {"epochs": 3}}, {})
    assert (config.model, config.detector.score, config.training.epochs) == (
        "conv-dense",
        "ssim+latent",
        3,
    )


def test_one_class_recipe() -> None:
    config = build_config({}, {"scenario": "one-class", "normal_class": 7, "score": "mae"})
    assert (config.model, config.training.epochs, config.training.schedule) == (
        "conv-dense",
        20,
        "cosine",
    )
    assert config.training.patience == 20  # the schedule sets the length, not early stopping
    assert config.training.weight_decay == 5e-4
    assert config.training.learning_rate == 2e-3
    assert config.detector.members == 2  # an ensemble of two networks
    assert config.detector.score == "mae"  # a flag still wins over the recipe
    recipe = build_config({}, {"scenario": "one-class", "normal_class": 7})
    assert recipe.detector.score == "ssim+blur-mse+latent+knn"


def test_naming_a_model_drops_the_recipe() -> None:
    config = build_config({}, {"model": "conv-bn"})
    assert (config.detector.score, config.training.epochs) == ("auto", None)
    assert config.model_args == {}  # not the recipe's code width


def test_recipe_only_for_its_scenario_and_when_asked() -> None:
    assert build_config({}, {"scenario": "guard"}).model_args == {}
    assert build_config({}, {}, recipe=False).model_args == {}
    assert build_config({}, {}).model_args == {"code": 16}  # the main job's recipe


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device: str) -> None:
    assert validate_config({"device": device}).device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0:1", ""])
def test_invalid_devices(device: str) -> None:
    assert "device" in invalid({"device": device})


def test_boolean_is_not_an_epoch_count() -> None:
    invalid({"training": {"epochs": True}})


# -- the corruption mix ---------------------------------------------------------------


def test_mix_must_add_up_to_one() -> None:
    message = invalid({"corruptions": {"mix": {"clean": 0.5, "noise": 0.4}}})
    assert "corruptions.mix" in message
    assert "add up to 1" in message
    assert "0.9" in message


def test_mix_rejects_unknown_kind_and_lists_valid_ones() -> None:
    message = invalid({"corruptions": {"mix": {"clean": 0.5, "blur": 0.5}}})
    assert "corruptions.mix" in message
    assert "'blur'" in message
    for kind in CORRUPTION_KINDS:
        assert kind in message


def test_mix_needs_clean_digits() -> None:
    message = invalid({"corruptions": {"mix": {"noise": 0.5, "rotation": 0.5}}})
    assert "corruptions.mix" in message
    assert "clean" in message


def test_mix_needs_corrupted_digits() -> None:
    assert "corruptions.mix" in invalid({"corruptions": {"mix": {"clean": 1.0}}})


def test_mix_rejects_negative_share() -> None:
    message = invalid({"corruptions": {"mix": {"clean": 1.2, "noise": -0.2}}})
    assert "negative" in message


def test_mix_with_a_zero_share_is_fine() -> None:
    mix = {"clean": 0.5, "noise": 0.5, "rotation": 0.0}
    assert validate_config({"corruptions": {"mix": mix}}).corruptions.mix == mix


# -- angle bands ----------------------------------------------------------------------


def test_angle_bands_must_reach_max_angle() -> None:
    message = invalid({"corruptions": {"max_angle": 45}})
    assert "corruptions.angle_bands" in message
    assert "45" in message


def test_angle_bands_reaching_max_angle_are_fine() -> None:
    config = validate_config({"corruptions": {"max_angle": 45, "angle_bands": [0, 15, 45]}})
    assert config.corruptions.angle_bands == [0, 15, 45]


@pytest.mark.parametrize("bands", [[0, 20, 10, 30], [0, 10, 10, 30], [-5, 10, 30]])
def test_angle_bands_must_increase_from_zero(bands: list[float]) -> None:
    assert "corruptions.angle_bands" in invalid({"corruptions": {"angle_bands": bands}})


# -- build_config: YAML base plus flag overrides --------------------------------------


def test_overrides_beat_the_yaml_base() -> None:
    base = {"seed": 1, "training": {"epochs": 3, "batch_size": 32}, "detector": {"score": "mae"}}
    config = build_config(base, {"epochs": 7, "seed": 9, "threshold": "mean+2std"})
    assert config.training.epochs == 7
    assert config.training.batch_size == 32  # untouched by the overrides
    assert config.seed == 9
    assert config.detector.threshold == "mean+2std"
    assert config.detector.score == "mae"
    # the base mapping is not changed in place
    assert base == {
        "seed": 1,
        "training": {"epochs": 3, "batch_size": 32},
        "detector": {"score": "mae"},
    }


def test_override_into_a_missing_section() -> None:
    config = build_config({}, {"val_fraction": 0.25})
    assert config.data.val_fraction == 0.25


def test_overrides_are_validated_too() -> None:
    with pytest.raises(UserError, match=r"training\.epochs"):
        build_config({"training": {"epochs": 3}}, {"epochs": 0})


def test_override_into_a_section_that_is_not_a_mapping() -> None:
    with pytest.raises(UserError, match="training must be a mapping"):
        build_config({"training": 5}, {"epochs": 2})


def test_unknown_key_in_base_is_still_rejected_with_overrides() -> None:
    with pytest.raises(UserError, match=r"training\.epoch: unknown key"):
        build_config({"training": {"epoch": 3}}, {"epochs": 2})


# -- read_yaml ------------------------------------------------------------------------


def test_read_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 4\ntraining:\n  epochs: 2\n", encoding="utf-8")
    data = read_yaml(path)
    assert data == {"seed": 4, "training": {"epochs": 2}}
    assert build_config(data, {}).training.epochs == 2


def test_read_yaml_empty_file_is_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert read_yaml(path) == {}


def test_read_yaml_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError, match="cannot read config file") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_read_yaml_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("training: [1, 2\nseed: 3\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML") as info:
        read_yaml(path)
    assert "\n" not in str(info.value)


def test_read_yaml_list_instead_of_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- seed\n- 3\n", encoding="utf-8")
    with pytest.raises(UserError, match="must hold a mapping"):
        read_yaml(path)


def test_read_yaml_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read config file"):
        read_yaml(tmp_path)


@pytest.mark.parametrize(
    "overrides",
    [
        {"mix": {"clean": float("nan"), "noise": 1.0}},
        {"angle_bands": [0.0, float("nan"), 30.0]},
        {"threshold": "mean+1e999std"},
        {"threshold": "fixed:1e999"},
    ],
)
def test_non_finite_numbers_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(UserError, match="finite"):
        build_config({}, overrides)


def test_every_training_parameter_is_a_key_a_flag_and_an_estimator_argument() -> None:
    """One definition (params.AutoencoderTraining) serves the config file, the flags, the
    detector and the loop: a field added there is all of these at once."""
    from dataclasses import asdict

    from ae_anomaly.detector.estimator import AutoencoderDetector
    from ae_anomaly.params import AutoencoderTraining, TrainingParams
    from ae_anomaly.runs.experiment import detector_from_config

    fields = group_fields(AutoencoderTraining)
    assert set(group_fields(TrainingParams)) < set(fields)  # the loop's settings are in it
    defaults = AutoencoderDetector().get_params()
    leaves = leaf_fields()
    for name, info in fields.items():
        assert leaves[name][0] == "training", name
        assert defaults[name] == info.default, name
    changed = {"epochs": 3, "lr_decay": 0.5, "loss": "mae", "restore_share": 0.25}
    config = build_config({}, {**changed, "model": "conv-bn"})
    assert {k: v for k, v in asdict(config.training).items() if k in changed} == changed
    detector = detector_from_config(config)
    assert {k: detector.get_params()[k] for k in changed} == changed


@pytest.mark.parametrize(
    ("epochs", "n_train", "batch_size", "expected"),
    [
        (None, 54_000, 128, 6),  # large sets: at least 6 epochs (422 steps each)
        (None, 720, 128, 167),  # 6 steps an epoch: 167 epochs make 1,002 steps
        (None, 63, 128, 1000),  # one step an epoch
        (None, 720, 32, 44),
        (3, 63, 128, 3),  # explicit settings win
    ],
)
def test_unset_epochs_adapt_to_the_image_count(
    epochs: int | None, n_train: int, batch_size: int, expected: int
) -> None:
    from ae_anomaly.params import TrainingParams, resolved_epochs

    params = TrainingParams(epochs=epochs, batch_size=batch_size)
    assert resolved_epochs(params, n_train) == expected


def test_patch_mode_makes_at_least_its_own_steps() -> None:
    from ae_anomaly.params import AUTO_MIN_PATCH_STEPS, TrainingParams, resolved_epochs

    # 540 images with 9 tiles each: 4,860 crops, 38 steps an epoch.
    assert resolved_epochs(TrainingParams(), 540 * 9, AUTO_MIN_PATCH_STEPS) == 106


@pytest.mark.parametrize("value", ["true", "2.0", "'3'"])
def test_members_must_be_a_whole_number_not_true_or_text(value: str) -> None:
    from ae_anomaly.cli.options import parse_overrides

    with pytest.raises(UserError, match="members"):
        build_config({}, parse_overrides({"members": value}))


def test_a_key_with_a_line_break_is_quoted_so_the_message_stays_one_line() -> None:
    """Found by the property-based tests: a section key holding "\\n"."""
    with pytest.raises(UserError) as caught:
        build_config({"training": {"\n": 1, "": 2}}, {})
    message = str(caught.value)
    assert "\n" not in message
    assert "training.'\\n': unknown key" in message and "training.'': unknown key" in message
