"""Per-gene statistics of :class:`~kompot.DifferentialExpression` from its two fitted models.

Fold-change z-scores, the posterior tail probability reported next to the
Mahalanobis distance, and the terms of the Mahalanobis distance itself
(computed by :func:`kompot.core.mahalanobis.mahalanobis_distances`).
"""

from __future__ import annotations

import numpy as np

from ..core.stats import neg_log10_ptp
from .expression_model import ExpressionModel
from .sample_variance import SampleVarianceEstimator, call_variance_predictor


def fold_change_zscores(fc, std1, std2, eps: float) -> np.ndarray:
    """``fc / sqrt(v1 + v2 + eps)`` from ``std_c = sqrt(v_c + eps)``, in one output array."""
    z = np.square(std1)
    z += np.square(std2)
    z -= eps
    np.sqrt(z, out=z)
    return np.divide(fc, z, out=z)


def mean_zscore_neg_log10_ptp(zscores: np.ndarray) -> np.ndarray:
    """Per gene, ``-log10 Φ(-|z̄|)`` with ``z̄`` the mean over cells of the fold-change z-scores.

    kompot 0.8.0 reported ``-log10`` of the chi-square tail of the squared
    Mahalanobis distance. No chi-square (or chi) law fits that distance here:
    its covariance at the landmarks is nearly low-rank and regularised by
    ``eps``, so the number of directions in which the difference can vary
    is far below the landmark count, and the distance's null scale depends
    on that unknown number (that is why kompot calibrates the distance with
    a permutation null, :meth:`kompot.DifferentialExpression.compute_fdr`).

    This tail needs no such number. Each cell's z-score is standard normal
    when the posterior difference is centred at 0; the mean of standard
    normals, however correlated, has variance at most 1, so ``Φ(-|z̄|)``
    is a valid, conservative one-sided tail probability for every gene.
    It measures a consistent shift: a gene up in some states and down in
    others averages out here while its Mahalanobis distance stays large.
    """
    return neg_log10_ptp(np.mean(zscores, axis=0))


def mahalanobis_terms(
    m1: ExpressionModel, m2: ExpressionModel, points: np.ndarray, fold_change=None, *,
    eps: float, empirical: bool, replicates: bool,
):
    """Difference, shared covariance, low-rank and diagonal terms at ``points``.

    The shared covariance is the sum of both posteriors plus ``eps * I``; the
    diagonal the summed empirical variances (with ``empirical``); the low-rank
    factor both conditions' replicate factors side by side (with ``replicates``).
    """
    delta = fold_change
    if delta is None:
        delta = m2.predict(points, progress=False) - m1.predict(points, progress=False)
    shared = m1.covariance(points, diag=False) + m2.covariance(points, diag=False)
    shared = 0.5 * (shared + shared.T) + eps * np.eye(points.shape[0])
    diag = None
    if empirical and (m1.has_empirical_variance or m2.has_empirical_variance):
        diag = np.zeros_like(delta)
        for model in (m1, m2):
            if model.has_empirical_variance:
                diag = diag + model.obs_variance(points, progress=False)
    low_rank = None
    if replicates:
        factors = [f for f in (_sample_factor(m, points) for m in (m1, m2)) if f is not None]
        if factors:
            low_rank = np.concatenate(factors, axis=2)
    return delta, shared, low_rank, diag


def _sample_factor(model: ExpressionModel, points: np.ndarray):
    vp = model.variance_estimator
    if vp is None:
        return None
    if isinstance(vp, SampleVarianceEstimator):
        return vp.low_rank_factor(points)
    # An arbitrary callable gives only a dense covariance: factor it per gene.
    cov = call_variance_predictor(vp, points, diag=False)  # (m, m, G)
    w, V = np.linalg.eigh(np.moveaxis(cov, 2, 0))
    return V * np.sqrt(np.clip(w, 0, None))[:, None, :]
