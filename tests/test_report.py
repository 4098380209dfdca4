"""Tests for ae_anomaly.report.page: PNG files and the self-contained HTML page."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ae_anomaly.report.figures import Examples
from ae_anomaly.report.page import write_report
from ae_anomaly.scenarios.corruptions import Corruptions
from tests.helpers import evaluate_corrupted as evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = ["loss", "scores", "roc_pr", "confusion", "angle_bands", "examples"]


@pytest.fixture(scope="module")
def run_data() -> dict[str, Any]:
    """A small synthetic test set with every kind, noise level and rotation band."""
    rng = np.random.default_rng(0)
    kinds = np.array(["clean"] * 60 + ["noise"] * 30 + ["rotation"] * 30 + ["noise+rotation"] * 15)
    n = kinds.size
    labels = (kinds != "clean").astype(int)
    noisy = np.char.startswith(kinds, "noise")
    rotated = np.char.endswith(kinds, "rotation")
    std = np.where(noisy, rng.choice([0.1, 0.2, 0.3], n), 0.0)
    angle = np.where(rotated, rng.uniform(-30, 30, n), 0.0)
    # Log-normal scores spanning orders of magnitude exercise the log-scaled histogram.
    scores = np.exp(rng.normal(-4, 0.5, n) + 10 * std + np.abs(angle) / 10)
    threshold = float(np.quantile(scores[labels == 0], 0.95))
    return {
        "scores": scores,
        "labels": labels,
        "kinds": kinds,
        "threshold": threshold,
        "metrics": evaluate(scores, labels, kinds, std, angle, threshold),
    }


def make_examples(k: int = 3, channel_dim: bool = False) -> Examples:
    rng = np.random.default_rng(1)
    shape = (k, 1, 8, 8) if channel_dim else (k, 8, 8)
    images = rng.random(shape)
    recon = np.clip(images + rng.normal(0, 0.1, shape), 0, 1)
    # "<", "&" and "$" (matplotlib math mode) must all come out as plain text.
    captions = [f"noise <b>& $1 $x$, score {i / 100:.3f}" for i in range(k)]
    return Examples(images, recon, (images - recon) ** 2, captions)


def report(out_dir: Path, data: dict[str, Any], **overrides: Any) -> tuple[list[Path], str]:
    kwargs: dict[str, Any] = {
        "title": "Run <script>alert(1)</script> & co",
        "history": [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e} for e in (1, 2, 3)],
        "examples": make_examples(),
        "config_text": "model: conv\nnote: <b>bold</b> & 'quoted'\n",
        **{key: data[key] for key in ("metrics", "scores", "labels", "kinds", "threshold")},
        # The corruptions scenario's tables and figure, as its runs have them.
        "groups": Corruptions.groups,
        "extra_plots": Corruptions().report_plots(data["metrics"]),
        **overrides,
    }
    paths = write_report(out_dir, **kwargs)
    return paths, (out_dir / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def full_report(
    tmp_path_factory: pytest.TempPathFactory, run_data: dict[str, Any]
) -> tuple[Path, list[Path], str]:
    out_dir = tmp_path_factory.mktemp("report")
    paths, page = report(out_dir, run_data)
    return out_dir, paths, page


def test_every_plot_is_a_png(full_report: tuple[Path, list[Path], str]) -> None:
    out_dir, paths, _ = full_report
    expected = [out_dir / "plots" / f"{name}.png" for name in ALL_PLOTS]
    assert paths == [*expected, out_dir / "report.html"]
    for path in expected:
        assert path.read_bytes().startswith(PNG_MAGIC), path


def test_html_embeds_each_plot_once_and_nothing_external(
    full_report: tuple[Path, list[Path], str],
) -> None:
    out_dir, _, page = full_report
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(ALL_PLOTS)
    on_disk = {(out_dir / "plots" / f"{n}.png").read_bytes() for n in ALL_PLOTS}
    assert {base64.b64decode(img) for img in images} == on_disk
    # Base64 can spell anything, so look for external resources in the text around it.
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page).lower()
    assert "http" not in text
    assert "<script" not in text
    assert "<link" not in text
    assert re.findall(r'(?:src|href)="([^"]*)"', text) == ["data:image/png;base64,"] * len(images)


def test_html_escapes_text_and_holds_tables(full_report: tuple[Path, list[Path], str]) -> None:
    _, _, page = full_report
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "note: &lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27;" in page
    assert "<pre>" in page
    for text in ("By kind", "By noise level", "By rotation angle", "0-10", "20-30"):
        assert text in page
    assert "<td>true normal</td>" in page
    assert page.count("<figcaption>") == len(ALL_PLOTS)


def test_optional_plots_are_left_out_without_data(tmp_path: Path, run_data: dict[str, Any]) -> None:
    metrics = {**run_data["metrics"], "by_angle_band": {}}
    extra_plots = Corruptions().report_plots(metrics)
    paths, page = report(
        tmp_path, run_data, metrics=metrics, history=[], examples=None, extra_plots=extra_plots
    )
    names = sorted(p.name for p in paths)
    assert names == ["confusion.png", "report.html", "roc_pr.png", "scores.png"]
    assert page.count("data:image/png;base64,") == 3
    assert "By rotation angle" not in page


def test_degenerate_scores_still_render(tmp_path: Path) -> None:
    # One class and identical scores: no curves, no AUROC, but still a report.
    kinds = np.array(["clean"] * 4)
    scores = np.zeros(4)
    labels = np.zeros(4, dtype=int)
    metrics = evaluate(scores, labels, kinds, np.zeros(4), np.zeros(4), 0.0)
    data = {
        "metrics": metrics,
        "scores": scores,
        "labels": labels,
        "kinds": kinds,
        "threshold": 0.0,
    }
    paths, page = report(tmp_path, data, examples=make_examples(1, channel_dim=True))
    assert all(p.exists() for p in paths)
    assert "n/a" in page


def test_examples_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="disagree"):
        Examples(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), ["one"])
    with pytest.raises(ValueError, match="shape"):
        Examples(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4)), ["one"])


def test_scores_with_negative_values_get_a_linear_axis() -> None:
    """Combined scores are negative for typical normal images: no log axis for them."""
    from ae_anomaly.report.figures import score_bins

    combined = np.array([-3.0, -1.0, -0.5, 0.2, 40.0, 400.0])
    edges, log_x = score_bins(combined)
    assert not log_x and edges[0] == -3.0 and edges[-1] == 400.0
    _, log_x = score_bins(np.array([1e-4, 1e-3, 0.5]))
    assert log_x
