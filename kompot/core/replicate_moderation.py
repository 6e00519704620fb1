"""Empirical-Bayes moderation of each gene's replicate covariance over the landmarks.

With a few samples per condition, each gene's replicate covariance
``C_g = B_g B_g^T`` (rank ``K - 2`` for ``K`` samples in two conditions) is
estimated from almost nothing, and a gene whose samples happen to agree gets
a tiny variance and a large distance. As limma does for a variance
(:mod:`kompot.core.moderation`), the covariance is shrunk towards what all
genes share:

    C~_g = w C_g + (1 - w) s0^2 r_g P

``P`` is the genes' mean replicate covariance, each normalised to trace
``m`` (the shape that donor differences take over the landmarks); ``r_g``
is the gene's reference variance (its mean within-sample variance at the
landmarks when that is modelled, else 1); ``s0^2`` and the prior degrees of
freedom ``d0`` come from the genes' traces ``s_g^2 = tr(C_g) / m`` relative to
``r_g``; and ``w = d / (d0 + d)``. One trace has ``d = (K - 2) m_eff``
degrees of freedom, with ``m_eff = tr(P)^2 / tr(P^2)`` the number of
independent directions that ``P`` spreads over: counting only ``K - 2``
would attribute the whole scatter of the traces to sampling and shrink
every gene fully.

The moderated covariance is handed to
:func:`~kompot.core.mahalanobis.mahalanobis_distances` as two terms, the
gene's own factor ``sqrt(w) B_g`` and the full-rank ``c_g P`` with
``c_g = (1 - w) s0^2 r_g``, so ``P`` is used whole: on a low-dimensional
representation the donor differences spread over many landmark directions,
and a truncated factor of ``P`` would drop variance the genes share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .moderation import fit_variance_prior

__all__ = ["ReplicatePrior", "fit_replicate_prior", "moderated_terms", "reference_variance"]


@dataclass(frozen=True)
class ReplicatePrior:
    """What genes share about their replicate covariance over one set of landmarks.

    ``df`` and ``scale`` are the prior's degrees of freedom (``inf``: every
    gene is shrunk fully) and its variance relative to a gene's reference;
    ``residual_df`` the degrees of freedom of one gene's trace; ``shape``
    the shared shape ``P`` (landmarks x landmarks, trace ``m``).
    """

    df: float
    scale: float
    residual_df: float
    shape: np.ndarray

    @property
    def weight(self) -> float:
        """Weight ``w`` of a gene's own covariance in its moderated covariance."""
        return 0.0 if np.isinf(self.df) else self.residual_df / (self.df + self.residual_df)


def reference_variance(diag: np.ndarray | None, n_genes: int) -> np.ndarray:
    """Each gene's reference: its mean empirical variance at the landmarks, else 1."""
    if diag is None:
        return np.ones(n_genes)
    reference = np.asarray(diag, np.float64).mean(axis=0)
    positive = reference[reference > 0]
    floor = positive.min() if positive.size else 1.0
    return np.maximum(reference, floor)


def _traces(low_rank: np.ndarray) -> np.ndarray:
    """``tr(B_g B_g^T) / m`` per gene."""
    return np.einsum("gmk,gmk->g", low_rank, low_rank) / low_rank.shape[1]


def _shape(low_rank: np.ndarray, traces: np.ndarray) -> np.ndarray:
    """Mean over genes of ``B_g B_g^T`` normalised to trace ``m`` (genes with variance only)."""
    keep = traces > 0
    scaled = low_rank[keep] / np.sqrt(traces[keep])[:, None, None]
    flat = np.moveaxis(scaled, 1, 0).reshape(low_rank.shape[1], -1)  # (m, genes * K)
    return flat @ flat.T / max(int(keep.sum()), 1)


def fit_replicate_prior(low_rank: np.ndarray, reference: np.ndarray, rank: int
                        ) -> ReplicatePrior:
    """The prior from the genes' replicate factors ``B_g`` (genes x landmarks x columns).

    ``rank`` is the factors' rank: the samples of both conditions less one
    per condition (4 for 3 vs 3 samples).
    """
    low_rank = np.asarray(low_rank, np.float64)
    if low_rank.ndim != 3 or low_rank.shape[0] < 2:
        raise ValueError("Moderating the replicate covariance needs factors of at least 2 genes.")
    if rank < 1:
        raise ValueError(f"Moderation needs replicate factors of rank 1 or more, got {rank}.")
    traces = _traces(low_rank)
    if np.count_nonzero(traces) < 2:
        raise ValueError("Moderation needs at least 2 genes whose samples differ.")
    P = _shape(low_rank, traces)
    m_eff = float(np.trace(P) ** 2 / np.sum(P * P))
    residual_df = rank * m_eff
    prior = fit_variance_prior(traces / reference, residual_df)
    return ReplicatePrior(prior.df, prior.scale, residual_df, 0.5 * (P + P.T))


def moderated_terms(low_rank: np.ndarray, reference: np.ndarray, prior: ReplicatePrior
                    ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """The moderated covariances ``w B_g B_g^T + c_g P`` as their two terms.

    Returns the factors ``sqrt(w) B_g`` (``None`` when ``w = 0``) and the
    pair ``(P, c)`` with ``c_g = (1 - w) s0^2 r_g``, as
    :func:`~kompot.core.mahalanobis.mahalanobis_distances` takes them.
    """
    w = prior.weight
    scales = (1.0 - w) * prior.scale * np.asarray(reference, np.float64)
    own = None if w == 0.0 else np.sqrt(w) * np.asarray(low_rank, np.float64)
    return own, (prior.shape, scales)
