"""The parameter groups: one typed definition each, for the config file, the flags, the
estimators and the training loop.

Each group is a dataclass whose fields carry their type, default, constraints and help
text (as pydantic ``Annotated`` metadata). The config file's sections are these
dataclasses (pydantic validates them), the command line makes one flag per field, the
estimators inherit the fields as their keyword arguments (scikit-learn's ``get_params``
and ``clone`` see them), and the training loop reads them. So a new training option is
one field in ``TrainingParams`` (every model) or ``AutoencoderTraining`` (the detector).

The defaults here are the package's defaults, the only ones: ``AutoencoderDetector()``
and a run without a scenario recipe get exactly these (a recipe is a scenario's
measured deviation from them, declared by the scenario). No torch here: the command
line checks a value before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from ae_anomaly.errors import UserError
from ae_anomaly.scores.names import AUTO_SCORE, SCORE_FORMS, check_score
from ae_anomaly.scores.thresholds import parse_threshold

# Unknown keys are errors: a typo must not silently fall back to a default.
SECTION_CONFIG = ConfigDict(extra="forbid", validate_default=True)


class Section(BaseModel):
    """A config section that is not a parameter group of an estimator (data, a scenario's
    settings, the report): a pydantic model with the same strictness."""

    # protected_namespaces=() lets a field be called model_args.
    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


# Keeps an ensemble small enough to train in minutes and to export as one graph.
MAX_MEMBERS = 10


def _parsable(parse: typing.Callable[[str], object]) -> AfterValidator:
    """A validator accepting what ``parse`` accepts; its UserError becomes the field's error."""

    def check(value: str) -> str:
        try:
            parse(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        return value

    return AfterValidator(check)


def _device(value: str) -> str:
    base, _, index = value.partition(":")
    if base not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    return value


def _patch(value: str | int) -> str | int:
    if isinstance(value, int) and (value < MIN_PATCH or value % 2):
        raise ValueError(f"a patch size is an even number of pixels, at least {MIN_PATCH}")
    return value


# -- the field types, each with its rule and help text --------------------------------------

# The seeds a member of an ensemble gets are 32-bit (numpy's SeedSequence): a user's too.
MAX_SEED = 2**32 - 1
Seed = Annotated[
    int,
    Strict(),
    Field(ge=0, le=MAX_SEED, description="seed of every random choice: same seed, same scores"),
]
Device = Annotated[
    str,
    AfterValidator(_device),
    Field(description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"),
]
ValFraction = Annotated[
    float,
    Field(gt=0, lt=1, description="share of the normal training images held out for validation"),
]
Epochs = Annotated[int, Strict(), Field(ge=1, description="maximum number of training epochs")]
# An unset number of epochs adapts to the image count (resolved_epochs): a folder of 80
# images and one of 60,000 are both trained properly.
AUTO_MIN_STEPS = 1000
AUTO_MIN_EPOCHS = 6
# Patch mode draws new crops at every step, far more varied inputs than whole images: on
# textures-64 (docs/own-images.md), drawn stains were found at 0.72 after 500 steps, 0.77
# after 2,000 (a tile's mean error) and, with the tile's peak, 0.90 after 2,000 and 0.92
# after 4,000.
AUTO_MIN_PATCH_STEPS = 4000
AutoEpochs = Annotated[
    StrictInt | None,
    Field(
        ge=1,
        description=f"maximum number of training epochs; unset (null): enough epochs for at "
        f"least {AUTO_MIN_STEPS} optimisation steps, and at least {AUTO_MIN_EPOCHS}",
    ),
]
# Patch mode (nn/patches.py): "auto" uses patches of AUTO_PATCH pixels for images whose
# shorter side is at least AUTO_PATCH_SIDE, and for textures of 2 * MIN_PATCH pixels or
# more a side patches of half the side, AUTO_PATCH at most. On the development suite
# (docs/own-images.md), 256 x 256 images after 2,000 steps: 64-pixel patches found
# small stains at 0.77 where 32 found them at 0.62; 64 x 64 textures: half the side, 32.
MIN_PATCH = 8
AUTO_PATCH = 64
AUTO_PATCH_SIDE = 128
Patch = Annotated[
    Literal["auto", "off"] | StrictInt,
    # YAML (a config file, a flag) reads a bare off as false.
    BeforeValidator(lambda value: "off" if value is False else value),
    AfterValidator(_patch),
    Field(
        description=f"patch mode: a network for N x N patches, run over tiles overlapping by "
        f"half; the image's score is its worst tile's. N, off, or auto ({AUTO_PATCH} for "
        f"images of {AUTO_PATCH_SIDE} pixels or more a side; for textures of {2 * MIN_PATCH} "
        f"or more, half the side up to {AUTO_PATCH}; else off)"
    ),
]
BatchSize = Annotated[int, Strict(), Field(ge=1, description="images per optimisation step")]
LearningRate = Annotated[float, Field(gt=0, le=1, description="Adam learning rate")]
LrDecay = Annotated[
    float, Field(gt=0, le=1, description="learning rate multiplied by this after every epoch")
]
Patience = Annotated[
    int,
    Strict(),
    Field(ge=1, description="stop after this many epochs without a better validation loss"),
]


@dataclass(kw_only=True)
class FitParams:
    """What every estimator's fit shares: the held-out share, the device, the seed."""

    __pydantic_config__ = SECTION_CONFIG

    val_fraction: ValFraction = 0.1
    device: Device = "auto"
    seed: Seed = 0


@dataclass(kw_only=True)
class TrainingParams:
    """How a network is trained: the training loop's settings, for every model."""

    __pydantic_config__ = SECTION_CONFIG

    epochs: AutoEpochs = None
    batch_size: BatchSize = 128
    learning_rate: LearningRate = 1e-3
    # The rate of epoch e is learning_rate * lr_decay ** (e - 1): a function of the
    # epoch alone, so a resumed run needs no scheduler state.
    lr_decay: LrDecay = 1.0
    weight_decay: Annotated[
        float, Field(ge=0, le=1, description="Adam's L2 penalty on the weights (0: none)")
    ] = 0.0
    patience: Patience = 2
    schedule: Annotated[
        Literal["constant", "cosine"],
        Field(
            description="learning rate: constant, or cosine (falling to 0 over all epochs' steps)"
        ),
    ] = "constant"
    precision: Annotated[
        Literal["float32", "bf16"],
        Field(
            description="training arithmetic: float32, or bf16 (bfloat16 autocast of the "
            "forward pass, for GPUs that have it; weights, validation and scores stay float32)"
        ),
    ] = "float32"


@dataclass(kw_only=True)
class AutoencoderTraining(TrainingParams):
    """The training loop's settings plus what only an autoencoder's training has."""

    loss: Annotated[
        Literal["mse", "mae", "bce"],
        Field(description="training loss: mse, mae or bce (binary cross-entropy on pixels)"),
    ] = "mse"
    restore: Annotated[
        Literal["none", "rotate-to-upright"],
        Field(
            description="restoration training: none, or rotate-to-upright (a share of the "
            "training images is rotated and the model must return them upright; teaches the "
            "model that rotation is an anomaly, so it is knowledge of the anomaly kind)"
        ),
    ] = "none"
    restore_angle: Annotated[
        float,
        Field(gt=0, le=180, description="rotate-to-upright: angles are drawn in +-restore_angle"),
    ] = 30.0
    restore_share: Annotated[
        float, Field(gt=0, le=1, description="rotate-to-upright: share of training images rotated")
    ] = 0.5


@dataclass(kw_only=True)
class ModelParams:
    """Which network, and its keyword arguments."""

    __pydantic_config__ = SECTION_CONFIG

    model: Annotated[str, Field(description="architecture name (see models in the README)")] = (
        "conv-dense"
    )
    model_args: Annotated[
        dict[str, Any] | None,
        Field(description="keyword arguments of the architecture, e.g. {channels: [16, 32]}"),
    ] = None


@dataclass(kw_only=True)
class ScoreParams:
    """How an image becomes one number, how many networks give it, and the threshold rule."""

    __pydantic_config__ = SECTION_CONFIG

    score: Annotated[
        str,
        _parsable(check_score),
        Field(description=f"per-image score: {SCORE_FORMS} (see README, Scores)"),
    ] = AUTO_SCORE
    threshold: Annotated[
        str,
        _parsable(parse_threshold),
        Field(
            description="rule fitted on clean validation scores: percentile:Q, mean+Kstd or fixed:V"
        ),
    ] = "percentile:95"
    members: Annotated[
        int,
        Strict(),  # YAML reads --members true as a boolean, which is no count
        Field(
            ge=1,
            le=MAX_MEMBERS,
            description="networks trained on the same images from different initial weights; "
            "the score is the mean of theirs (an ensemble: members times the training time)",
        ),
    ] = 1
    patch: Patch = "auto"


def resolved_epochs(params: TrainingParams, n_train: int, min_steps: int = AUTO_MIN_STEPS) -> int:
    """The epochs a fit on ``n_train`` images runs at most: ``params.epochs`` when set, else
    enough for ``min_steps`` optimisation steps and at least AUTO_MIN_EPOCHS.

    Measured (conv-bn / mse and conv-dense / ssim+latent, 800 Fashion-MNIST trousers and
    300 MNIST threes against the rest): 12-15 steps gave AUROC 0.40-0.81; 250 to 2,000
    steps gave 0.93-0.98. On the own-images suite (docs/own-images.md) 1,000 steps
    against 500 raised colour digits from 0.946 to 0.971 and Fashion-MNIST sneakers as
    colour folders from 0.974 to 0.980, and lost nothing elsewhere."""
    if params.epochs is not None:
        return params.epochs
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    return max(AUTO_MIN_EPOCHS, math.ceil(min_steps / steps_per_epoch))


def minimum_epochs(params: TrainingParams, n_train: int, min_steps: int = AUTO_MIN_STEPS) -> int:
    """Epochs before early stopping may end a fit: with unset epochs, those that make
    ``min_steps`` steps (a small folder's validation loss is noisy, and patience counted
    in epochs of a few steps each would stop it after a handful of steps); else none."""
    if params.epochs is not None:
        return 0
    return math.ceil(min_steps / math.ceil(n_train / params.batch_size))


# -- reading the groups ----------------------------------------------------------------------

Group = TypeVar("Group")


def group_fields(group: type) -> dict[str, FieldInfo]:
    """A group's fields (a dataclass here, or a pydantic model) with their types, defaults
    and help texts, in declaration order."""
    model_fields = getattr(group, "model_fields", None)
    if model_fields is not None:
        return dict(model_fields)
    hints = typing.get_type_hints(group, include_extras=True)
    infos = {}
    for field in dataclasses.fields(group):
        default = (
            field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else field.default
        )
        infos[field.name] = FieldInfo.from_annotated_attribute(hints[field.name], default)
    return infos


def is_group(annotation: Any) -> bool:
    """True for a section type: a parameter group or a pydantic model."""
    return isinstance(annotation, type) and (
        dataclasses.is_dataclass(annotation) or hasattr(annotation, "model_fields")
    )


def checked(group: type[Group], source: object, what: str = "parameter") -> Group:
    """``group`` with its fields read from ``source`` (e.g. an estimator) and validated;
    a UserError naming the bad field otherwise."""
    values = {name: getattr(source, name) for name in group_fields(group)}
    try:
        return TypeAdapter(group).validate_python(values)
    except ValidationError as exc:
        raise UserError(f"invalid {what}: {describe_validation_error(exc)}") from None


def _printable(part: object) -> str:
    """A key as the message shows it: quoted when it is empty or holds a line break or
    other invisible characters, so the message stays one line and says what was typed."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming its key: ``training.epochs: ... (got 0)``."""
    parts = []
    for error in exc.errors():
        key = ".".join(_printable(p) for p in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown key"
        elif "input" in error and not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
        parts.append(f"{key}: {message}")
    return "; ".join(parts)
