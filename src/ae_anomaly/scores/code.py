"""How unusual an image's code is among the codes of normal images.

A narrow-code autoencoder maps every input to a point of its code space; the
normal training images fill some regions of it. A rotated digit is often
reconstructed well enough, yet its code lands where few upright digits do,
so the code's place is a second, independent anomaly signal
(docs/rotation.md). Two ways to measure it:

- ``CodeDensity`` (score ``latent``): the negative log-likelihood under a
  Gaussian mixture fitted on the training codes. scikit-learn fits it; the
  likelihood is computed in torch from the fitted parameters.
- ``CodeNeighbours`` (score ``knn``): the mean distance to the nearest
  training codes. It assumes no shape for the normal region, so it follows
  the thin, curved clusters a mixture of ten Gaussians smooths over
  (one-class Fashion-MNIST: BENCHMARKS.md).

Both standardise the codes with the training codes' mean and spread, and keep
everything they fitted in buffers, so that scoring runs batched on the
model's device, saves as plain tensors in safetensors and exports to ONNX
with the network.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ae_anomaly.errors import UserError
from ae_anomaly.nn.tracing import exporting, traced
from ae_anomaly.scores.term import Term

MAX_COMPONENTS = 10
# Added to each covariance's diagonal (codes are standardised first, so this is
# relative to unit variance): keeps a component of nearly collinear codes invertible.
COVARIANCE_REGULARISATION = 1e-4
# Fewer codes than this per component and per code dimension, and the mixture
# gets fewer components: a full covariance needs enough points to be estimated.
_CODES_PER_PARAMETER = 2
# The knn score: how many nearest training codes it averages over (5, 10 and 20
# were within 0.1 AUROC of each other on one-class Fashion-MNIST; 1 was 0.3 worse),
# and at most how many training codes it keeps (a seeded random subset beyond
# that), which bounds its memory and its cost per image.
NEIGHBOURS = 5
MAX_REFERENCE_CODES = 20_000

_Fitted = TypeVar("_Fitted", bound=nn.Module)


class CodeTerm(Term):
    """A term of the code: ``forward(codes)`` gives the values, after standardising the
    codes with the training codes' ``shift`` and ``scale``."""

    needs_code = True
    shift: torch.Tensor

    def score(
        self, images: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor | None
    ) -> torch.Tensor:
        assert codes is not None
        return self(codes)  # type: ignore[no-any-return]

    def code_width(self) -> int | None:
        return int(self.shift.shape[0])


class CodeDensity(CodeTerm):
    """Negative log-likelihood of codes under a full-covariance Gaussian mixture: the
    score term ``latent``.

    Buffers: ``shift`` and ``scale`` (d,) standardise the codes;
    ``log_weights`` (K,), ``means`` (K, d) and ``precision_cholesky``
    (K, d, d) describe the mixture, as scikit-learn's ``GaussianMixture``
    stores it.
    """

    shift: torch.Tensor
    scale: torch.Tensor
    log_weights: torch.Tensor
    means: torch.Tensor
    precision_cholesky: torch.Tensor

    name = "latent"
    logged = False  # a log-likelihood already, and it can be negative
    state_key = "density"

    def __init__(self, code_size: int, components: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(code_size))
        self.register_buffer("scale", torch.ones(code_size))
        self.register_buffer("log_weights", torch.zeros(components))
        self.register_buffer("means", torch.zeros(components, code_size))
        self.register_buffer("precision_cholesky", torch.eye(code_size).repeat(components, 1, 1))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, d) codes -> (N,) negative log-likelihoods; higher is more unusual."""
        z = (codes.flatten(1) - self.shift) / self.scale
        # y_k = (z - mu_k) L_k, with L_k L_k^T the precision of component k.
        y = torch.einsum("nd,kde->nke", z, self.precision_cholesky) - torch.einsum(
            "kd,kde->ke", self.means, self.precision_cholesky
        )
        log_det = torch.log(torch.diagonal(self.precision_cholesky, dim1=1, dim2=2)).sum(dim=1)
        d = z.shape[1]
        log_prob = -0.5 * (d * math.log(2 * math.pi) + y.square().sum(dim=2)) + log_det
        return -torch.logsumexp(log_prob + self.log_weights, dim=1)

    @classmethod
    def fitted(cls, codes: torch.Tensor | None, seed: int) -> CodeDensity:
        assert codes is not None
        with torch.random.fork_rng(devices=[]):
            return fit_code_density(codes, seed)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], spec: str) -> CodeDensity:
        means = state.get("means")
        if means is None or means.ndim != 2:
            raise UserError(f"the saved detector lacks the code density its score {spec!r} needs")
        return cls(code_size=means.shape[1], components=means.shape[0])


# Reference codes per block when picking the nearest (see ``smallest``): of 32 to 256,
# 64 was the fastest on 512 codes against 5,400 references.
NEAREST_BLOCK = 64
# Codes whose distances to every reference code are held at once: (256, M) floats, 20 MB
# at the most references (20,000), whatever the batch. The same values as all at once
# (each distance is its own dot product), and as fast (7.6-8.1 ms for 1,024 codes
# against 5,400 references, in rows of 64 to 1,024).
KNN_ROWS = 256


def smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` smallest of each row of ``values`` (N, M), ascending: torch.topk's values.

    The k smallest of a row lie in the k blocks of NEAREST_BLOCK columns with the smallest
    minima (any other block's minimum is above k values already), or in the columns past
    the last whole block; so topk runs over those, not the whole row. Same values, found
    in 2.2 against 4.8 ms for 512 x 5,400 on one CPU thread: torch.topk over long rows
    is the slow part of the knn score. An ONNX export keeps the plain TopK."""
    whole = values.shape[1] // NEAREST_BLOCK * NEAREST_BLOCK
    if whole // NEAREST_BLOCK <= k or exporting():
        return torch.topk(values, k, dim=1, largest=False).values
    blocks = values[:, :whole].unflatten(1, (-1, NEAREST_BLOCK))  # (N, B, NEAREST_BLOCK)
    chosen = torch.topk(blocks.amin(dim=2), k, dim=1, largest=False).indices
    picked = torch.gather(blocks, 1, chosen[:, :, None].expand(-1, -1, NEAREST_BLOCK))
    candidates = torch.cat([picked.flatten(1), values[:, whole:]], dim=1)
    return torch.topk(candidates, k, dim=1, largest=False).values


