"""The digit classifier: its network (network.py), estimator (model.py), config (config.py)
and the ``classify`` commands' runners (run.py).

``from ae_anomaly.classifier import DigitClassifierModel`` loads torch on first use only
(PEP 562), so that the command line can read the config before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DigitClassifierModel"]

if TYPE_CHECKING:
    from ae_anomaly.classifier.model import DigitClassifierModel


def __getattr__(name: str) -> Any:
    if name == "DigitClassifierModel":
        from ae_anomaly.classifier.model import DigitClassifierModel

        return DigitClassifierModel
    raise AttributeError(f"module 'ae_anomaly.classifier' has no attribute {name!r}")
