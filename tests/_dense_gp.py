"""Dense numpy references of kompot's landmark GPs (imported as a plain module).

Written from the model's formulas with full matrices, ``numpy.linalg.solve``
and a plain damped Newton method, and none of kompot's blocking, caching or
whitened triangular solves, for small problems only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def matern52(X: np.ndarray, Y: np.ndarray, ls: float) -> np.ndarray:
    """Matérn-5/2 with mellon's distance guard (1e-12 inside the square root)."""
    sq = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    s = np.sqrt(5.0) * np.sqrt(sq + 1e-12) / ls
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


def density_map(X, U, ls, *, d, mu, nn_distances, jitter=1e-6):
    """MAP and Laplace covariance of the landmark log-density GP.

    Returns ``(predict, variance)``: functions of new points giving the log
    density ``mu + K(x, U) Lp^-T z`` and its Laplace variance
    ``K(x, U) Lp^-T H^-1 Lp^-1 K(U, x)``.
    """
    m = len(U)
    Lp = np.linalg.cholesky(matern52(U, U, ls) + jitter * np.eye(m))
    L = np.linalg.solve(Lp, matern52(X, U, ls).T).T
    const = (d / 2) * np.log(np.pi) - gammaln(d / 2 + 1)
    V = d * np.log(nn_distances) + const
    Vdr = np.log(d) + (d - 1) * np.log(nn_distances) + const

    def loss(z):
        f = mu + L @ z
        return 0.5 * z @ z - np.sum(f + Vdr - np.exp(f + V))

    z = np.zeros(m)
    for _ in range(500):
        e = np.exp(mu + L @ z + V)
        grad = z - L.T @ (1.0 - e)
        H = np.eye(m) + L.T @ (e[:, None] * L)
        step = np.linalg.solve(H, grad)
        if grad @ step < 1e-20:
            break
        t = 1.0
        while loss(z - t * step) > loss(z) - 0.25 * t * (grad @ step) and t > 1e-12:
            t *= 0.5
        z = z - t * step
    e = np.exp(mu + L @ z + V)
    H = np.eye(m) + L.T @ (e[:, None] * L)
    weights = np.linalg.solve(Lp.T, z)
    cov_weights = np.linalg.solve(Lp.T, np.linalg.solve(Lp.T, np.linalg.inv(H)).T)

    def predict(x):
        return mu + matern52(x, U, ls) @ weights

    def variance(x):
        K = matern52(x, U, ls)
        return np.einsum("ij,jk,ik->i", K, cov_weights, K)

    return predict, variance


def function_fit(X, Y, U, ls, *, sigma, mu=0.0, jitter=1e-6):
    """The landmark (DTC) regression GP of every column of ``Y``.

    Returns ``(mean, covariance, variance_weights)``: the posterior mean at
    new points, the latent posterior covariance between new points
    ``k(x, x') - Q(x, x') + K(x, U) (Kuu + Kux Kxu / s^2)^-1 K(U, x')``, and
    the weights of the smoothed leverage-corrected squared residuals.
    """
    Kuu = matern52(U, U, ls) + jitter * np.eye(len(U))
    Kxu = matern52(X, U, ls)
    system = sigma**2 * Kuu + Kxu.T @ Kxu
    weights = np.linalg.solve(system, Kxu.T @ (Y - mu))
    leverage = np.einsum("ij,ji->i", Kxu, np.linalg.solve(system, Kxu.T))
    r2 = (Y - mu - Kxu @ weights) ** 2 / (1.0 - leverage)[:, None] ** 2
    variance_weights = np.linalg.solve(system, Kxu.T @ r2)

    def mean(x):
        return mu + matern52(x, U, ls) @ weights

    def covariance(x):
        K = matern52(x, U, ls)
        posterior = np.linalg.solve(Kuu + Kxu.T @ Kxu / sigma**2, K.T)
        return matern52(x, x, ls) - K @ np.linalg.solve(Kuu, K.T) + K @ posterior

    return mean, covariance, variance_weights
