"""A saved detector: ``weights.safetensors`` and ``detector.json``, written and checked.

``detector.json`` holds the architecture, the input shape, the normalisation, the score,
the threshold, the training summary, the package version and (since format 2) the
SHA-256 of the weights; the weights file holds the network(s), the validation scores and
what the score fitted (code density, reference codes, calibration). Every field is
checked on load, so a hand-edited, tampered or foreign folder ends in one sentence.
Format 1 (package 0.1, no digest) still loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ae_anomaly import __version__
from ae_anomaly.data.tensors import UINT8_SCALE
from ae_anomaly.errors import UserError
from ae_anomaly.estimator.base import placed
from ae_anomaly.estimator.files import (
    DIGEST_KEY,
    WEIGHTS_FILE,
    read_metadata,
    read_weights,
    write_model_folder,
)
from ae_anomaly.nn.device import select_device
from ae_anomaly.nn.ensemble import combined
from ae_anomaly.nn.models import WithCode
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.params import MIN_PATCH
from ae_anomaly.scores.names import AUTO_SCORE, parse_score
from ae_anomaly.scores.scorer import Scorer

if TYPE_CHECKING:
    from ae_anomaly.detector.estimator import AutoencoderDetector

FORMAT_NAME = "ae-anomaly-detector"
# 3: detector.json gives the patch size (null: whole images). 2: it names the SHA-256 of
# the weights. 1: package 0.1, read without it. Formats 1 and 2 score whole images.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
META_FILE = "detector.json"
# Every top-level key of detector.json, in any readable format.
KNOWN_KEYS = {
    "format",
    "format_version",
    "package_version",
    "params",
    "model",
    "model_args",
    "input_shape",
    "patch_size",
    "normalisation",
    "score",
    "threshold",
    "training",
    DIGEST_KEY,
}
# Saved beside the weights so that a loaded detector can refit its threshold.
VALIDATION_SCORES_KEY = "detector.validation_scores"
# The scorer's fitted tensors (code density, reference codes, calibration) are saved
# under this prefix.
SCORER_PREFIX = "scorer."


def save_detector(detector: AutoencoderDetector, folder: Path) -> Path:
    """Write ``detector``'s weights and detector.json into ``folder``."""
    state = dict(detector.model_.state_dict())
    state[VALIDATION_SCORES_KEY] = torch.from_numpy(np.asarray(detector.validation_scores_))
    for key, tensor in detector.scorer_.state_dict().items():
        state[SCORER_PREFIX + key] = tensor
    return write_model_folder(folder, state, META_FILE, _metadata(detector))


def _metadata(detector: AutoencoderDetector) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "params": detector.get_params(),
        "model": detector.model,
        "model_args": detector.model_args or {},
        "input_shape": list(detector.input_shape_),
        "patch_size": detector.patch_size_,
        "normalisation": {"uint8_scale": UINT8_SCALE, "pixel_range": [0.0, 1.0]},
        "score": detector.score_,
        "threshold": {"rule": detector.threshold, "value": detector.threshold_},
        "training": {
            "history": detector.history_,
            "best_epoch": detector.best_epoch_,
            "members": detector.member_training_,
        },
    }


def load_detector(cls: type[AutoencoderDetector], folder: Path, device: str) -> AutoencoderDetector:
    """The detector saved in ``folder`` (see ``AutoencoderDetector.load``)."""
    meta_path = folder / META_FILE
    meta = read_metadata(meta_path, FORMAT_NAME, READABLE_VERSIONS, "detector")
    try:
        fields = _checked_fields(meta)
        params = _with_former_defaults(fields.params, meta["format_version"])
        detector = cls(**{**params, "device": device})
        detector.validate_params()  # the same rules as fit()
    except (KeyError, TypeError, ValueError, UserError) as exc:
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        raise UserError(f"{meta_path} is missing or has a bad field ({reason})") from None
    detector.input_shape_ = fields.input_shape
    detector.patch_size_ = fields.patch_size
    detector.score_ = fields.score
    detector.threshold_ = fields.threshold
    detector.history_ = fields.history
    detector.best_epoch_ = fields.best_epoch
    detector.member_training_ = fields.member_training
    if len(fields.member_training) != detector.members:
        raise UserError(
            f"{meta_path} describes the training of {len(fields.member_training)} "
            f"networks, but its detector has {detector.members} members"
        )
    try:
        networks = [
            build_network(detector.model, detector.network_shape(), **(detector.model_args or {}))
            for _ in range(detector.members)
        ]
    except UserError as exc:
        raise UserError(f"{meta_path} describes no usable model: {exc}") from None
    weights_path = folder / WEIGHTS_FILE
    state = read_weights(folder, META_FILE, fields.digest)
    detector.validation_scores_ = _validation_scores(state, weights_path)
    local = detector.patch_size_ is not None
    scorers = _saved_scorers(detector.score_, detector.members, state, weights_path, local)
    _check_finite(state, weights_path)  # what is left: the networks' weights
    model, scorer = combined(networks, scorers)
    _check_state_matches(model, state, weights_path, meta_path)
    model.load_state_dict(state)
    for network, member_scorer in zip(networks, scorers, strict=True):
        _check_code_width(network, member_scorer, detector.network_shape(), weights_path)
    detector.device_ = select_device(device)
    detector.model_ = placed(model, detector.device_)
    detector.model_.eval()
    detector.scorer_ = scorer.to(detector.device_)
    return detector


