"""The unsupervised scenario: the ranking split, its metrics and a short real run on MNIST."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ae_anomaly.cli import cli
from ae_anomaly.config import DataConfig
from ae_anomaly.data.sources import Dataset
from ae_anomaly.report.ranking import ranking_csv, ranking_metrics
from ae_anomaly.scenarios.base import RankingSet
from ae_anomaly.scenarios.unsupervised import unsupervised_scenario


def test_every_kept_image_of_both_splits_is_ranked(mnist: Dataset) -> None:
    data = unsupervised_scenario(mnist, DataConfig(train_limit=400, test_limit=100), seed=1)
    ranked = data.ranked
    assert ranked is not None and data.test is None
    assert len(data.train) + len(data.val) == 400
    assert (ranked.split == "train").sum() == 400 and (ranked.split == "test").sum() == 100
    # Images, indices and labels line up with the dataset.
    for split, images, labels in (
        ("train", mnist.train_images, mnist.train_labels),
        ("test", mnist.test_images, mnist.test_labels),
    ):
        mine = ranked.split == split
        expected = torch.from_numpy(images[ranked.index[mine]].astype(np.float32) / 255)
        assert torch.equal(ranked.images[mine][:, 0], expected)
        assert (ranked.label[mine] == labels[ranked.index[mine]]).all()
    # The ranked training images are exactly those the detector learns from.
    train_pixels = {t.numpy().tobytes() for t in torch.cat([data.train[:], data.val[:]])}
    ranked_train = {t.numpy().tobytes() for t in ranked.images[ranked.split == "train"]}
    assert ranked_train == train_pixels


def small_set(labels: list[int]) -> RankingSet:
    n = len(labels)
    return RankingSet(
        images=torch.zeros(n, 1, 4, 4),
        split=np.array(["train"] * (n - 2) + ["test"] * 2),
        index=np.arange(n),
        label=np.array(labels),
        class_names=tuple(str(i) for i in range(10)),
    )


def test_ranking_metrics_count_who_is_in_the_top() -> None:
    # 200 images: label 8 holds the two highest scores, the top 1% (2 images).
    labels = [1] * 100 + [8] * 100
    scores = np.linspace(0, 1, 200)
    ranks = np.argsort(np.argsort(-scores)) + 1
    m = ranking_metrics(scores, ranks, small_set(labels), threshold=0.5, k=3)
    assert m["n_top"] == 2
    assert m["by_label"]["8"]["n_top"] == 2 and m["by_label"]["1"]["n_top"] == 0
    assert m["by_label"]["8"]["share_of_top"] == 1.0
    assert m["by_label"]["8"]["lift"] == pytest.approx(2.0)
    assert [r["rank"] for r in m["most_anomalous"]] == [1, 2, 3]
    assert m["most_anomalous"][0]["index"] == 199
    assert m["n_images"] == {"train": 198, "test": 2}
    assert m["flagged"]["test"] == 1.0
    json.dumps(m)  # JSON-ready: no numpy types


def test_ranking_csv_has_one_row_per_image() -> None:
    ranked = small_set([3, 1, 4, 1])
    text = ranking_csv(ranked, np.array([0.5, 0.25, 1.0, 0.125]), np.array([2, 3, 1, 4]))
    assert text.splitlines() == [
        "split,index,label,score,rank",
        "train,0,3,0.5,2",
        "train,1,1,0.25,3",
        "test,2,4,1,1",
        "test,3,1,0.125,4",
    ]


def test_e2e_unsupervised_run_ranks_every_image(shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = [
        "run", "--scenario", "unsupervised", "--data-dir", str(shared_data_dir),
        "--train-limit", "1200", "--test-limit", "300", "--epochs", "1", "--top-k", "5",
        "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, flags, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "share of top" in result.output and "most anomalous" in result.output
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1500
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 1501))
    by_rank = sorted(rows, key=lambda r: int(r["rank"]))
    scores = [float(r["score"]) for r in by_rank]
    assert scores == sorted(scores, reverse=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_top"] == 15
    assert sum(row["n_top"] for row in metrics["by_label"].values()) == 15
    assert len(metrics["most_anomalous"]) == 5
    top = metrics["most_anomalous"][0]
    assert (top["split"], str(top["index"])) == (by_rank[0]["split"], by_rank[0]["index"])
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert plots == {
        "loss.png",
        "scores.png",
        "scores_by_label.png",
        "top_share.png",
        "most_anomalous.png",
        "most_typical.png",
    }
    page = (out / "report.html").read_text()
    assert "Labels among" not in page  # figure titles live in the PNGs, not the page
    assert "Who is in the top 1%" in page and "By label" in page
    assert (out / "detector" / "weights.safetensors").is_file()
