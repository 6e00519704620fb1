"""The label GP with covariates against a dense Newton on the unwhitened design."""

import numpy as np
import pytest
from scipy.special import expit, log_expit

from kompot.core.log_ratio import jackknife_variance, ratio_moments
from kompot.core.log_ratio_covariates import (
    covariate_effects,
    covariate_jackknife,
    fit_log_ratio_covariates,
    landmark_only,
)


def _problem(seed=0, n=240, m=10):
    """Features, a 3-level batch (2 indicators) and a numeric covariate, labels that use both."""
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(n, m)) / np.sqrt(m)
    batch = rng.integers(0, 3, n)
    Z = np.c_[batch == 1, batch == 2, rng.normal(size=n)].astype(float)
    eta = 0.2 + np.tanh(2 * L[:, 0]) + Z @ np.array([0.8, -0.6, 0.3])
    y = (rng.uniform(size=n) < expit(eta)).astype(float)
    return L, Z, y


def _blocks(L, size=70):
    return [(slice(i, min(i + size, len(L))), L[i:i + size]) for i in range(0, len(L), size)]


def _dense_fit(L, Z, y, a, b, s):
    """Newton on theta = [w; beta] with the full n x (m + p) design and prior diag(1, 1/s^2)."""
    Zc = Z - Z.mean(0)
    G = np.hstack([a * L, Zc])
    P = np.diag(np.r_[np.ones(L.shape[1]), np.full(Z.shape[1], s**-2.0)])
    theta = np.zeros(G.shape[1])
    for _ in range(100):
        pi = expit(b + G @ theta)
        grad = P @ theta - G.T @ (y - pi)
        H = P + G.T @ (G * (pi * (1 - pi))[:, None])
        step = np.linalg.solve(H, grad)
        theta -= step
        if np.abs(step).max() < 1e-14:
            break
    pi = expit(b + G @ theta)
    H = P + G.T @ (G * (pi * (1 - pi))[:, None])
    eta = b + G @ theta
    log_lik = np.sum(log_expit(np.where(y > 0, eta, -eta)))
    evidence = (log_lik - 0.5 * theta @ P @ theta - 0.5 * np.linalg.slogdet(H)[1]
                + 0.5 * np.linalg.slogdet(P)[1])
    return theta, np.linalg.inv(H), evidence


@pytest.mark.parametrize("amplitude", [0.4, 1.5])
def test_map_variance_and_evidence_match_a_dense_reference(amplitude):
    L, Z, y = _problem()
    m, p, s = L.shape[1], Z.shape[1], 2.0
    b = np.log(y.sum() / (1 - y).sum())
    fit = fit_log_ratio_covariates(_blocks(L), y, Z, amplitude=amplitude, offset=b,
                                   n_landmarks=m, prior_sd=s, tol=1e-20)
    theta, H_inv, evidence = _dense_fit(L, Z, y, amplitude, b, s)
    np.testing.assert_allclose(fit.w[:m], theta[:m], atol=1e-8)
    np.testing.assert_allclose(covariate_effects(fit, m, s), theta[m:], atol=1e-8)
    assert fit.log_evidence == pytest.approx(evidence, abs=1e-8)
    # f at new cells: mean a Phi w, variance marginal over beta (the full inverse Hessian).
    Phi = np.random.default_rng(1).normal(size=(6, m)) * 0.3
    residual = np.full(6, 0.05)
    mean, var = ratio_moments(fit, landmark_only(Phi, p), residual)
    F = np.hstack([amplitude * Phi, np.zeros((6, p))])
    np.testing.assert_allclose(mean, F @ theta, atol=1e-8)
    expected = np.einsum("ij,jk,ik->i", F, H_inv, F) + amplitude**2 * residual
    np.testing.assert_allclose(var, expected, rtol=1e-8)
    # beta's uncertainty widens f's: the conditional variance (beta known) is smaller.
    conditional = np.einsum("ij,jk,ik->i", F[:, :m], np.linalg.inv(np.linalg.inv(H_inv)[:m, :m]),
                            F[:, :m]) + amplitude**2 * residual
    assert np.all(var > conditional)


def test_jackknife_matches_dense_refits_with_recentred_covariates():
    L, Z, y = _problem(2, n=300)
    rng = np.random.default_rng(3)
    samples = np.where(y > 0, rng.integers(0, 3, y.size), 10 + rng.integers(0, 3, y.size))
    m, a, s = L.shape[1], 0.8, 3.0
    b = np.log(y.sum() / (1 - y).sum())
    fit = fit_log_ratio_covariates(_blocks(L), y, Z, amplitude=a, offset=b, n_landmarks=m,
                                   prior_sd=s, tol=1e-20)
    jk = covariate_jackknife(_blocks(L), y, Z, samples, fit, n_landmarks=m, prior_sd=s,
                             tol=1e-20)
    full, _, _ = _dense_fit(L, Z, y, a, b, s)
    for k, label in enumerate(jk.samples):
        keep = samples != label
        yk = y[keep]
        theta, _, _ = _dense_fit(L[keep], Z[keep], yk, a, np.log(yk.sum() / (1 - yk).sum()), s)
        np.testing.assert_allclose(jk.shifts[:m, k], theta[:m] - full[:m], atol=1e-7)
        np.testing.assert_allclose(s * jk.shifts[m:, k], theta[m:] - full[m:], atol=1e-7)
    var, _ = jackknife_variance(jk, landmark_only(L[:5], Z.shape[1]), a)
    assert np.all(var > 0)


def test_a_level_left_with_one_condition_is_left_out_of_the_refit():
    L, Z, y = _problem(5, n=300)
    Z = Z[:, :2]  # the 3-level batch only
    level = Z @ np.array([1, 2])
    # Condition 1 has samples 0, 1 (level 0 and 1 only) and 2 (the only one with level 2).
    samples = np.where(y > 0, 10 + np.arange(y.size) % 3, np.where(level == 2, 2, level % 2))
    m, a, s = L.shape[1], 0.8, 3.0
    fit = fit_log_ratio_covariates(_blocks(L), y, Z, amplitude=a, offset=0.1, n_landmarks=m,
                                   prior_sd=s, tol=1e-20)
    jk = covariate_jackknife(_blocks(L), y, Z, samples, fit, n_landmarks=m, prior_sd=s,
                             tol=1e-20)
    k = list(jk.samples).index(2)
    keep = (samples != 2) & (level != 2)  # level 2 keeps condition 2 only: uninformative
    yk = y[keep]
    full, _, _ = _dense_fit(L, Z, y, a, 0.1, s)
    theta, _, _ = _dense_fit(L[keep], Z[keep], yk, a, np.log(yk.sum() / (1 - yk).sum()), s)
    np.testing.assert_allclose(jk.shifts[:m, k], theta[:m] - full[:m], atol=1e-7)


def test_a_condition_only_sample_in_a_level_leaves_nan_shifts_only_when_alone():
    L, Z, y = _problem(4, n=200)
    samples = np.where(y > 0, 1, 0)  # one sample per condition: nothing can be left out
    m = L.shape[1]
    fit = fit_log_ratio_covariates(_blocks(L), y, Z, amplitude=1.0, offset=0.0, n_landmarks=m)
    jk = covariate_jackknife(_blocks(L), y, Z, samples, fit, n_landmarks=m)
    assert np.isnan(jk.shifts).all()
    with pytest.raises(ValueError, match="nested"):
        covariate_jackknife(_blocks(L), y, Z, np.zeros(y.size), fit, n_landmarks=m)
