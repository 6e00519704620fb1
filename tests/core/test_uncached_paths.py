"""The paths taken when a kernel block is not kept in memory, against dense references.

Above a memory limit the density fit recomputes ``K(X, U)`` block by block
(``density._KERNEL_CACHE_BYTES``) and the expression fit recomputes the
whitened kernel in its empirical-variance pass (``function_gp._WHITENED_CACHE_BYTES``).
Setting the limits to 0 forces those paths on a small problem; small blocks
make every sum run over several of them.
"""

import numpy as np
import pytest
from _dense_gp import density_map, function_fit, matern52
from scipy.spatial import cKDTree

from kompot.core import density, function_gp
from kompot.core.kernel import kernel_diag, kernel_matrix
from kompot.core.kernel import matern52 as kompot_matern52


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(0, 1, (180, 3)), rng.normal(2.5, 0.6, (120, 3))])
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2]) + rng.normal(0, 0.3, (300, 2))
    U = X[rng.choice(300, 25, replace=False)] + 0.01
    r = cKDTree(X).query(X, k=2)[0][:, 1]
    return X, Y, U, r, 1.5


def test_density_fit_without_the_kernel_cache_matches_a_dense_newton(problem, monkeypatch):
    X, _, U, r, ls = problem
    d, mu = 3.0, density.prior_mean(r, 3.0)
    cov = kompot_matern52(ls)
    cached = density.fit_density(X, U, cov, d=d, mu=mu, nn_distances=r, batch_size=64)
    monkeypatch.setattr(density, "_KERNEL_CACHE_BYTES", 0)
    Lp = np.linalg.cholesky(matern52(U, U, ls) + 1e-6 * np.eye(len(U)))
    assert density.WhitenedKernelBlocks(X, U, cov, Lp, 64).cache is None
    fit = density.fit_density(X, U, cov, d=d, mu=mu, nn_distances=r, batch_size=64)
    predict, variance = density_map(X, U, ls, d=d, mu=mu, nn_distances=r)
    K = kernel_matrix(cov, X, U)
    # kompot's Newton stops at a decrement of 1e-9 |loss|, the reference runs to rounding.
    np.testing.assert_allclose(fit.mu + K @ fit.weights, predict(X), rtol=0, atol=3e-5)
    np.testing.assert_allclose(np.sum((K @ fit.uncertainty_factor) ** 2, axis=1), variance(X),
                               rtol=1e-4, atol=1e-9)
    # Recomputing the blocks changes nothing but the order of float operations.
    np.testing.assert_allclose(fit.weights, cached.weights, rtol=1e-10, atol=1e-12)


def test_function_fit_without_the_whitened_cache_matches_a_dense_reference(problem, monkeypatch):
    X, Y, U, _, ls = problem
    cov = kompot_matern52(ls)
    cached = function_gp.fit_function(X, Y, U, cov, sigma=0.5, mu=0.2, batch_size=64)
    monkeypatch.setattr(function_gp, "_WHITENED_CACHE_BYTES", 0)
    calls = []
    original = function_gp._whitened
    monkeypatch.setattr(function_gp, "_whitened", lambda *a: calls.append(1) or original(*a))
    fit = function_gp.fit_function(X, Y, U, cov, sigma=0.5, mu=0.2, batch_size=64)
    assert len(calls) == 2 * 5  # 300 cells in blocks of 64: computed again for the variance
    mean, covariance, variance_weights = function_fit(X, Y, U, ls, sigma=0.5, mu=0.2)
    Xn = X[::7]
    np.testing.assert_allclose(fit.mean(Xn), mean(Xn), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.covariance_diag(Xn), np.diag(covariance(Xn)), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(fit.covariance_full(Xn[:10]), covariance(Xn[:10]), rtol=1e-6,
                               atol=1e-8)
    K = kernel_matrix(cov, Xn, U)
    np.testing.assert_allclose(K @ fit.variance_weights, K @ variance_weights, rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(fit.variance_weights, cached.variance_weights, rtol=1e-10,
                               atol=1e-12)


class _Exponential:
    """A user's covariance that is not Matérn-5/2: amplitude 2, exponential."""

    def __init__(self, ls):
        self.ls = ls

    def __call__(self, X, Y):
        return 2.0 * np.exp(-np.sqrt(((X[:, None] - Y[None]) ** 2).sum(-1)) / self.ls)

    def diag(self, X):
        return np.full(len(X), 2.0)


def test_a_users_covariance_takes_the_general_kernel_path(problem):
    X, Y, U, _, ls = problem
    cov = _Exponential(ls)
    dense = 2.0 * np.exp(-np.linalg.norm(X[:, None] - U[None], axis=-1) / ls)
    np.testing.assert_allclose(kernel_matrix(cov, X, U), dense, rtol=1e-13)
    np.testing.assert_array_equal(kernel_diag(cov, X), np.full(len(X), 2.0))
    # The expression GP with that kernel: weights and posterior variance
    # against the dense formulas.
    fit = function_gp.fit_function(X, Y, U, cov, sigma=0.5, obs_variance=False, batch_size=64)
    Kuu = cov(U, U) + 1e-6 * np.eye(len(U))
    Kxu = cov(X, U)
    weights = np.linalg.solve(0.25 * Kuu + Kxu.T @ Kxu, Kxu.T @ Y)
    np.testing.assert_allclose(fit.weights, weights, rtol=1e-6, atol=1e-8)
    K = cov(X[:10], U)
    var = 2.0 - np.einsum("ij,ji->i", K, np.linalg.solve(Kuu, K.T)) + np.einsum(
        "ij,ji->i", K, np.linalg.solve(Kuu + Kxu.T @ Kxu / 0.25, K.T))
    np.testing.assert_allclose(fit.covariance_diag(X[:10]), var, rtol=1e-6, atol=1e-9)
