"""Empirical-Bayes moderation of variances estimated from few replicates.

Smyth (2004, limma): each variance estimate ``s_i^2`` with ``d_i`` degrees of
freedom is treated as a scaled chi-square around a value drawn from a scaled
inverse chi-square prior with ``d0`` degrees of freedom and scale ``s0^2``.
Both are estimated from all estimates at once by matching the mean and the
variance of ``log s_i^2``; the posterior variance

    (d0 * s0^2 + d_i * s_i^2) / (d0 + d_i)

then enters a t-test with ``d0 + d_i`` degrees of freedom. Here the estimates
may be given relative to a per-observation reference (``s_i^2 / r_i``), so
the prior scale is a multiple of that reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, polygamma


@dataclass(frozen=True)
class VariancePrior:
    """Prior degrees of freedom ``df`` (may be ``inf``) and scale of the variances."""

    df: float
    scale: float


def _trigamma_inverse(x: float) -> float:
    """Solve ``trigamma(y) = x`` for ``y > 0`` by Newton's method on ``1 / trigamma``."""
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        step = tri * (1.0 - tri / x) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def fit_variance_prior(variances: np.ndarray, df: np.ndarray) -> VariancePrior:
    """Moment estimate of the prior from variance estimates and their degrees of freedom.

    Returns ``df = inf`` when the estimates scatter no more than their
    sampling distribution alone would make them (no evidence of different
    true variances): then every variance is replaced by the common scale.
    """
    variances = np.asarray(variances, np.float64)
    df = np.broadcast_to(np.asarray(df, np.float64), variances.shape)
    ok = np.isfinite(variances) & (variances > 0) & np.isfinite(df) & (df > 0)
    if ok.sum() < 2:
        raise ValueError("Moderating variances needs at least 2 positive, finite estimates.")
    s2, d = variances[ok], df[ok]
    # log s^2 = log sigma^2 + log(chi2_d / d): remove the chi-square's mean and variance.
    e = np.log(s2) - digamma(d / 2) + np.log(d / 2)
    e_mean = float(e.mean())
    excess = float(e.var(ddof=1) - np.mean(polygamma(1, d / 2)))
    if excess <= 0:
        return VariancePrior(np.inf, float(np.exp(e_mean)))
    d0 = 2.0 * _trigamma_inverse(excess)
    return VariancePrior(d0, float(np.exp(e_mean + digamma(d0 / 2) - np.log(d0 / 2))))


def moderated_variance(
    variances: np.ndarray, df: np.ndarray, prior: VariancePrior, reference: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior variances and their degrees of freedom under ``prior``.

    ``reference`` scales the prior per observation (the prior variance is
    ``prior.scale * reference``); the estimates are on the absolute scale.
    """
    target = prior.scale * np.asarray(reference, np.float64)
    df = np.asarray(df, np.float64)
    if np.isinf(prior.df):
        return np.broadcast_to(target, np.shape(variances)).copy(), np.full(np.shape(variances),
                                                                             np.inf)
    post = (prior.df * target + df * np.asarray(variances)) / (prior.df + df)
    return post, prior.df + df
