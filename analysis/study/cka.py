"""Linear CKA between blocks, from minibatch sums of the unbiased HSIC estimator.

CKA from one big Gram matrix does not fit in memory for a study's image count, and it does not add up
over chunks. The unbiased HSIC estimator (Song et al. 2012) does: its average over minibatches is an
unbiased estimate of HSIC, so summing it per minibatch and normalising once at the end gives the
minibatch CKA of Nguyen, Raghu & Kornblith (ICLR 2021), equal whatever the split of the minibatches
between processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def hsic_matrix(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, B) float64 unbiased HSIC (linear kernel) of every pair of B feature matrices (n, d_i).

    All matrices describe the same n >= 4 examples; computed in float64 on the first one's device and
    returned on the CPU.
    """
    if not features:
        raise ValueError("hsic_matrix needs at least one feature matrix")
    n = features[0].shape[0]
    if any(f.dim() != 2 or f.shape[0] != n for f in features):
        raise ValueError(
            f"features must all be (n, d) with the same n; got shapes {[tuple(f.shape) for f in features]}"
        )
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs n >= 4 examples, got {n}")
    device = features[0].device
    x = [f.detach().to(device=device, dtype=torch.float64) for f in features]
    grams = torch.stack([f @ f.T for f in x])  # (B, n, n)
    grams.diagonal(dim1=1, dim2=2).zero_()
    flat = grams.reshape(len(x), n * n)
    trace_kl = flat @ flat.T  # tr(K L) = sum(K * L) for symmetric K, L
    row_sums = grams.sum(dim=2)  # K 1, (B, n)
    totals = row_sums.sum(dim=1)  # 1'K 1, (B,)
    ones_klo = row_sums @ row_sums.T  # 1'K L 1 = (K 1) . (L 1)
    hsic = (trace_kl + torch.outer(totals, totals) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_klo) / (n * (n - 3))
    return hsic.cpu()


def cka_from_hsic(hsic_sum: np.ndarray) -> np.ndarray:
    """CKA_ij = S_ij / sqrt(S_ii S_jj) from (B, B) sums of HSIC; nan where either diagonal is <= 0."""
    s = np.asarray(hsic_sum, dtype=np.float64)
    diag = np.diag(s)
    valid = diag > 0
    root = np.sqrt(np.where(valid, diag, np.nan))
    cka = s / np.outer(root, root)
    cka[~(valid[:, None] & valid[None, :])] = np.nan
    return cka


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The full-batch linear CKA of Kornblith et al. 2019 (biased HSIC, centred features) of (n, d) arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (n, d) with the same n; got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if denom <= 0:
        return float("nan")
    return float(np.linalg.norm(y.T @ x) ** 2 / denom)
