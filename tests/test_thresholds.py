"""Threshold rules: parsing rule strings and fitting them on normal scores."""

from __future__ import annotations

import numpy as np
import pytest

from ae_anomaly.errors import UserError
from ae_anomaly.scores.thresholds import Fixed, MeanPlusStd, Percentile, parse_threshold

# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("percentile:95", Percentile(95.0)),
        ("percentile:99.5", Percentile(99.5)),
        ("percentile:0.1", Percentile(0.1)),
        ("mean+2std", MeanPlusStd(2.0)),
        ("mean+2.5std", MeanPlusStd(2.5)),
        ("mean+0std", MeanPlusStd(0.0)),
        ("fixed:0.02", Fixed(0.02)),
        ("fixed:1e-3", Fixed(0.001)),
        ("fixed:.5", Fixed(0.5)),
        ("fixed:0", Fixed(0.0)),
        ("fixed:-1.5", Fixed(-1.5)),  # combined scores are z-score sums
        # spaces and case do not matter
        ("  percentile:95  ", Percentile(95.0)),
        ("Percentile: 95", Percentile(95.0)),
        ("PERCENTILE:95", Percentile(95.0)),
        ("mean + 2 std", MeanPlusStd(2.0)),
        ("Mean+2.5STD", MeanPlusStd(2.5)),
        ("Fixed : 0.02", Fixed(0.02)),
    ],
)
def test_parse_each_form(spec: str, rule: object) -> None:
    parsed = parse_threshold(spec)
    assert parsed == rule
    assert type(parsed) is type(rule)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "95",
        "percentile",
        "percentile:",
        "percentile95",
        "percentile:abc",
        "percentile:nan",
        "mean+std",
        "mean-2std",
        "mean+2",
        "mean+2stds",
        "fixed:",
        "fixed:0.02:0.03",
        "median",
        "quantile:0.95",
    ],
)
def test_bad_specs_are_rejected_with_the_forms(spec: str) -> None:
    with pytest.raises(UserError, match="not understood") as info:
        parse_threshold(spec)
    message = str(info.value)
    assert f"'{spec}'" in message
    assert "percentile:Q" in message and "mean+Kstd" in message and "fixed:V" in message


@pytest.mark.parametrize(
    "spec", ["percentile:0", "percentile:100", "percentile:120", "percentile:1e2"]
)
def test_percentile_outside_open_interval(spec: str) -> None:
    with pytest.raises(UserError, match="between 0 and 100"):
        parse_threshold(spec)


# -- fitting --------------------------------------------------------------------------


def test_percentile_matches_numpy() -> None:
    scores = np.arange(100, dtype=np.float64)
    value = parse_threshold("percentile:95").fit(scores)
    assert isinstance(value, float)
    # linear interpolation between 94 and 95 at position 0.95 * 99 = 94.05
    assert value == pytest.approx(94.05)
    assert value == pytest.approx(float(np.percentile(scores, 95)))


def test_percentile_ignores_order_and_accepts_lists() -> None:
    scores = list(np.random.default_rng(0).permutation(100).astype(float))
    assert Percentile(50).fit(scores) == pytest.approx(49.5)  # type: ignore[arg-type]


def test_percentile_gives_expected_false_positive_share() -> None:
    scores = np.random.default_rng(1).exponential(size=10_000)
    threshold = Percentile(95).fit(scores)
    assert np.mean(scores > threshold) == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize("k", [0.0, 2.0, 2.5])
def test_mean_plus_std_matches_numpy(k: float) -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # population std (ddof=0) of 1..5 is sqrt(2)
    assert MeanPlusStd(k).fit(scores) == pytest.approx(3.0 + k * np.sqrt(2.0))
    assert parse_threshold(f"mean+{k}std").fit(scores) == pytest.approx(
        scores.mean() + k * scores.std()
    )


def test_mean_plus_std_of_float32_scores_is_computed_in_float64() -> None:
    scores = np.full(1000, 0.1, dtype=np.float32)
    scores[0] = 0.3
    expected = scores.astype(np.float64).mean() + 2 * scores.astype(np.float64).std()
    assert MeanPlusStd(2).fit(scores) == pytest.approx(expected, rel=1e-12)


def test_fixed_ignores_the_scores() -> None:
    assert parse_threshold("fixed:0.02").fit(np.array([5.0, 6.0])) == 0.02
    assert Fixed(0.3).fit(np.array([])) == 0.3


@pytest.mark.parametrize("rule", [Percentile(95), MeanPlusStd(2)])
def test_empty_scores_are_a_user_error(rule: Percentile | MeanPlusStd) -> None:
    with pytest.raises(UserError, match="empty"):
        rule.fit(np.array([]))


def test_single_score() -> None:
    assert Percentile(95).fit(np.array([0.7])) == pytest.approx(0.7)
    assert MeanPlusStd(3).fit(np.array([0.7])) == pytest.approx(0.7)
