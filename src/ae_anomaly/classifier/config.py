"""The typed config of ``ae-anomaly classify train``: what a YAML file or a flag may set.

Kept apart from the detector's ``RunConfig`` (config.py) and free of torch, so
the command line can refuse a bad value before torch is loaded. Like
``RunConfig``, every leaf field has a unique name that is also its flag
(``training.epochs`` is ``--epochs``); unknown keys are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from ae_anomaly.config import apply_overrides, describe_validation_error, leaf_fields
from ae_anomaly.data.sources import dataset_names
from ae_anomaly.errors import UserError


class _Section(BaseModel):
    # A typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ClassifierDataConfig(_Section):
    dataset: str = Field("mnist", description="dataset name: mnist or fashion-mnist")
    data_dir: Path | None = Field(
        None, description="folder holding <dataset>/ with the IDX files; searched first"
    )
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="share of the training images held out for early stopping (never the test set)",
    )
    train_limit: StrictInt | None = Field(
        None, ge=20, description="use at most this many training images (quick runs); all if unset"
    )
    test_limit: StrictInt | None = Field(
        None, ge=20, description="use at most this many test images (quick runs); all if unset"
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in dataset_names():
            raise ValueError(f"unknown dataset; choose one of: {', '.join(dataset_names())}")
        return value


class ClassifierTrainingConfig(_Section):
    # Defaults measured on full MNIST (README, "Digit classifier"): test
    # accuracy >= 99.3% in a few minutes on two CPU cores.
    epochs: StrictInt = Field(8, ge=1, description="maximum number of training epochs")
    batch_size: StrictInt = Field(128, ge=1, description="images per optimisation step")
    learning_rate: float = Field(2e-3, gt=0, le=1, description="Adam learning rate of epoch 1")
    lr_decay: float = Field(
        0.7, gt=0, le=1, description="learning rate multiplied by this after every epoch"
    )
    patience: StrictInt = Field(
        3, ge=1, description="stop after this many epochs without a better validation loss"
    )
    max_shift: StrictInt = Field(
        2,
        ge=0,
        le=4,
        description="training images are shifted by up to this many pixels (0: no augmentation)",
    )


class ClassifierConfig(_Section):
    seed: StrictInt = Field(
        0, ge=0, description="seed of every random choice: split, initial weights, shuffling"
    )
    device: str = Field(
        "auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
    )
    data: ClassifierDataConfig = Field(default_factory=ClassifierDataConfig)
    training: ClassifierTrainingConfig = Field(default_factory=ClassifierTrainingConfig)

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str) -> str:
        base, _, index = value.partition(":")
        if base not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def classifier_leaf_fields() -> dict[str, tuple[str | None, Any]]:
    """Every settable field: flag name -> (section or None for top level, field info)."""
    return leaf_fields(ClassifierConfig)


def build_classifier_config(base: dict[str, Any], overrides: dict[str, Any]) -> ClassifierConfig:
    """Validate ``base`` (from YAML) with flag-named ``overrides`` applied on top."""
    merged = apply_overrides(base, overrides, classifier_leaf_fields())
    try:
        return ClassifierConfig.model_validate(merged)
    except ValidationError as exc:
        raise UserError(f"invalid config: {describe_validation_error(exc)}") from None