@dataclass(frozen=True)
class _Fields:
    """The fields of detector.json that ``load`` uses, checked for type and range."""

    params: dict[str, Any]
    input_shape: tuple[int, int, int]
    patch_size: int | None
    score: str  # the fitted one: params.score, or what its "auto" stood for
    threshold: float
    history: list[dict[str, Any]]
    best_epoch: int
    member_training: list[dict[str, Any]]
    digest: str | None  # None for format 1, saved without one


def _checked_fields(meta: dict[str, Any]) -> _Fields:
    """detector.json's fields, or a KeyError / TypeError / ValueError saying which is bad."""
    unknown_keys = sorted(map(str, set(meta) - KNOWN_KEYS))
    if unknown_keys:
        # A key this version does not write is an edit or a foreign file: its meaning
        # would be silently ignored.
        raise ValueError(f"unknown keys {', '.join(map(repr, unknown_keys))}")
    params = meta["params"]
    if not isinstance(params, dict):
        raise TypeError("params must be a mapping")
    from ae_anomaly.detector.estimator import AutoencoderDetector

    unknown = sorted(set(params) - set(AutoencoderDetector().get_params()))
    if unknown:
        raise ValueError(f"unknown params {', '.join(map(str, unknown))}")
    if not isinstance(params.get("model"), str):
        raise TypeError("params.model must be a model name")
    if params.get("model_args") is not None and not isinstance(params["model_args"], dict):
        raise TypeError("params.model_args must be a mapping")
    if "model" in meta and meta["model"] != params.get("model"):
        raise ValueError(
            f"model {meta['model']!r} differs from params.model {params.get('model')!r}"
        )
    score = _checked_score(meta.get("score", params.get("score")), params.get("score"))
    shape = meta["input_shape"]
    if not (
        isinstance(shape, list) and len(shape) == 3 and all(_is_int(d) and d > 0 for d in shape)
    ):
        raise ValueError(f"input_shape must be three positive integers (C, H, W), got {shape!r}")
    patch_size = meta.get("patch_size") if meta["format_version"] >= 3 else None
    if patch_size is not None and not (
        _is_int(patch_size)
        and patch_size >= MIN_PATCH
        and patch_size % 2 == 0
        and patch_size <= min(shape[1], shape[2])
    ):
        raise ValueError(
            f"patch_size must be null or an even number from {MIN_PATCH} up to the image "
            f"side, got {patch_size!r}"
        )
    threshold = meta["threshold"]["value"]
    # Combined scores are sums of z-scores, so a threshold may be negative.
    if not _is_number(threshold) or not math.isfinite(threshold):
        raise ValueError(f"threshold.value must be a finite number, got {threshold!r}")
    training = meta["training"]
    first = _checked_training_record(training, "training")
    # Detectors saved before ensembles existed have one member, described by history alone.
    members = training.get("members", [first])
    if not isinstance(members, list) or not members:
        raise TypeError("training.members must be a non-empty list of mappings")
    member_training = [
        _checked_training_record(record, f"training.members[{i}]")
        for i, record in enumerate(members)
    ]
    digest = meta.get(DIGEST_KEY) if meta["format_version"] >= 2 else None
    if meta["format_version"] >= 2 and not (isinstance(digest, str) and len(digest) == 64):
        raise ValueError(f"{DIGEST_KEY} must be a SHA-256 in hex, got {digest!r}")
    return _Fields(
        digest=digest,
        params=params,
        input_shape=(shape[0], shape[1], shape[2]),
        patch_size=patch_size,
        score=score,
        threshold=float(threshold),
        history=first["history"],
        best_epoch=first["best_epoch"],
        member_training=member_training,
    )


def _with_former_defaults(params: dict[str, Any], version: int) -> dict[str, Any]:
    """``params`` with what the package's defaults were when format ``version`` was
    written, where they have changed since: conv-dense's code had 16 units before
    format 3, and detectors saved its default by leaving ``code`` out."""
    if version < 3 and params.get("model") == "conv-dense":
        model_args = dict(params.get("model_args") or {})
        model_args.setdefault("code", 16)
        return {**params, "model_args": model_args}
    return params


