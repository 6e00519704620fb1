"""kompot's own GP fits reproduce mellon's estimators (the independent reference)."""

import logging

import mellon
import numpy as np
import pytest

import kompot
from kompot.core.density import fit_density, prior_mean
from kompot.core.function_gp import fit_function
from kompot.core.kernel import kernel_diag, kernel_matrix, matern52
from kompot.core.landmarks import length_scale, nearest_neighbor_distances, select_landmarks
from kompot.core.mellon_bridge import density_predictor, function_predictor

logging.getLogger("mellon").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (700, 3)), rng.normal(3, 0.5, (500, 3))])
    Y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1]), X[:, 2]]) + rng.normal(0, 0.3, (1200, 3))
    U = select_landmarks(X, 80, random_state=0)
    r = nearest_neighbor_distances(X)
    ls = length_scale(r, 1.0)
    return X, Y, U, r, ls


def test_kernel_matches_mellon(problem):
    X, _, U, _, ls = problem
    ours, theirs = matern52(ls), mellon.cov.Matern52(ls=ls)
    reference = np.asarray(theirs(X, U))
    np.testing.assert_allclose(ours(X, U), reference, atol=1e-14)
    np.testing.assert_allclose(kernel_matrix(ours, X, U), reference, atol=1e-14)
    np.testing.assert_allclose(kernel_matrix(theirs, X, U), reference, atol=1e-14)
    np.testing.assert_allclose(kernel_diag(ours, X), np.asarray(theirs.diag(X)), atol=1e-14)
    np.testing.assert_allclose(ours.diag(X), np.asarray(theirs.diag(X)), atol=1e-14)


def test_bridge_converts_our_kernel_and_keeps_a_users_mellon_kernel(problem):
    from kompot.core.mellon_bridge import mellon_cov

    _, _, _, _, ls = problem
    converted = mellon_cov(matern52(ls))
    assert type(converted) is mellon.cov.Matern52 and converted.ls == ls
    users = mellon.cov.Matern32(ls=ls)
    assert mellon_cov(users) is users


def test_a_users_mellon_kernel_is_used_as_given(problem):
    X, Y, U, _, ls = problem
    cov = mellon.cov.Matern32(ls=ls)  # not the fast path: called as it is
    np.testing.assert_allclose(kernel_matrix(cov, X[:30], U), np.asarray(cov(X[:30], U)),
                               atol=1e-14)
    model = kompot.ExpressionModel(n_landmarks=None).fit(X, Y, landmarks=U, cov_func=cov)
    assert model.cov_func is cov
    fit = fit_function(X, Y, U, cov)
    np.testing.assert_allclose(model.predict(X[:20], progress=False), fit.mean(X[:20]),
                               atol=1e-12)
    assert type(model.predictor.cov_func) is mellon.cov.Matern32


def test_density_map_matches_mellon(problem):
    X, _, U, r, ls = problem
    d, mu = X.shape[1], prior_mean(r, X.shape[1])
    fit = fit_density(X, U, matern52(ls), d=d, mu=mu, nn_distances=r)
    est = mellon.DensityEstimator(landmarks=U, gp_type="fixed", ls=ls, d=d, mu=mu,
                                  nn_distances=r)
    est.fit(X)
    ours = mu + kernel_matrix(matern52(ls), X, U) @ fit.weights
    # mellon's L-BFGS stops at a looser tolerance than our Newton iterations.
    np.testing.assert_allclose(ours, np.asarray(est.log_density_x), atol=2e-3)


def test_density_newton_reaches_a_stationary_point(problem):
    X, _, U, r, ls = problem
    d = X.shape[1]
    fit = fit_density(X, U, matern52(ls), d=d, mu=prior_mean(r, d), nn_distances=r)
    cov = matern52(ls)
    L = np.linalg.solve(fit.Lp, kernel_matrix(cov, X, U).T).T
    V = d * np.log(r) + (d / 2) * np.log(np.pi) - __import__("scipy").special.gammaln(d / 2 + 1)
    f = fit.mu + L @ fit.z
    grad = fit.z - L.T @ (1 - np.exp(f + V))
    assert np.max(np.abs(grad)) < 1e-5
    # Laplace covariance is the inverse Hessian: W W^T = Lp^-T H^-1 Lp^-1
    H = np.eye(len(U)) + L.T @ (np.exp(f + V)[:, None] * L)
    Linv = np.linalg.inv(fit.Lp)
    np.testing.assert_allclose(
        fit.uncertainty_factor @ fit.uncertainty_factor.T,
        Linv.T @ np.linalg.inv(H) @ Linv, rtol=1e-6, atol=1e-8,
    )