class CodeNeighbours(CodeTerm):
    """Mean Euclidean distance from each code to its ``NEIGHBOURS`` nearest reference codes:
    the score term ``knn``.

    Buffers: ``shift`` and ``scale`` (d,) standardise the codes;
    ``reference`` (M, d) holds the standardised training codes.
    """

    shift: torch.Tensor
    scale: torch.Tensor
    reference: torch.Tensor

    name = "knn"
    state_key = "neighbours"

    def __init__(self, code_size: int, references: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(code_size))
        self.register_buffer("scale", torch.ones(code_size))
        self.register_buffer("reference", torch.zeros(references, code_size))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, d) codes -> (N,) mean distances to the nearest reference codes."""
        z = (codes.flatten(1) - self.shift) / self.scale
        if len(z) > KNN_ROWS and not traced():
            return torch.cat([self._mean_distances(rows) for rows in z.split(KNN_ROWS)])
        return self._mean_distances(z)

    def _mean_distances(self, z: torch.Tensor) -> torch.Tensor:
        # |z - r|^2 = |z|^2 + (|r|^2 - 2 z.r): the bracket is one matrix product with its
        # addition for the whole batch (torch.cdist does not export to ONNX), and |z|^2,
        # the same for every r, is added to the k nearest only; rounding can dip below 0.
        partial = torch.addmm(self.reference.square().sum(dim=1), z, self.reference.T, alpha=-2)
        nearest = smallest(partial, min(NEIGHBOURS, int(self.reference.shape[0])))
        squared = (nearest + z.square().sum(dim=1, keepdim=True)).clamp(min=0)
        return squared.sqrt().mean(dim=1)

    @classmethod
    def fitted(cls, codes: torch.Tensor | None, seed: int) -> CodeNeighbours:
        assert codes is not None
        return fit_code_neighbours(codes, seed)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], spec: str) -> CodeNeighbours:
        reference = state.get("reference")
        if reference is None or reference.ndim != 2 or len(reference) == 0:
            raise UserError(
                f"the saved detector lacks the reference codes its score {spec!r} needs"
            )
        return cls(code_size=reference.shape[1], references=reference.shape[0])


def fit_code_neighbours(codes: torch.Tensor, seed: int) -> CodeNeighbours:
    """Keep (a seeded subset of at most MAX_REFERENCE_CODES of) the (N, d) training codes."""
    data, shift, scale = _standardised(codes, "knn")
    if len(data) > MAX_REFERENCE_CODES:
        keep = np.random.default_rng(seed).choice(len(data), MAX_REFERENCE_CODES, replace=False)
        data = data[np.sort(keep)]
    neighbours = CodeNeighbours(data.shape[1], len(data))
    return _filled(neighbours, shift=shift, scale=scale, reference=data)


def _standardised(codes: torch.Tensor, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(standardised codes, shift, scale) of (N, d) training codes, in float64."""
    data = codes.detach().flatten(1).double().cpu().numpy()
    if len(data) < 2:
        raise UserError(f"the {score} score needs at least two normal training images")
    shift, spread = data.mean(axis=0), data.std(axis=0)
    # A code unit that never varies would divide by zero: leave it unscaled.
    scale = np.where(spread > 1e-12, spread, 1.0)
    return (data - shift) / scale, shift, scale


def _filled(module: _Fitted, **values: np.ndarray) -> _Fitted:
    """``module`` with each named buffer set to its fitted value (as float32)."""
    for name, value in values.items():
        getattr(module, name).copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
    return module


def fit_code_density(codes: torch.Tensor, seed: int) -> CodeDensity:
    """Fit the mixture on the (N, d) codes of normal training images."""
    # Imported here: scoring evaluates a fitted mixture in torch and needs none of
    # scikit-learn's fitting code, which takes 0.2 s to import.
    from sklearn.mixture import GaussianMixture

    standard, shift, scale = _standardised(codes, "latent")
    n, d = standard.shape
    components = max(1, min(MAX_COMPONENTS, n // (_CODES_PER_PARAMETER * (d + 1))))
    mixture = GaussianMixture(
        n_components=components,
        covariance_type="full",
        reg_covar=COVARIANCE_REGULARISATION,
        random_state=seed,
    ).fit(standard)
    return _filled(
        CodeDensity(d, components),
        shift=shift,
        scale=scale,
        log_weights=np.log(mixture.weights_),
        means=mixture.means_,
        precision_cholesky=mixture.precisions_cholesky_,
    )
