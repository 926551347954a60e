"""Metric formulas against independent computations on random features."""
import numpy as np
import pytest

from rear.metrics import (fid_from_features, fid_sampling_error, frechet_distance, inception_score,
                          kernel_inception_distance, precision_recall, statistics)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(fid_from_features(x, x)) < 1e-8


def test_fid_is_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 6)), rng.normal(1.0, 2.0, size=(300, 6))
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(y, x), rel=1e-9)


def test_fid_matches_the_closed_form_in_one_dimension():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, size=(1000, 1)), rng.normal(3, 2, size=(800, 1))
    v1, v2 = x.var(ddof=1), y.var(ddof=1)
    expected = (x.mean() - y.mean()) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2)
    assert fid_from_features(x, y) == pytest.approx(expected, rel=1e-9)


def test_fid_of_independent_diagonal_gaussians():
    """Per-dimension closed forms add up when the (sample) covariances are diagonal."""
    rng = np.random.default_rng(3)
    base = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    n = 2000
    x = rng.normal(size=(n, 4))
    x = (x - x.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False)).T)  # whitened: cov = I
    y = x * np.array([1.0, 2.0, 0.5, 3.0]) + np.array([1.0, 0.0, -2.0, 0.5])
    scale = np.array([1.0, 2.0, 0.5, 3.0])
    expected = (np.array([1.0, 0.0, -2.0, 0.5]) ** 2).sum() + ((1 - scale) ** 2).sum()
    assert fid_from_features(x, y) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(x @ base, y @ base) == pytest.approx(expected, rel=1e-6)  # rotation invariant


def test_inception_score_bounds():
    assert inception_score(np.full((100, 10), 0.1)) == pytest.approx(1.0)
    one_hot = np.eye(10)[np.arange(1000) % 10]
    assert inception_score(one_hot, splits=10) == pytest.approx(10.0, rel=1e-6)


def test_inception_score_against_a_direct_formula():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(5), size=200)
    scores = []
    for part in (p[:100], p[100:]):
        m = part.mean(0)
        scores.append(np.exp(np.mean([sum(pi * np.log(pi / mj) for pi, mj in zip(row, m)) for row in part])))
    assert inception_score(p, splits=2) == pytest.approx(np.mean(scores), rel=1e-9)


def brute_force_precision_recall(real, fake, k):
    def radii(s):
        return np.array([np.sort(np.linalg.norm(s - a, axis=1))[k] for a in s])

    def covered(q, anchors, r):
        return np.mean([any(np.linalg.norm(x - a) <= ra for a, ra in zip(anchors, r)) for x in q])

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def test_precision_recall_identical_sets():
    x = np.random.default_rng(5).normal(size=(200, 4))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_against_brute_force():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(60, 3)), rng.normal(0.7, 1.3, size=(50, 3))
    expected = brute_force_precision_recall(real, fake, 3)
    assert precision_recall(real, fake, k=3, chunk=7) == pytest.approx(expected)


def test_precision_recall_of_disjoint_sets_is_zero():
    rng = np.random.default_rng(7)
    assert precision_recall(rng.normal(size=(50, 2)), rng.normal(100, 1, size=(50, 2))) == (0.0, 0.0)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="need features"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="different feature sizes"):
        fid_from_features(np.random.rand(5, 3), np.random.rand(5, 4))
    with pytest.raises(ValueError, match="needs more than 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_fid_sampling_error_matches_the_spread_of_independent_draws():
    """The bootstrap standard deviation from one sample set is close to the spread of FID over fresh sets."""
    rng = np.random.default_rng(0)
    F, n = 6, 400
    mu, sigma = np.full(F, 0.3), np.eye(F)

    def draw():
        return rng.standard_normal((n, F)) * 1.2

    spread = np.std([frechet_distance(*statistics(draw()), mu, sigma) for _ in range(60)], ddof=1)
    estimates = [fid_sampling_error(draw(), mu, sigma, draws=40, seed=i) for i in range(5)]
    assert 0.6 < np.median(estimates) / spread < 1.6
    assert fid_sampling_error(np.repeat(rng.standard_normal((1, F)), n, 0), mu, sigma) == 0  # one point: no spread


def test_kid_is_the_unbiased_mmd_and_its_standard_error_fits_the_spread():
    """KID against a brute-force U-statistic; zero in expectation for equal distributions; its standard error
    close to the spread over fresh draws when the distributions differ (conservative when they do not)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) + 0.3
    k = lambda a, b: (a @ b.T / 6 + 1) ** 3  # noqa: E731
    brute = ((k(x, x).sum() - np.trace(k(x, x))) / (50 * 49) + (k(y, y).sum() - np.trace(k(y, y))) / (40 * 39)
             - 2 * k(x, y).mean())
    assert kernel_inception_distance(x, y, chunk=7)[0] == pytest.approx(brute, rel=1e-10)
    shifted = [kernel_inception_distance(rng.normal(size=(200, 16)), rng.normal(size=(150, 16)) + 0.15) for _ in range(80)]
    spread, se = np.std([v for v, _ in shifted], ddof=1), np.mean([s for _, s in shifted])
    assert 0.7 < se / spread < 1.4
    same = [kernel_inception_distance(rng.normal(size=(200, 16)), rng.normal(size=(150, 16)))[0] for _ in range(80)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(80)  # unbiased: no offset at small n, unlike FID
    with pytest.raises(ValueError, match="KID needs"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