def _checked_score(fitted: Any, asked: Any) -> str:
    """The fitted score of detector.json: a score (not auto), the one params asked for
    unless they asked for auto; a ValueError otherwise."""
    if not isinstance(fitted, str) or fitted == AUTO_SCORE:
        raise ValueError(f"score must name the fitted score, got {fitted!r}")
    try:
        parse_score(fitted)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    if asked not in (AUTO_SCORE, fitted):
        raise ValueError(f"score {fitted!r} differs from params.score {asked!r}")
    return fitted


def _checked_training_record(record: Any, where: str) -> dict[str, Any]:
    """One network's {"history", "best_epoch"}, or a TypeError / ValueError saying which is bad."""
    if not isinstance(record, dict):
        raise TypeError(f"{where} must be a mapping")
    history, best_epoch = record["history"], record["best_epoch"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise TypeError(f"{where}.history must be a list of mappings")
    if not _is_int(best_epoch) or best_epoch < 0:
        raise ValueError(f"{where}.best_epoch must be an integer >= 0, got {best_epoch!r}")
    return {"history": list(history), "best_epoch": best_epoch}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with NaN or infinite numbers: every score would be NaN."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{path} holds numbers that are not finite in tensor '{name}'")


def _validation_scores(state: dict[str, torch.Tensor], path: Path) -> np.ndarray:
    scores = state.pop(VALIDATION_SCORES_KEY, None)
    if scores is None:
        raise UserError(f"{path} holds no validation scores")
    if scores.ndim != 1 or not scores.is_floating_point() or not bool(torch.isfinite(scores).all()):
        raise UserError(f"{path} holds validation scores that are not a list of finite numbers")
    return scores.numpy()


def _saved_scorers(
    spec: str, members: int, state: dict[str, torch.Tensor], path: Path, local: bool
) -> list[Scorer]:
    """The members' fitted scorers saved in ``state`` (their keys are removed from it);
    ``local``: scorers of patches (Scorer)."""
    saved = {
        key.removeprefix(SCORER_PREFIX): state.pop(key)
        for key in [k for k in state if k.startswith(SCORER_PREFIX)]
    }
    if members == 1:
        return [_saved_scorer(spec, saved, path, local)]
    # An EnsembleScorer's state: "members.<i>.<key>" for member i.
    per_member: list[dict[str, torch.Tensor]] = [{} for _ in range(members)]
    for key, tensor in saved.items():
        head, member, rest = [*key.split(".", 2), "", ""][:3]
        if head != "members" or not member.isdigit() or int(member) >= members or not rest:
            raise UserError(f"{path} holds an unexpected fitted-score tensor {key!r}")
        per_member[int(member)][rest] = tensor
    return [_saved_scorer(spec, member_state, path, local) for member_state in per_member]


def _saved_scorer(spec: str, saved: dict[str, torch.Tensor], path: Path, local: bool) -> Scorer:
    """One fitted scorer from its saved tensors (keys without prefix)."""
    try:
        scorer = Scorer.from_state(spec, saved, local)
        scorer.load_state_dict(saved)
    except (UserError, RuntimeError) as exc:
        raise UserError(
            f"{path} holds no usable fitted score {spec!r}: {_first_line(exc)}"
        ) from None
    if not all(bool(torch.isfinite(t).all()) for t in saved.values()):
        raise UserError(f"{path} holds a fitted score {spec!r} with values that are not finite")
    return scorer


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_state_matches(
    network: nn.Module, state: dict[str, torch.Tensor], weights_path: Path, meta_path: Path
) -> None:
    """Refuse weights whose tensors differ in name or shape from the model the JSON describes."""
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra:
        name = (missing or extra)[0]
        problem = "lacks" if missing else "has an unexpected"
        raise UserError(
            f"{weights_path} does not match the model in {meta_path}: it {problem} tensor '{name}'"
        )
    if wrong:
        name = wrong[0]
        raise UserError(
            f"{weights_path} does not match the model in {meta_path}: tensor '{name}' has "
            f"shape {found[name]}, the model needs {expected[name]}"
        )


def _check_code_width(
    network: nn.Module, scorer: Scorer, input_shape: tuple[int, ...], path: Path
) -> None:
    """Refuse a saved code term (density, reference codes) fitted for another code width."""
    widths = [w for w in (term.code_width() for term in scorer.terms) if w is not None]
    if not widths:
        return
    network.eval()  # batch-norm over a single dummy image needs its running statistics
    with torch.inference_mode():
        width = int(WithCode(network)(torch.zeros(1, *input_shape))[1].flatten(1).shape[1])
    for fitted_width in widths:
        if fitted_width != width:
            raise UserError(
                f"{path} holds a fitted score for codes of {fitted_width} numbers, "
                f"but the model's code has {width}"
            )
