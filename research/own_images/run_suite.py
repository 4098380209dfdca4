"""Run detectors over the own-images development suite (build_suite.py) and print a
markdown table: per set, image AUROC, pixel AUROC and AUPRO where there are masks, the
epochs run and the wall time.

    python research/own_images/run_suite.py SUITE_DIR OUT_DIR [SET ...] [-- FLAG VALUE ...]

Without flags every set runs with the package's default detector and budget; flags
after "--" (e.g. "-- model conv-dense score ssim+latent") apply to every set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ae_anomaly.config import build_config
from ae_anomaly.runs.experiment import run_experiment


def run_set(folder: Path, out: Path, flags: dict[str, Any]) -> dict[str, Any]:
    config = build_config({}, {"dataset": str(folder), **flags})
    started = time.perf_counter()
    metrics = run_experiment(config, out, overwrite=True).metrics
    found = metrics.get("localisation") or {}
    return {
        "set": folder.name,
        "auroc": metrics["overall"]["auroc"],
        "pixel_auroc": found.get("pixel_auroc"),
        "aupro": found.get("aupro"),
        "by_kind": {k: v.get("auroc") for k, v in metrics["by_kind"].items() if "auroc" in v},
        "pixel_by_kind": found.get("by_kind", {}),
        "epochs": len(metrics["training"]["history"]),
        "seconds": time.perf_counter() - started,
        "warnings": metrics["training"].get("warnings", []),
    }


def _pixel(found: dict[str, Any] | None) -> str:
    """ " (pixel AUROC / AUPRO)" of one kind, where there are masks."""
    if not found:
        return ""
    return f" (pixel {cell(found['pixel_auroc'])} / {cell(found['aupro'])})"


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str]) -> None:
    names, _, raw = " ".join(argv[2:]).partition("--")
    pairs = raw.split()
    flags = {key: _value(value) for key, value in zip(pairs[::2], pairs[1::2], strict=True)}
    suite, out = Path(argv[0]), Path(argv[1])
    chosen = names.split() or sorted(p.name for p in suite.iterdir() if p.is_dir())
    print("| set | image AUROC | pixel AUROC | AUPRO | per kind | epochs | seconds |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in chosen:
        row = run_set(suite / name, out / name, flags)
        kinds = ", ".join(
            f"{k} {v:.3f}" + _pixel(row["pixel_by_kind"].get(k)) for k, v in row["by_kind"].items()
        )
        print(
            f"| {name} | {cell(row['auroc'])} | {cell(row['pixel_auroc'])} | "
            f"{cell(row['aupro'])} | {kinds} | {row['epochs']} | {row['seconds']:.0f} |",
            flush=True,
        )
        for warning in row["warnings"]:
            print(f"|  | warning: {warning} | | | | | |", flush=True)


def _value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main(sys.argv[1:])
