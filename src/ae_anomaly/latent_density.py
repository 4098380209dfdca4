"""How unusual an image's code is: a Gaussian mixture fitted on the codes of normal images.

A narrow-code autoencoder maps every input to a point of its code space; the
normal training images fill some regions of it. A rotated digit is often
reconstructed well enough, yet its code lands where few upright digits do,
so the code's negative log-likelihood under the mixture is a second,
independent anomaly signal (docs/rotation.md).

scikit-learn fits the mixture; the log-likelihood is then computed in torch
from the fitted parameters, so that scoring runs batched on the model's device,
saves as plain tensors in safetensors and exports to ONNX with the network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from ae_anomaly.errors import UserError

MAX_COMPONENTS = 10
# Added to each covariance's diagonal (codes are standardised first, so this is
# relative to unit variance): keeps a component of nearly collinear codes invertible.
COVARIANCE_REGULARISATION = 1e-4
# Fewer codes than this per component and per code dimension, and the mixture
# gets fewer components: a full covariance needs enough points to be estimated.
_CODES_PER_PARAMETER = 2


class CodeDensity(nn.Module):
    """Negative log-likelihood of codes under a full-covariance Gaussian mixture.

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


def fit_code_density(codes: torch.Tensor, seed: int) -> CodeDensity:
    """Fit the mixture on the (N, d) codes of normal training images."""
    data = codes.detach().flatten(1).double().cpu().numpy()
    n, d = data.shape
    if n < 2:
        raise UserError("the latent score needs at least two normal training images")
    shift = data.mean(axis=0)
    # A code unit that never varies would divide by zero: leave it unscaled.
    scale = np.where(data.std(axis=0) > 1e-12, data.std(axis=0), 1.0)
    standard = (data - shift) / scale
    components = max(1, min(MAX_COMPONENTS, n // (_CODES_PER_PARAMETER * (d + 1))))
    mixture = GaussianMixture(
        n_components=components,
        covariance_type="full",
        reg_covar=COVARIANCE_REGULARISATION,
        random_state=seed,
    ).fit(standard)
    density = CodeDensity(d, components)
    for name, value in (
        ("shift", shift),
        ("scale", scale),
        ("log_weights", np.log(mixture.weights_)),
        ("means", mixture.means_),
        ("precision_cholesky", mixture.precisions_cholesky_),
    ):
        getattr(density, name).copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
    return density
