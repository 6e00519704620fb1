"""Replicate-sample fits solved in the cells' space, and their cache, against the landmark-space fit.

``fit_replicate`` must equal ``fit_function`` (which solves in the space of
the landmarks) up to rounding, with and without prior means; the cached
factors must give exactly what a fresh computation gives, and must not be
used for other cells.
"""

import numpy as np
import pytest
from _dense_gp import function_fit
from scipy import sparse

from kompot import SampleVarianceEstimator
from kompot.core.function_gp import fit_function, landmark_cholesky
from kompot.core.kernel import kernel_matrix, matern52
from kompot.core.replicate_fits import ReplicateBases, fit_replicate, uses_cell_space

LS, SIGMA = 1.5, 0.7


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2, X[:, 2]]) + rng.normal(0, 0.3, (40, 3))
    U = rng.normal(size=(60, 3))
    prior = dict(mean_weights=rng.normal(0, 0.3, (60, 3)),
                 variance_mean_weights=rng.normal(0, 0.05, (60, 3)))
    return X, Y, U, prior


def _relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("case", ["plain", "priors", "mean_prior_and_mu", "no_obs_variance"])
def test_cell_space_fit_equals_the_landmark_space_fit(problem, case):
    X, Y, U, prior = problem
    kwargs = {"plain": {}, "priors": prior, "no_obs_variance": {"obs_variance": False},
              "mean_prior_and_mu": {"mean_weights": prior["mean_weights"],
                                    "mu": np.array([0.2, -0.1, 0.4])}}[case]
    cov = matern52(LS)
    reference = fit_function(X, Y, U, cov, sigma=SIGMA, **kwargs)
    fit = fit_replicate(X, Y, U, cov, landmark_cholesky(U, cov, 1e-6), sigma=SIGMA, **kwargs)
    Xn = np.random.default_rng(1).normal(size=(30, 3))
    assert _relative(fit.mean(Xn), reference.mean(Xn)) < 1e-10
    assert _relative(fit.weights, reference.weights) < 1e-10
    if kwargs.get("obs_variance", True):
        assert _relative(fit.obs_variance(Xn), reference.obs_variance(Xn)) < 1e-10
    else:
        assert fit.variance_weights is None
    # LB is built on first use, as fit_function builds it.
    assert _relative(fit.covariance_diag(Xn), reference.covariance_diag(Xn)) < 1e-10


def test_cell_space_fit_matches_a_dense_regression(problem):
    X, Y, U, _ = problem
    cov = matern52(LS)
    fit = fit_replicate(X, sparse.csr_matrix(Y), U, cov, landmark_cholesky(U, cov, 1e-6),
                        sigma=SIGMA, mu=0.1)
    mean, _, variance_weights = function_fit(X, Y, U, LS, sigma=SIGMA, mu=0.1)
    Xn = np.random.default_rng(2).normal(size=(25, 3))
    assert _relative(fit.mean(Xn), mean(Xn)) < 1e-8
    K = kernel_matrix(cov, Xn, U)
    assert _relative(K @ fit.variance_weights, K @ variance_weights) < 1e-8


def test_cached_factors_give_the_uncached_fit_and_are_not_used_for_other_cells(problem):
    X, Y, U, prior = problem
    cov = matern52(LS)
    Lp = landmark_cholesky(U, cov, 1e-6)
    bases = ReplicateBases()
    first = fit_replicate(X, Y, U, cov, Lp, sigma=SIGMA, bases=bases, label="d1", **prior)
    # Another prior mean (as in a null refit): the cached factors serve it.
    other = {k: 2 * v for k, v in prior.items()}
    cached = fit_replicate(X, Y, U, cov, Lp, sigma=SIGMA, bases=bases, label="d1", **other)
    fresh = fit_replicate(X, Y, U, cov, Lp, sigma=SIGMA, **other)
    assert bases.hits == 1 and cached.basis is first.basis
    np.testing.assert_array_equal(cached.weights, fresh.weights)
    np.testing.assert_array_equal(cached.variance_weights, fresh.variance_weights)
    # Same label, other cells (or another sigma): rebuilt, not reused.
    moved = fit_replicate(X[::-1], Y[::-1], U, cov, Lp, sigma=SIGMA, bases=bases, label="d1")
    assert bases.hits == 1 and moved.basis is not first.basis
    fit_replicate(X[::-1], Y[::-1], U, cov, Lp, sigma=2 * SIGMA, bases=bases, label="d1")
    assert bases.hits == 1


def test_the_cache_holds_no_more_than_its_budget(problem):
    X, Y, U, _ = problem
    cov = matern52(LS)
    Lp = landmark_cholesky(U, cov, 1e-6)
    bases = ReplicateBases(max_bytes=0)
    fit_replicate(X, Y, U, cov, Lp, sigma=SIGMA, bases=bases, label="d1")
    fit_replicate(X, Y, U, cov, Lp, sigma=SIGMA, bases=bases, label="d1")
    assert bases.entries == {} and bases.hits == 0


def test_sample_variance_takes_the_cell_space_path_only_for_small_samples(problem):
    X, Y, U, prior = problem
    groups = np.repeat(["a", "b"], 20)
    kwargs = dict(landmarks=U, ls=LS, sigma=SIGMA, **prior)
    assert uses_cell_space(20, len(U)) and not uses_cell_space(61, len(U))
    bases = ReplicateBases()
    est = SampleVarianceEstimator().fit(X, Y, groups,
                                        estimator_kwargs={**kwargs, "replicate_bases": bases})
    assert set(bases.entries) == {"a", "b"}
    for g in ("a", "b"):
        reference = fit_function(X[groups == g], Y[groups == g], U, matern52(LS), sigma=SIGMA,
                                 **prior)
        assert _relative(est._fits[g].weights, reference.weights) < 1e-10
        assert _relative(est._fits[g].variance_weights, reference.variance_weights) < 1e-10


@pytest.mark.parametrize("with_prior", [True, False])
def test_sample_variance_predictions_from_the_cell_space_parts_equal_those_from_the_weights(
        problem, with_prior):
    X, Y, U, prior = problem
    groups = np.repeat(["a", "b", "c", "d"], 10)
    kwargs = dict(landmarks=U, ls=LS, sigma=SIGMA, mu=0.3, **(prior if with_prior else {}))
    est = SampleVarianceEstimator().fit(X, Y, groups, estimator_kwargs=kwargs)
    assert est._shared_prior()
    Xn = np.random.default_rng(3).normal(size=(35, 3))
    # The straightforward computation: each fit's own weights at the points.
    means = np.stack([fit.mean(Xn) for fit in est._fits.values()])
    K = kernel_matrix(matern52(LS), Xn, U)
    raw = np.stack([K @ fit.variance_weights for fit in est._fits.values()])
    obs = np.maximum(raw, 0.0).mean(axis=0)
    if with_prior:  # the prior of the variance dips below 0: the clipping per sample matters
        assert np.any(raw < 0)
    assert _relative(est.group_means(Xn), means) < 1e-10
    assert _relative(est.predict(Xn, diag=True, progress=False), means.var(axis=0, ddof=1)) < 1e-10
    B = est.low_rank_factor(Xn)
    centred = (means - means.mean(axis=0)) / np.sqrt(3)
    assert _relative(B, np.transpose(centred, (2, 1, 0))) < 1e-10
    assert _relative(est.obs_variance(Xn), obs) < 1e-10
