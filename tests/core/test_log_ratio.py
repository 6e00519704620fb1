"""The label GP of the log ratio against dense, independent references."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from kompot.core.log_ratio import (
    Jackknife,
    fit_log_ratio,
    jackknife_variance,
    ratio_moments,
    sample_jackknife,
)


def _problem(seed=0, n=300, m=12):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(n, m)) / np.sqrt(m)
    truth = 1.5 * np.tanh(L[:, 0] * 2)
    y = (rng.uniform(size=n) < expit(0.3 + truth)).astype(float)
    return L, y


def _blocks(L, size=70):
    return [(slice(i, min(i + size, len(L))), L[i:i + size]) for i in range(0, len(L), size)]


def _dense_objective(L, y, a, b):
    def f(w):
        eta = b + a * L @ w
        return 0.5 * w @ w - np.sum(log_expit(np.where(y > 0, eta, -eta)))
    return f


@pytest.mark.parametrize("amplitude", [0.3, 1.0, 3.0])
def test_newton_map_and_evidence_match_a_dense_reference(amplitude):
    L, y = _problem()
    b = np.log(y.sum() / (1 - y).sum())
    fit = fit_log_ratio(_blocks(L), y, amplitude=amplitude, offset=b, n_landmarks=L.shape[1])
    objective = _dense_objective(L, y, amplitude, b)
    ref = minimize(objective, np.zeros(L.shape[1]), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(fit.w, ref.x, atol=1e-5)
    # Laplace evidence: -objective at the MAP - log det(H) / 2, H built densely.
    pi = expit(b + amplitude * L @ fit.w)
    H = np.eye(L.shape[1]) + amplitude**2 * L.T @ (L * (pi * (1 - pi))[:, None])
    expected = -objective(fit.w) - 0.5 * np.linalg.slogdet(H)[1]
    assert fit.log_evidence == pytest.approx(expected, abs=1e-6)
    assert fit.converged


def test_posterior_variance_is_the_inverse_hessian_quadratic_form():
    L, y = _problem(1)
    fit = fit_log_ratio(_blocks(L), y, amplitude=0.8, offset=0.0, n_landmarks=L.shape[1])
    H = fit.chol @ fit.chol.T
    Phi = np.random.default_rng(2).normal(size=(5, L.shape[1])) * 0.3
    residual = np.full(5, 0.1)
    mean, var = ratio_moments(fit, Phi, residual)
    np.testing.assert_allclose(mean, 0.8 * Phi @ fit.w)
    expected = 0.64 * (np.einsum("ij,jk,ik->i", Phi, np.linalg.inv(H), Phi) + residual)
    np.testing.assert_allclose(var, expected, rtol=1e-10)


def test_two_step_jackknife_is_close_to_exact_leave_one_sample_out_refits():
    L, y = _problem(3, n=600)
    rng = np.random.default_rng(4)
    samples = np.where(y > 0, rng.integers(0, 4, y.size), 10 + rng.integers(0, 4, y.size))
    a = 0.7
    b = np.log(y.sum() / (1 - y).sum())
    fit = fit_log_ratio(_blocks(L), y, amplitude=a, offset=b, n_landmarks=L.shape[1])
    jk = sample_jackknife(_blocks(L), y, samples, fit)
    for k, label in enumerate(jk.samples):
        keep = samples != label
        yk = y[keep]
        bk = np.log(yk.sum() / (1 - yk).sum())
        exact = fit_log_ratio(_blocks(L[keep]), yk, amplitude=a, offset=bk,
                              n_landmarks=L.shape[1]).w - fit.w
        # two Newton steps recover the refit's shift to 1 per cent
        assert np.linalg.norm(jk.shifts[:, k] - exact) <= 0.01 * np.linalg.norm(exact)


def test_jackknife_variance_is_welch_for_condition_means():
    # Shifts d_k = -(x_k - mean_c) / (K_c - 1) are what leaving one sample out does to a mean.
    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(size=3), rng.normal(size=5)
    d = np.r_[-(x1 - x1.mean()) / 2, -(x2 - x2.mean()) / 4]
    jk = Jackknife(shifts=d[None, :], condition=np.r_[[0] * 3, [1] * 5], samples=np.arange(8))
    var, df = jackknife_variance(jk, np.ones((1, 1)), amplitude=1.0)
    v1, v2 = x1.var(ddof=1) / 3, x2.var(ddof=1) / 5
    assert var[0] == pytest.approx(v1 + v2)
    assert df[0] == pytest.approx((v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 4))


def test_samples_must_be_nested_in_conditions():
    L, y = _problem()
    fit = fit_log_ratio(_blocks(L), y, amplitude=1.0, offset=0.0, n_landmarks=L.shape[1])
    with pytest.raises(ValueError, match="nested"):
        sample_jackknife(_blocks(L), y, np.zeros(y.size), fit)
