"""Property-based tests (Hypothesis): whatever a user feeds the config, a detector.json or
a folder of image files, the answer is a result or one UserError, never another
exception (a traceback) and never a hang."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ae_anomaly import AutoencoderDetector
from ae_anomaly.config import build_config, leaf_fields
from ae_anomaly.data.folder import load_image_folder
from ae_anomaly.data.sources import Dataset
from ae_anomaly.detector.files import META_FILE
from ae_anomaly.errors import UserError

# Every run below is small; a deadline would only measure the shared machine. The same
# examples on every run (derandomize), so that CI is repeatable; a run with
# --hypothesis-seed=N explores others.
FAST = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted(leaf_fields())


def assert_one_sentence(exc: UserError) -> None:
    """What the command line prints after "Error: ": one line, not empty."""
    message = str(exc).strip()
    assert message and "\n" not in message, message


@FAST
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4))
def test_any_flags_give_a_config_or_one_sentence(overrides: dict[str, Any]) -> None:
    try:
        build_config({}, overrides)
    except UserError as exc:
        assert_one_sentence(exc)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["seed", "model", "training", "detector", "data", "scenario", "x"]),
        JSON_VALUES,
        max_size=4,
    )
)
def test_any_config_file_gives_a_config_or_one_sentence(tree: dict[str, Any]) -> None:
    try:
        build_config(tree, {})
    except UserError as exc:
        assert_one_sentence(exc)


@pytest.fixture(scope="module")
def saved_detector(mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    detector = AutoencoderDetector(
        model_args={"channels": [4, 8], "code": 4}, epochs=1, batch_size=32, device="cpu"
    )
    with pytest.warns(Warning):  # one epoch: it says it is undertrained
        detector.fit(mnist.train_images[:100])
    return detector.save(tmp_path_factory.mktemp("prop") / "detector")


DETECTOR_KEYS = [
    "format_version",
    "params",
    "model",
    "model_args",
    "input_shape",
    "patch_size",
    "score",
    "threshold",
    "training",
]


@FAST
@given(key=st.sampled_from(DETECTOR_KEYS), value=JSON_VALUES, inner=st.booleans())
def test_any_detector_json_edit_loads_or_is_one_sentence(
    saved_detector: Path,
    tmp_path_factory: pytest.TempPathFactory,
    key: str,
    value: Any,
    inner: bool,
) -> None:
    folder = tmp_path_factory.mktemp("edited")
    meta = json.loads((saved_detector / META_FILE).read_text())
    if inner and isinstance(meta.get(key), dict) and meta[key]:
        meta[key][sorted(meta[key])[0]] = value  # a field inside the section
    else:
        meta[key] = value
    (folder / META_FILE).write_text(json.dumps(meta))
    (folder / "weights.safetensors").write_bytes(
        (saved_detector / "weights.safetensors").read_bytes()
    )
    try:
        loaded = AutoencoderDetector.load(folder, device="cpu")
    except UserError as exc:
        assert_one_sentence(exc)
        return
    scores = loaded.decision_function(np.zeros((2, 28, 28), np.uint8))
    assert np.isfinite(scores).all()


PNG = b"\x89PNG\r\n\x1a\n"


@FAST
@given(
    blobs=st.lists(
        st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: PNG + b)),
        min_size=1,
        max_size=3,
    ),
    skip=st.booleans(),
)
def test_any_bytes_as_image_files_load_or_are_one_sentence(
    tmp_path_factory: pytest.TempPathFactory, blobs: list[bytes], skip: bool
) -> None:
    root = tmp_path_factory.mktemp("bytes")
    (root / "train").mkdir()
    for i, blob in enumerate(blobs):
        (root / "train" / f"{i}.png").write_bytes(blob)
    try:
        data = load_image_folder(root, on_error="skip" if skip else "fail")
    except UserError as exc:
        assert_one_sentence(exc)
        return
    assert data.train_images.ndim == 4
