"""ae-anomaly: anomaly detection in images with autoencoders.

``from ae_anomaly import AutoencoderDetector`` gives the scikit-learn style
detector. It is imported on first use (PEP 562), so that ``import ae_anomaly``
(and with it the command line's start) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"
__all__ = ["AutoencoderDetector", "__version__"]

if TYPE_CHECKING:
    from ae_anomaly.detector.estimator import AutoencoderDetector


def __getattr__(name: str) -> Any:
    if name == "AutoencoderDetector":
        from ae_anomaly.detector.estimator import AutoencoderDetector

        return AutoencoderDetector
    raise AttributeError(f"module 'ae_anomaly' has no attribute {name!r}")
