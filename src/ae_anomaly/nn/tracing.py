"""Whether code runs to be traced into a graph, where eager shortcuts must give way.

Scoring takes shortcuts that only pay when run as it is: caches, work in chunks, oneDNN's
blocked layout. Traced into an exported graph (ONNX) each must take its plain form; under
``torch.compile`` the compiler fuses the plain form better than the shortcut runs.
"""

from __future__ import annotations

import torch


def exporting() -> bool:
    """Whether this runs to be traced into an exported graph (ONNX)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def traced() -> bool:
    """Whether this runs to be traced into any graph: exported, or compiled. Compiling is
    asked first: the exporter's checks are not traced by the compiler, which would break
    its graph on them."""
    return torch.compiler.is_compiling() or exporting()
