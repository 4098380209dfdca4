"""The typed experiment config: what a YAML file or the command line may set.

YAML is read only here, at the edge; the rest of the code sees validated
pydantic objects. Every leaf field has a unique name, which is also its
command-line flag (``training.epochs`` is ``--epochs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ae_anomaly.data.sources import dataset_names
from ae_anomaly.errors import UserError
from ae_anomaly.params import (
    AutoencoderTraining,
    Device,
    FitParams,
    ModelParams,
    ScoreParams,
    Section,
    Seed,
    ValFraction,
    describe_validation_error,
    group_fields,
    is_group,
)
from ae_anomaly.scenarios import DEFAULT_SCENARIO, SCENARIOS, get_scenario, own_images_scenario
from ae_anomaly.scenarios.corruptions import CorruptionConfig
from ae_anomaly.scenarios.guard import GuardConfig

ARRAY_SUFFIXES = (".npy", ".npz")


def is_dataset_path(dataset: str) -> bool:
    """True when ``dataset`` names a folder or array file rather than a registered dataset."""
    return dataset not in dataset_names()


class DatasetSection(Section):
    """Which images, and how many: what the detector's and the classifier's data sections
    share."""

    dataset: str = Field("mnist", description="dataset name (see `ae-anomaly datasets`)")
    data_dir: Path | None = Field(
        None, description="folder holding <dataset>/ with the IDX files; searched first"
    )
    val_fraction: ValFraction = FitParams.val_fraction
    train_limit: StrictInt | None = Field(
        None, ge=20, description="use at most this many training images (quick runs); all if unset"
    )
    test_limit: StrictInt | None = Field(
        None, ge=20, description="use at most this many test images (quick runs); all if unset"
    )


class DataConfig(DatasetSection):
    dataset: str = Field(
        "mnist",
        description="dataset name (see `ae-anomaly datasets`), or a folder of your own images "
        "(train/, optional test/normal/ and test/<kind>/) or a .npy/.npz array of them",
    )
    normal_class: StrictInt | None = Field(
        None,
        ge=0,
        description="one-class scenario: the class learnt as normal (e.g. 7 = Sneaker in "
        "fashion-mnist); every other class is an anomaly",
    )

    image_size: list[StrictInt] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="image folders: resize every image to [height, width]; default: the most "
        "common size in train/",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="image folders: 1 (grey) or 3 (colour); default: what train/ holds"
    )
    on_unreadable: Literal["fail", "skip"] = Field(
        "fail",
        description="image folders: stop at a file that cannot be read (fail) or skip it and "
        "count it (skip)",
    )

    @field_validator("image_size")
    @classmethod
    def _valid_size(cls, size: list[int] | None) -> list[int] | None:
        if size is not None and min(size) < 1:
            raise ValueError("height and width must be positive")
        return size


# The training section is the detector's training parameters (params.AutoencoderTraining);
# the detector section is its score parameters plus where its threshold is fitted.
@dataclass(kw_only=True)
class DetectorConfig(ScoreParams):
    threshold_data: Annotated[
        Literal["validation", "test-normal"],
        Field(
            description="images the threshold is fitted on: validation (held-out normal "
            "training images) or test-normal (the normal test images: uses test labels, only "
            "to reproduce projects that did so)"
        ),
    ] = "validation"


class ReportConfig(Section):
    top_k: StrictInt = Field(
        12, ge=1, le=100, description="how many of the most anomalous test images to show"
    )


class RunConfig(Section):
    scenario: str = Field(
        DEFAULT_SCENARIO,
        description="experiment: "
        + ", ".join(scenario.description for scenario in SCENARIOS.values()),
    )
    seed: Seed = FitParams.seed
    device: Device = FitParams.device
    threads: StrictInt | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads torch computes with; unset: torch's default. A run records "
        "the number it used in its config.yaml, so `run --config OUT/config.yaml` repeats its "
        "scores exactly (another thread count sums in another order)",
    )
    model: str = Field(
        ModelParams.model, description="architecture name (see models in the README)"
    )
    model_args: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the architecture, e.g. {channels: [16, 32]}",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    training: AutoencoderTraining = Field(default_factory=AutoencoderTraining)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    # The sections of the scenarios that have settings of their own.
    corruptions: CorruptionConfig = Field(default_factory=CorruptionConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        if value not in SCENARIOS:
            raise ValueError(f"unknown scenario; choose one of {', '.join(SCENARIOS)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_scenario(cls, data: Any) -> Any:
        """A dataset given as a path means the own-images scenario, unless one is named."""
        if isinstance(data, dict) and "scenario" not in data and _names_own_images(data):
            return {**data, "scenario": own_images_scenario()}
        return data

    @model_validator(mode="after")
    def _scenario_fields(self) -> RunConfig:
        """The rules every scenario shares, then the scenario's own (Scenario.check)."""
        scenario = get_scenario(self.scenario)
        own_images = is_dataset_path(self.data.dataset)
        if own_images and not scenario.own_images:
            raise ValueError(
                f"the {self.scenario} scenario needs a named dataset "
                f"({', '.join(dataset_names())}); {self.data.dataset!r} is a path: "
                f"use the {own_images_scenario()} scenario"
            )
        if scenario.own_images and not own_images:
            raise ValueError(
                f"the {self.scenario} scenario needs a folder or .npy/.npz file as dataset, "
                f"not the named dataset {self.data.dataset!r}"
            )
        for name in ("image_size", "channels"):
            if not own_images and getattr(self.data, name) is not None:
                raise ValueError(f"data.{name} is only used with image folders")
        # A setting only some scenarios use would be silently ignored by the others.
        for section, name in sorted(set().union(*(s.uses for s in SCENARIOS.values()))):
            if getattr(getattr(self, section), name) is None or (section, name) in scenario.uses:
                continue
            users = " / ".join(s.name for s in SCENARIOS.values() if (section, name) in s.uses)
            raise ValueError(
                f"{section}.{name} is only used by the {users} scenario, not {self.scenario}"
            )
        scenario.check(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def leaf_fields(
    config_class: type[BaseModel] | None = None,
) -> dict[str, tuple[str | None, Any]]:
    """Every settable field of ``config_class`` (default RunConfig): flag name -> (section
    or None for top level, field info)."""
    leaves: dict[str, tuple[str | None, Any]] = {}
    for name, info in (config_class or RunConfig).model_fields.items():
        section = info.annotation
        if isinstance(section, type) and is_group(section):
            for sub_name, sub_info in group_fields(section).items():
                leaves[sub_name] = (name, sub_info)
        else:
            leaves[name] = (None, info)
    return leaves


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or a UserError saying why there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise UserError(f"config file {path} is nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def build_config(
    base: dict[str, Any], overrides: dict[str, Any], *, recipe: bool = True
) -> RunConfig:
    """Validate ``base`` (from YAML) with flag-named ``overrides`` applied on top,
    over the scenario's recipe (Scenario.recipe) unless ``recipe`` is False."""
    merged = apply_overrides(base, overrides, leaf_fields())
    return validate_config(with_recipe(merged) if recipe else merged)


def with_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` over its scenario's recipe, when ``data`` names no model.

    A recipe holds settings measured to suit its scenario better than the package
    defaults (params.py). It fills in what the config file and the command line leave
    unset, and only when they name no model: its fields were measured together, so
    naming your own model means the package defaults for the rest."""
    if "model" in data:
        return data
    scenario = SCENARIOS.get(_scenario_of(data))
    recipe = scenario.recipe if scenario is not None else {}
    merged = {**recipe, **data}
    for section, values in recipe.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            merged[section] = {**values, **data[section]}
    return merged


def _scenario_of(data: dict[str, Any]) -> str:
    """The scenario ``data`` will validate to (the same rule as RunConfig's)."""
    if "scenario" in data:
        return data["scenario"] if isinstance(data["scenario"], str) else ""
    return own_images_scenario() if _names_own_images(data) else DEFAULT_SCENARIO


def _names_own_images(data: dict[str, Any]) -> bool:
    section = data.get("data")
    dataset = section.get("dataset") if isinstance(section, dict) else None
    return isinstance(dataset, str) and is_dataset_path(dataset)


def apply_overrides(
    base: dict[str, Any],
    overrides: dict[str, Any],
    leaves: dict[str, tuple[str | None, Any]],
) -> dict[str, Any]:
    """A copy of ``base`` with each flag-named override put in its section (see leaf_fields)."""
    merged: dict[str, Any] = {
        key: (dict(v) if isinstance(v, dict) else v) for key, v in base.items()
    }
    for flag, value in overrides.items():
        if flag not in leaves:
            raise UserError(f"unknown config field '{flag}'")
        section, _ = leaves[flag]
        if section is None:
            merged[flag] = value
        else:
            target = merged.setdefault(section, {})
            if not isinstance(target, dict):
                raise UserError(f"invalid config: {section} must be a mapping")
            target[flag] = value
    return merged


def validate_config(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid config: {describe_validation_error(exc)}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
