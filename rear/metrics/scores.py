"""FID, sFID, Inception Score and precision/recall from features, as the ADM evaluator defines them.

Features: [n, F] float arrays (pool features for FID, flattened spatial features for sFID, softmax
probabilities for IS). All statistics are computed in float64.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] of features [n, F]."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [n >= 2, F], got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different feature sizes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # singular product: nudge both diagonals, as ADM does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets [n, F] and [m, F] (sFID when given spatial features)."""
    return frechet_distance(*statistics(a), *statistics(b))


def fid_sampling_error(features: np.ndarray, mu: np.ndarray, sigma: np.ndarray, draws: int = 20, seed: int = 0) -> float:
    """Standard deviation of FID over `draws` bootstrap resamples of the sample features [n, F] against
    fixed reference statistics: how much a score moves with the draw of the samples alone."""
    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    fids = [frechet_distance(*statistics(features[rng.integers(0, len(features), len(features))]), mu, sigma)
            for _ in range(draws)]
    return float(np.std(fids, ddof=1))


def inception_score(probs: np.ndarray, splits: int = 10) -> float:
    """exp(E_x KL(p(y|x) || p(y))), averaged over `splits` equal chunks (ADM / Salimans et al.)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < splits:
        raise ValueError(f"need class probabilities [n >= {splits}, C], got shape {probs.shape}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(0, keepdims=True)
        kl = part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))


def _kth_radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start : start + chunk], features)  # [c, n]
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1 skips the row itself
    return torch.cat(radii)


def _covered(queries: torch.Tensor, anchors: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each query: does it lie within some anchor's radius?"""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start : start + chunk], anchors)  # [c, m]
        inside.append((d <= radii[None]).any(1))
    return torch.cat(inside)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision/recall (Kynkaanniemi et al.): k-NN manifolds of each set."""
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if min(len(real_t), len(fake_t)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    precision = _covered(fake_t, real_t, _kth_radii(real_t, k, chunk), chunk).double().mean().item()
    recall = _covered(real_t, fake_t, _kth_radii(fake_t, k, chunk), chunk).double().mean().item()
    return precision, recall
