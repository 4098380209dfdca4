"""Research harness: score dumped cells (dump_cells.py) in many ways, offline.

    python research/one_class/score_cells.py fashion-mnist-base-s0 ssim+latent ssim+knn5
    python research/one_class/score_cells.py fashion-mnist-base-s0,fashion-mnist-base-s1 ssim+knn5

A score is terms joined by '+'; with two or more, each term is z-scored on the
held-out normal images (val) and the z-scores are summed, as the package does.
Terms: a pixel kind (mse, mae, blur-mse, rel-blur, ssim; logged), latent (the
10-component mixture of the code, as the package), latent-bic (the component
count chosen by BIC), knnK (log mean distance to the K nearest training codes),
feat-knn (kNN among pooled encoder features), consist (distance between the
codes of image and reconstruction). A trailing '~' averages a term over the
image and its mirror; '@' (rot90 cells) adds the turned copies' average.
Several tags joined by ',' are an ensemble: the mean of their z-scored scores.
Members of one split ("variant~N" cells of one seed) share their held-out and
development images, so the ensemble is measured like one cell; members of
different splits get the test AUROC only.

Prints per score: mean development AUROC (val against dev), mean test AUROC,
the per-class test AUROC, and accuracy / macro F1 at mean + 2 std of val for
class 7 (the Sneaker protocol on Fashion-MNIST).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

CELLS = Path(os.environ.get("AE_RESEARCH_CELLS", "research-cells"))
SETS = ("val", "dev", "test")
PIXEL = ("mse", "mae", "blur-mse", "rel-blur", "ssim")
Term = dict[str, np.ndarray]


def _standard(cell: dict, key: str, mirror: str) -> tuple[np.ndarray, Term]:
    train = cell[f"train_{key}"]
    mean, std = train.mean(0), train.std(0) + 1e-12
    return (train - mean) / std, {s: (cell[f"{s}{mirror}_{key}"] - mean) / std for s in SETS}


def mixture(cell: dict, mirror: str, bic: bool = False) -> Term:
    train, sets = _standard(cell, "code", mirror)
    most = max(1, min(10, len(train) // (2 * (train.shape[1] + 1))))
    counts = [
        k for k in (1, 2, 3, 5, 8, 10, 15, 20) if k <= len(train) // (2 * (train.shape[1] + 1))
    ]
    fits = [
        GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=0).fit(train)
        for k in (counts if bic else [most])
    ]
    best = min(fits, key=lambda g: g.bic(train))
    return {s: -best.score_samples(v) for s, v in sets.items()}


def neighbours(cell: dict, mirror: str, k: int, key: str = "code", log: bool = True) -> Term:
    train, sets = _standard(cell, key, mirror)
    search = NearestNeighbors(n_neighbors=k).fit(train)
    distance = {s: search.kneighbors(v)[0].mean(1) for s, v in sets.items()}
    return {s: np.log(d + 1e-9) for s, d in distance.items()} if log else distance


def term(cell: dict, name: str, mirror: str = "") -> Term:
    if name.endswith("~"):
        return _mean([z(term(cell, name[:-1])), z(term(cell, name[:-1], "_f"))])
    if name.endswith("@"):
        turns = [
            z({s: np.log(np.maximum(cell[f"{s}_t{t}_{name[:-1]}"], 1e-12)) for s in SETS})
            for t in (1, 2, 3)
        ]
        return _mean([z(term(cell, name[:-1])), _mean(turns)])
    if name in PIXEL:
        return {s: np.log(np.maximum(cell[f"{s}{mirror}_{name}"], 1e-12)) for s in SETS}
    if name in ("latent", "latent-bic"):
        return mixture(cell, mirror, bic=name == "latent-bic")
    if name.startswith("knn"):
        return neighbours(cell, mirror, int(name[3:]))
    if name == "feat-knn":
        return neighbours(cell, mirror, 5, key="feat", log=False)
    if name == "consist":
        spread = cell["train_code"].std(0) + 1e-12
        gap = {
            s: np.linalg.norm((cell[f"{s}_code"] - cell[f"{s}_rcode"]) / spread, axis=1)
            for s in SETS
        }
        return {s: np.log(g + 1e-9) for s, g in gap.items()}
    raise ValueError(f"unknown term {name!r}")


def z(values: Term) -> Term:
    mean, std = values["val"].mean(), values["val"].std() + 1e-9
    return {s: (v - mean) / std for s, v in values.items()}


def _mean(terms: list[Term]) -> Term:
    return {s: sum(t[s] for t in terms) / len(terms) for s in SETS}


def score(cell: dict, spec: str) -> Term:
    parts = spec.split("+")
    if len(parts) == 1:
        return term(cell, parts[0])
    zs = [z(term(cell, p)) for p in parts]
    return {s: sum(t[s] for t in zs) for s in SETS}


def measure(values: Term, cell: dict) -> tuple[float, float, float, float]:
    dev_labels = np.r_[np.zeros(len(values["val"])), np.ones(len(values["dev"]))]
    dev = roc_auc_score(dev_labels, np.r_[values["val"], values["dev"]])
    labels = cell["test_labels"]
    test = roc_auc_score(labels, values["test"])
    predicted = (values["test"] > values["val"].mean() + 2 * values["val"].std()).astype(int)
    accuracy = float((predicted == labels).mean())
    return dev * 100, test * 100, accuracy, f1_score(labels, predicted, average="macro")


def load(tag: str) -> list[dict]:
    return [dict(np.load(CELLS / f"{tag}-c{k}.npz")) for k in range(10)]


def report(tags: list[str], spec: str, cells: Callable[[str], list[dict]]) -> str:
    members = [cells(t) for t in tags]
    ensemble = f" (ensemble of {len(tags)})" if len(tags) > 1 else ""
    if all(np.array_equal(m[0]["dev_classes"], members[0][0]["dev_classes"]) for m in members):
        # One split (one tag, or "variant~N" cells): the members share val and dev
        # images. The z-scores of one member rank and threshold as its raw score does.
        rows = np.array(
            [
                measure(_mean([z(score(c, spec)) for c in ms]), ms[0])
                for ms in zip(*members, strict=True)
            ]
        )
        sneaker = f"sneaker acc {rows[7, 2]:.3f} F1 {rows[7, 3]:.3f}"
        dev = f"dev {rows[:, 0].mean():6.2f}{ensemble}"
        per_class = rows[:, 1]
    else:
        per_class = np.array(
            [
                roc_auc_score(ms[0]["test_labels"], sum(z(score(c, spec))["test"] for c in ms))
                * 100
                for ms in zip(*members, strict=True)
            ]
        )
        sneaker, dev = "", ensemble.strip(" ()")
    listed = " ".join(f"{x:5.1f}" for x in per_class)
    return f"{spec:32s} {dev} test {per_class.mean():6.2f} | {listed} | {sneaker}"


if __name__ == "__main__":
    loaded: dict[str, list[dict]] = {}
    tag_list = sys.argv[1].split(",")
    for score_spec in sys.argv[2:]:
        print(report(tag_list, score_spec, lambda t: loaded.setdefault(t, load(t))), flush=True)
