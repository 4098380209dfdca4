"""Tests for ae_anomaly.report.metrics: metrics on small synthetic score arrays."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from ae_anomaly.report.metrics import summary_rows
from tests.helpers import evaluate_corrupted as evaluate


def make_set(
    scores_by_kind: dict[str, list[float]],
    noise_std: dict[str, list[float]] | None = None,
    angle: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Arrays for ``evaluate`` from per-kind score lists (std / angle 0 where not given)."""
    noise_std, angle = noise_std or {}, angle or {}
    kinds, scores, stds, angles = [], [], [], []
    for kind, values in scores_by_kind.items():
        kinds += [kind] * len(values)
        scores += values
        stds += noise_std.get(kind, [0.0] * len(values))
        angles += angle.get(kind, [0.0] * len(values))
    kind_arr = np.array(kinds)
    return {
        "scores": np.array(scores),
        "labels": (kind_arr != "clean").astype(int),
        "kinds": kind_arr,
        "noise_std": np.array(stds),
        "angle": np.array(angles),
    }


def test_perfect_separation_gives_auroc_one() -> None:
    data = make_set({"clean": [0.1, 0.2, 0.3], "noise": [0.7, 0.8], "rotation": [0.9, 1.0]})
    m = evaluate(**data, threshold=0.5)
    assert m["overall"] == {"auroc": 1.0, "auprc": 1.0}
    assert m["by_kind"]["noise"]["auroc"] == 1.0
    assert m["by_kind"]["rotation"]["auroc"] == 1.0
    assert (m["n_test"], m["n_normal"], m["n_anomalous"]) == (7, 3, 4)
    at = m["at_threshold"]
    assert at["confusion_matrix"] == [[3, 0], [0, 4]]
    assert (at["precision"], at["recall"], at["f1"], at["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert at["false_positive_rate"] == 0.0


def test_reversed_scores_give_auroc_zero() -> None:
    data = make_set({"clean": [0.8, 0.9], "noise": [0.1, 0.2]})
    m = evaluate(**data, threshold=0.5)
    assert m["overall"]["auroc"] == 0.0
    assert m["by_kind"]["noise"]["auroc"] == 0.0


def test_confusion_matrix_orientation_matches_hand_count() -> None:
    # threshold 0.5, predict score > 0.5:
    #   clean 0.1, 0.6, 0.7 -> tn=1, fp=2; noise 0.2, 0.9 -> fn=1, tp=1.
    data = make_set({"clean": [0.1, 0.6, 0.7], "noise": [0.2, 0.9]})
    at = evaluate(**data, threshold=0.5)["at_threshold"]
    assert at["confusion_matrix"] == [[1, 2], [1, 1]]
    assert at["precision"] == pytest.approx(1 / 3)
    assert at["recall"] == pytest.approx(1 / 2)
    assert at["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert at["accuracy"] == pytest.approx(2 / 5)
    assert at["false_positive_rate"] == pytest.approx(2 / 3)


def test_score_equal_to_threshold_is_not_flagged() -> None:
    data = make_set({"clean": [0.5], "noise": [0.5]})
    m = evaluate(**data, threshold=0.5)
    assert m["at_threshold"]["confusion_matrix"] == [[1, 0], [1, 0]]
    assert m["by_kind"]["noise"]["flagged"] == 0.0


def test_by_kind_fields_and_clean_has_no_auroc() -> None:
    data = make_set({"clean": [0.1, 0.9], "noise": [0.6, 0.7, 0.8, 0.2]})
    m = evaluate(**data, threshold=0.5)
    clean, noise = m["by_kind"]["clean"], m["by_kind"]["noise"]
    assert clean == {"n": 2, "mean_score": pytest.approx(0.5), "flagged": 0.5}
    assert set(noise) == {"n", "auroc", "auprc", "mean_score", "flagged"}
    assert noise["n"] == 4
    assert noise["flagged"] == 0.75
    assert noise["mean_score"] == pytest.approx(0.575)


def test_kinds_are_ordered_clean_then_single_then_combined() -> None:
    data = make_set({"noise+rotation": [1.0], "rotation": [0.9], "noise": [0.8], "clean": [0.0]})
    m = evaluate(**data, threshold=0.5)
    assert list(m["by_kind"]) == ["clean", "noise", "rotation", "noise+rotation"]


def test_noise_groups_by_std_and_only_for_noise_kind() -> None:
    data = make_set(
        {"clean": [0.1, 0.2], "noise": [0.3, 0.4, 0.9], "noise+rotation": [0.95]},
        noise_std={"noise": [0.1, 0.1, 0.3], "noise+rotation": [0.2]},
    )
    # float32 stds (as torch hands them over) must still give the keys "0.1" and "0.3".
    data["noise_std"] = data["noise_std"].astype(np.float32)
    by_std = evaluate(**data, threshold=0.5)["by_noise_std"]
    assert list(by_std) == ["0.1", "0.3"]
    assert by_std["0.1"]["n"] == 2
    assert by_std["0.3"]["n"] == 1


def test_angle_bands_group_by_absolute_angle_with_last_band_closed() -> None:
    angles = [0.0, -9.9, 10.0, -19.0, 20.0, 30.0, -30.0]
    data = make_set(
        {"clean": [0.1, 0.2], "rotation": [0.3] * 7, "noise+rotation": [0.9]},
        angle={"rotation": angles, "noise+rotation": [5.0]},
    )
    bands = evaluate(**data, threshold=0.5)["by_angle_band"]
    assert list(bands) == ["0-10", "10-20", "20-30"]
    assert [b["n"] for b in bands.values()] == [2, 2, 3]


def test_empty_bands_are_left_out_and_custom_edges_work() -> None:
    data = make_set({"clean": [0.1], "rotation": [0.9, 0.8]}, angle={"rotation": [3.0, 44.0]})
    bands = evaluate(**data, threshold=0.5, angle_bands=(0, 15, 30, 45))["by_angle_band"]
    assert list(bands) == ["0-15", "30-45"]


def test_undefined_auroc_is_none_not_a_crash() -> None:
    # No clean images at all: every group has one class only.
    data = make_set({"noise": [0.3, 0.4]}, noise_std={"noise": [0.1, 0.2]})
    m = evaluate(**data, threshold=0.5)
    assert m["overall"] == {"auroc": None, "auprc": None}
    assert m["by_kind"]["noise"]["auroc"] is None
    assert m["by_noise_std"]["0.1"]["auroc"] is None
    assert "clean" not in m["by_kind"]
    at = m["at_threshold"]
    assert at["false_positive_rate"] is None
    assert at["precision"] is None  # nothing predicted positive
    assert at["recall"] == 0.0


def test_clean_only_set_has_empty_groups_and_none_metrics() -> None:
    data = make_set({"clean": [0.1, 0.7]})
    m = evaluate(**data, threshold=0.5)
    assert m["overall"]["auroc"] is None
    assert list(m["by_kind"]) == ["clean"]
    assert m["by_noise_std"] == {}
    assert m["by_angle_band"] == {}
    assert m["at_threshold"]["recall"] is None
    assert m["at_threshold"]["false_positive_rate"] == 0.5


def test_output_is_plain_json() -> None:
    rng = np.random.default_rng(0)
    data = make_set(
        {"clean": list(rng.random(20)), "noise": list(rng.random(10) + 0.5)},
        noise_std={"noise": [0.1, 0.2] * 5},
    )
    m = evaluate(**data, threshold=np.float32(0.7))  # type: ignore[arg-type]
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text) == m
    assert type(m["threshold"]) is float
    assert type(m["at_threshold"]["confusion_matrix"][0][0]) is int


def test_summary_rows_are_strings() -> None:
    data = make_set({"clean": [0.1, 0.2], "noise": [0.8, 0.9]})
    rows = summary_rows(evaluate(**data, threshold=0.5))
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in rows)
    assert ("AUROC", "1.0000") in rows
    assert ("AUROC noise", "1.0000") in rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scores": np.array([0.1, np.nan])}, "NaN"),
        ({"labels": np.array([0])}, "length"),
        ({"labels": np.array([0, 2])}, "0 .normal. or 1"),
        ({"labels": np.array([0, 0])}, "label 0"),
    ],
)
def test_bad_input_raises(change: dict[str, Any], message: str) -> None:
    data = {**make_set({"clean": [0.1], "noise": [0.9]}), **change}
    with pytest.raises(ValueError, match=message):
        evaluate(**data, threshold=0.5)
