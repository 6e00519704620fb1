"""Mahalanobis distances with each gene's replicate covariance moderated by what all genes share.

The prior (:class:`~kompot.core.replicate_moderation.ReplicatePrior`) is
learned once per analysis, from a pilot of genes fitted with the real
labels (:func:`~kompot.models.gene_blocks.plan_replicate_prior`), and the
same prior then serves every gene block and every permutation of the null,
as the landmarks and the length scale do. Without replicate samples there is
nothing to moderate and the distances are the model's own.
"""

from __future__ import annotations

import numpy as np

from ..core.mahalanobis import mahalanobis_distances
from ..core.replicate_moderation import (
    ReplicatePrior,
    fit_replicate_prior,
    moderated_terms,
    reference_variance,
)
from .differential_expression import DifferentialExpression

# Genes fitted to learn the prior: enough for its two moments, a small share of a panel.
PILOT_GENES = 500


def pilot_genes(n_genes: int, size: int | None = None) -> np.ndarray:
    """Evenly spaced genes of the panel (all of them when there are at most ``size``).

    ``size`` defaults to :data:`PILOT_GENES`.
    """
    size = PILOT_GENES if size is None else size
    return np.unique(np.linspace(0, n_genes - 1, min(size, n_genes)).round().astype(int))


def learn_replicate_prior(model: DifferentialExpression, terms=None,
                          genes: np.ndarray | None = None) -> ReplicatePrior | None:
    """The prior from a fitted model's genes; ``None`` without replicate variance to moderate.

    ``terms`` are the model's :meth:`~kompot.DifferentialExpression.mahalanobis_terms`
    at its landmarks, when already computed. ``genes`` (indices of the
    model's genes) restricts the prior to those genes: the same prior as from
    a model fitted to them alone, since every gene is fitted on its own.
    """
    if terms is None:
        terms = model.mahalanobis_terms(model.landmarks_)
    _, _, low_rank, diag = terms
    if genes is not None and low_rank is not None:
        low_rank = low_rank[genes]
        diag = None if diag is None else diag[:, genes]
    if low_rank is None or low_rank.shape[0] < 2:
        return None
    traces = np.einsum("gmk,gmk->g", low_rank, low_rank)
    rank = int(np.linalg.matrix_rank(low_rank[int(np.argmax(traces))]))
    if rank < 1 or np.count_nonzero(traces) < 2:
        return None
    return fit_replicate_prior(low_rank, reference_variance(diag, low_rank.shape[0]), rank)


def prior_summary(prior: ReplicatePrior) -> dict[str, float]:
    """The prior's numbers for a run's record (its shape factor is left out)."""
    return dict(df=float(prior.df), scale=float(prior.scale),
                residual_df=float(prior.residual_df), weight=float(prior.weight))


def replicate_distances(model: DifferentialExpression, prior: ReplicatePrior | None,
                        progress: bool = False, terms=None) -> np.ndarray:
    """Each gene's distance at the landmarks, its replicate covariance moderated by ``prior``.

    With ``prior=None`` (or a model without replicate variance) these are
    :meth:`~kompot.DifferentialExpression.compute_mahalanobis_distances` at
    the landmarks. ``terms`` as for :func:`learn_replicate_prior`. The
    model's ``mahalanobis_distances`` is set to the result either way.
    """
    if terms is None:
        terms = model.mahalanobis_terms(model.landmarks_)
    delta, shared, low_rank, diag = terms
    scaled = None
    if prior is not None and low_rank is not None:
        low_rank, scaled = moderated_terms(
            low_rank, reference_variance(diag, low_rank.shape[0]), prior)
    model.mahalanobis_distances = mahalanobis_distances(delta, shared, low_rank=low_rank,
                                                        diag=diag, scaled=scaled,
                                                        progress=progress)
    return model.mahalanobis_distances
