"""Scoring through ``torch.compile``: the score's arithmetic in fewer, fused kernels.

Eager PyTorch runs each operation on its own: every step of SSIM's arithmetic is a pass
over memory. ``torch.compile`` (TorchInductor) fuses the element-wise work and writes it
as generated C++; the network's runs of convolutions stay oneDNN's, called as they are
in its blocked layout (nn/blocked.py), which TorchInductor's own convolutions with a
variable batch size do not reach. Measured with conv-dense on 10,000 MNIST digits, one
CPU thread, against ONNX Runtime on the same exported graph (BENCHMARKS.md, Speed): mse
1.07, ssim+latent 1.13, the one-class recipe 1.08, where uncompiled scoring reaches
1.06, 1.00 and 0.94.

The price is the compile: 9 to 30 s per detector and process (with a C++ compiler; the
generated code is cached on disk, so a second process on the same machine starts
sooner). So it is asked for (``AutoencoderDetector.compile()``, ``--compile``) by long
jobs, a server or millions of images, and never made automatic. The batch size is
compiled as a variable: a batch of one and of more each compile once, whatever the
sizes (2 to 15 apart from 16 and more where the convolutions are in the compiled graph,
as on a GPU: torch's convolutions treat them apart). Where compiling fails (no
C++ compiler, an operation TorchInductor cannot take), scoring goes on uncompiled, with
one warning. Scores equal uncompiled ones to float rounding, which the score's
calibration magnifies: within 1.7e-5 on the recipe's combined score (it spans about -9
to 10), and within 1e-4 of the scores' spread for a detector trained briefly.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ae_anomaly.nn.blocked import outside_compiled_graphs
from ae_anomaly.nn.ensemble import MemberOutputs, mean_score
from ae_anomaly.scores.scorer import Scorer


class ScoredOutputs(nn.Module):
    """images -> their mean score over the members (one module, so that the network and
    the score compile together)."""

    def __init__(self, members: MemberOutputs, scorers: list[Scorer]) -> None:
        super().__init__()
        self.members = members
        self.scorers = nn.ModuleList(scorers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_score(list(self.scorers), x, self.members(x))  # type: ignore[arg-type]


class CompiledScoring(nn.Module):
    """``scoring`` compiled on its first call; uncompiled from the first failure on."""

    def __init__(self, scoring: nn.Module) -> None:
        super().__init__()
        self.scoring = scoring.eval()
        outside_compiled_graphs()  # oneDNN's blocked runs stay as they are
        # The weights are frozen into the compiled code (constants, prepacked): a copy
        # made for scoring never changes, and a changed network gets a new copy.
        self._compiled: Any = torch.compile(scoring, dynamic=True, options={"freezing": True})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is not None:
            try:
                with warnings.catch_warnings():
                    # torch's compiler warns about its own deprecated internals
                    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
                    return self._compiled(x)  # type: ignore[no-any-return]
            except Exception as exc:  # any failure to compile: the same scores, uncompiled
                self._compiled = None
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                warnings.warn(
                    f"scoring could not be compiled ({type(exc).__name__}: {reason}); "
                    "it goes on uncompiled",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.scoring(x)  # type: ignore[no-any-return]


class CompiledScorings:
    """The compiled scoring of the current scoring copies and scores: a changed network
    (so a new scoring copy) or a refit (new scores) is compiled again."""

    def __init__(self) -> None:
        self._known: tuple[tuple[int, ...], CompiledScoring] | None = None

    def of(self, networks: list[nn.Module], scoring: ScoredOutputs) -> CompiledScoring:
        """``scoring`` (of the scoring copies ``networks``), compiled once."""
        key = tuple(id(m) for m in (*networks, *scoring.scorers))
        if self._known is None or self._known[0] != key:
            # It holds those modules, so no other module can take one of their ids.
            self._known = (key, CompiledScoring(scoring))
        return self._known[1]
