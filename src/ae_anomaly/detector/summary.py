"""What a detector says about itself for reports: its training, and what it assumes.

Behind ``AutoencoderDetector.training_summary`` and ``description`` (metrics.json, the
report page, the service's model endpoint), and the per-member training record that
detector.json keeps.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ae_anomaly.nn.callbacks import TrainState


def training_record(state: TrainState) -> dict[str, Any]:
    """One network's per-epoch losses and best epoch, as saved in detector.json."""
    return {"history": [asdict(r) for r in state.history], "best_epoch": state.best_epoch}


def training_summary(detector: Any) -> dict[str, Any]:
    """Epochs run, the best epoch, per-epoch losses and the device of a fitted detector
    (of the first member; an ensemble's summary also lists every member's)."""
    summary = {
        "epochs_run": len(detector.history_),
        "best_epoch": detector.best_epoch_,
        "history": detector.history_,
        "device": str(detector.device_),
        # What "auto" chose: the score fitted and the patch size (None: whole images).
        "score": detector.score_,
        "patch_size": detector.patch_size_,
        # A loaded detector's training ended before it was saved: nothing to say.
        "warnings": list(getattr(detector, "training_warnings_", [])),
    }
    if detector.members > 1:
        summary["members"] = detector.member_training_
    return summary


def description(detector: Any) -> dict[str, str]:
    """Model, score and what the training assumed, in words (fitted or not)."""
    if detector.restore == "none":
        assumes = "generic: trained on normal images only, assumes nothing about anomalies"
    else:
        assumes = (
            f"{detector.restore} training (+-{detector.restore_angle:g} degrees, share "
            f"{detector.restore_share:g}): relies on knowing that rotation is an anomaly"
        )
    size = getattr(detector, "patch_size_", None)
    return {
        "model": detector.model,
        "score": getattr(detector, "score_", detector.score),
        "input": "whole images" if size is None else f"{size} x {size} patches",
        "assumes": assumes,
    }