def test_function_gp_matches_mellon(problem):
    X, Y, U, _, ls = problem
    cov = matern52(ls)
    fit = fit_function(X, Y, U, cov, sigma=0.6, batch_size=257)
    ref = mellon.FunctionEstimator(landmarks=U, gp_type="fixed", ls=ls, sigma=0.6,
                                   predictor_with_uncertainty=True, obs_variance=True)
    pred = ref.fit(X, Y).predict
    Xn = X[::37]
    np.testing.assert_allclose(fit.mean(Xn), np.asarray(pred(Xn)), atol=1e-8)
    np.testing.assert_allclose(fit.covariance_diag(Xn), np.asarray(pred.covariance(Xn)), atol=1e-9)
    np.testing.assert_allclose(
        fit.covariance_full(Xn[:8]), np.asarray(pred.covariance(Xn[:8], diag=False)), atol=1e-9
    )
    # mellon forms the leverage system with an explicit inverse; agreement to ~1e-4.
    raw = kernel_matrix(cov, Xn, U) @ fit.variance_weights
    np.testing.assert_allclose(raw, np.asarray(pred.obs_variance(Xn)), atol=5e-4)


def test_function_gp_rejects_zero_sigma(problem):
    X, Y, U, _, ls = problem
    with pytest.raises(ValueError, match="sigma must be positive"):
        fit_function(X, Y, U, matern52(ls), sigma=0.0)


def test_bridge_predictors_equal_the_fits(problem):
    X, Y, U, r, ls = problem
    cov = matern52(ls)
    d = X.shape[1]
    dfit = fit_density(X, U, cov, d=d, mu=prior_mean(r, d), nn_distances=r)
    p = density_predictor(dfit, U, cov)
    K = kernel_matrix(cov, X[:20], U)
    np.testing.assert_allclose(np.asarray(p(X[:20])), dfit.mu + K @ dfit.weights, atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(p(X[:20], normalize=True)), dfit.mu + K @ dfit.weights - np.log(len(X)),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        np.asarray(p.mean_covariance(X[:20])),
        np.sum((K @ dfit.uncertainty_factor) ** 2, axis=1), atol=1e-10,
    )
    ffit = fit_function(X, Y, U, cov, sigma=0.5)
    q = function_predictor(ffit)
    np.testing.assert_allclose(np.asarray(q(X[:20])), ffit.mean(X[:20]), atol=1e-10)
    np.testing.assert_allclose(np.asarray(q.covariance(X[:20])), ffit.covariance_diag(X[:20]),
                               atol=1e-10)


def test_prior_mean_functions_match_a_dense_reference(problem):
    # mellon has no prior mean function; the reference is the landmark GP's
    # formulas written densely: weights = w0 + (s^2 Kuu + Kux Kxu)^-1 Kux (y - Kxu w0).
    X, Y, U, _, ls = problem
    cov = matern52(ls)
    rng = np.random.default_rng(1)
    w0, v0 = rng.normal(size=(len(U), 3)), np.abs(rng.normal(size=(len(U), 3)))
    fit = fit_function(X, Y, U, cov, sigma=0.6, mean_weights=w0, variance_mean_weights=v0,
                       batch_size=257)
    Kxu = kernel_matrix(cov, X, U)
    system = 0.36 * (kernel_matrix(cov, U, U) + 1e-6 * np.eye(len(U))) + Kxu.T @ Kxu
    weights = w0 + np.linalg.solve(system, Kxu.T @ (Y - Kxu @ w0))
    np.testing.assert_allclose(fit.weights, weights, rtol=1e-6, atol=1e-8)
    leverage = np.einsum("ij,ji->i", Kxu, np.linalg.solve(system, Kxu.T))
    r2 = (Y - Kxu @ weights) ** 2 / (1 - leverage)[:, None] ** 2
    variance = v0 + np.linalg.solve(system, Kxu.T @ (r2 - Kxu @ v0))
    # The dense system is ill-conditioned (its smallest scale is s^2 * jitter);
    # solving it directly agrees with the whitened solves to ~1e-6 here.
    np.testing.assert_allclose(fit.variance_weights, variance, rtol=1e-4, atol=1e-5)


def test_fit_on_parts_equals_fit_on_stacked_cells(problem):
    from kompot.core.function_gp import fit_function_parts

    X, Y, U, _, ls = problem
    cov = matern52(ls)
    whole = fit_function(X, Y, U, cov, sigma=0.6)
    parts = fit_function_parts([(X[:500], Y[:500]), (X[500:], Y[500:])], U, cov, sigma=0.6,
                               batch_size=211)
    np.testing.assert_allclose(parts.weights, whole.weights, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(parts.variance_weights, whole.variance_weights, rtol=1e-9,
                               atol=1e-10)
