"""FID, sFID, Inception Score and precision/recall from features, as the ADM evaluator defines them.

Features: [n, F] float arrays (pool features for FID, flattened spatial features for sFID, softmax
probabilities for IS). All statistics are computed in float64.
"""
from __future__ import annotations

import warnings

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
    with warnings.catch_warnings():  # a singular covariance (fewer samples than dims): callers say what it implies
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
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


def _kernel_sums(a: torch.Tensor, b: torch.Tensor, same: bool, chunk: int) -> torch.Tensor:
    """Row sums [len(a)] of the KID kernel k(x, y) = (x . y / F + 1)^3 between a and b, leaving out the
    diagonal when a is b."""
    F = a.shape[1]
    sums = []
    for start in range(0, len(a), chunk):
        block = (a[start : start + chunk] @ b.T / F + 1) ** 3  # [c, len(b)]
        if same:
            rows = torch.arange(start, start + len(block))
            block[rows - start, rows] = 0
        sums.append(block.sum(1))
    return torch.cat(sums)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, chunk: int = 2048) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased estimate of MMD^2 with the cubic polynomial kernel over all
    pairs of real [n, F] and fake [m, F] features, and its standard error (the first-order term of the
    U-statistic's variance: 4 Var(h_x) / n + 4 Var(h_y) / m, h the per-row contributions). Unbiased at any
    n, unlike FID, whose covariance is singular below F samples; 0 in expectation for equal distributions."""
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    n, m = len(x), len(y)
    if min(n, m) < 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two feature sets [n >= 2, F] of one F, got {tuple(x.shape)} and {tuple(y.shape)}")
    kxx, kyy = _kernel_sums(x, x, True, chunk), _kernel_sums(y, y, True, chunk)  # [n], [m]
    kxy_rows, kxy_cols = _kernel_sums(x, y, False, chunk), _kernel_sums(y, x, False, chunk)  # [n], [m]
    kid = kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy_rows.sum() / (n * m)
    h_x = kxx / (n - 1) - kxy_rows / m  # each real row's share
    h_y = kyy / (m - 1) - kxy_cols / n
    se = torch.sqrt(4 * h_x.var() / n + 4 * h_y.var() / m)
    return float(kid), float(se)


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
