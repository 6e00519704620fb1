"""Landmark expression GPs of many replicate samples on one set of landmarks and one kernel.

A sample with fewer cells than landmarks has a low-rank system: its fit
(:func:`~kompot.core.function_gp.fit_function`) can be solved in the
``n x n`` space of its cells instead of the ``m x m`` space of the landmarks
(push-through identity, see :func:`fit_replicate`). Everything in that
solve that depends on the sample's cells alone -- the whitened kernel, the
Cholesky factor of ``sigma^2 I + A^T A`` and the leverages -- is kept in a
:class:`ReplicateBases` cache, so that refits of the same sample with other
prior means (the permutation null reassigns whole samples to the other
condition, whose fit is their prior mean) only redo the gene-sized products.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from .function_gp import FunctionFit, _check_prior, _check_sigma, _rows
from .kernel import kernel_matrix
from .linalg import lower_solve, safe_cholesky, upper_solve

# Memory the cache of one run may hold (whitened kernels and cell factors).
REPLICATE_CACHE_BYTES = 1024**3


@dataclass
class ReplicateBasis:
    """What one sample's fit needs beyond the expression: a function of its cells only.

    ``K = k(X, U)`` (n, m) identifies the cells (and the kernel) on reuse;
    ``T = Lp^{-T} A`` (m, n) with ``A = Lp^{-1} K^T`` maps cell-space
    coefficients to landmark weights; ``LS = chol(sigma^2 I + A^T A)``;
    ``one_minus_h = sigma^2 diag((sigma^2 I + A^T A)^{-1})`` is one minus
    each cell's leverage.
    """

    K: np.ndarray
    A: np.ndarray
    T: np.ndarray
    LS: np.ndarray
    one_minus_h: np.ndarray
    _kept_product: tuple | None = field(default=None, repr=False)  # (K_points, K_points @ T)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.K, self.A, self.T, self.LS, self.one_minus_h))

    def times_T(self, K_points: np.ndarray, keep: bool = False) -> np.ndarray:
        """``K_points @ T``; with ``keep`` it is kept for the next call with equal ``K_points``.

        Every refit of the sample in the null evaluates its spread at the
        same points (the landmarks), so that product is made once.
        """
        kept = self._kept_product
        if kept is not None and kept[0].shape == K_points.shape \
                and np.array_equal(kept[0], K_points):
            return kept[1]
        product = K_points @ self.T
        if keep:
            self._kept_product = (K_points, product)
        return product


@dataclass
class ReplicateBases:
    """Cache of :class:`ReplicateBasis` by sample label, shared by refits on the same landmarks.

    An entry is used only when the sample's kernel to the landmarks, the
    landmark factor ``Lp`` and ``sigma`` are exactly those it was built
    with; otherwise it is rebuilt. Entries stop being added once
    ``max_bytes`` are held.
    """

    max_bytes: int = REPLICATE_CACHE_BYTES
    entries: dict = field(default_factory=dict)
    hits: int = 0
    # The null's permutations may run in threads that share this cache.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def basis(self, label, K, Lp, sigma) -> ReplicateBasis:
        """The basis of sample ``label`` with kernel ``K`` to the landmarks (built if needed)."""
        held = self.entries.get(label)
        if held is not None:
            basis, held_Lp, held_sigma = held
            if held_sigma == sigma and np.array_equal(held_Lp, Lp) and np.array_equal(basis.K, K):
                with self._lock:
                    self.hits += 1
                return basis
        basis = replicate_basis(K, Lp, sigma)
        with self._lock:
            used = sum(b.nbytes for b, _, _ in self.entries.values() if b is not basis)
            if used + basis.nbytes <= self.max_bytes:
                self.entries[label] = (basis, Lp, sigma)
        return basis


def replicate_basis(K: np.ndarray, Lp: np.ndarray, sigma: float) -> ReplicateBasis:
    """:class:`ReplicateBasis` of the cells with kernel ``K = k(X, U)`` to the landmarks."""
    A = lower_solve(Lp, K.T)
    T = upper_solve(Lp, A)
    S = A.T @ A
    S[np.diag_indices_from(S)] += sigma**2
    LS = safe_cholesky(S, what="replicate sample GP system")
    S_inv_diag = np.sum(lower_solve(LS, np.eye(K.shape[0])) ** 2, axis=0)
    return ReplicateBasis(K, A, T, LS, sigma**2 * S_inv_diag)


def uses_cell_space(n_cells: int, n_landmarks: int) -> bool:
    """Whether a sample's fit is cheaper in the space of its cells than of the landmarks."""
    return n_cells <= n_landmarks


def fit_replicate(
    X: np.ndarray,
    Y,
    landmarks: np.ndarray,
    cov_func,
    Lp: np.ndarray,
    *,
    sigma: float,
    mu=0.0,
    mean_weights: np.ndarray | None = None,
    variance_mean_weights: np.ndarray | None = None,
    obs_variance: bool = True,
    bases: ReplicateBases | None = None,
    label=None,
) -> FunctionFit:
    """:func:`~kompot.core.function_gp.fit_function` of one sample, solved in its cells' space.

    With ``A = Lp^{-1} k(U, X)``, ``S = sigma^2 I + A^T A`` and the prior
    mean ``f0 = k(X, U) @ mean_weights`` at the cells, the landmark system
    ``(sigma^2 I + A A^T)^{-1} A`` equals ``A S^{-1}``, so

    * weights: ``mean_weights + T c`` with ``c = S^{-1} (y - mu - f0)`` and ``T = Lp^{-T} A``;
    * residuals at the cells: ``y - mu - k(X, U) weights = sigma^2 c``;
    * leverages: ``1 - h = sigma^2 diag(S^{-1})``;

    and the empirical variance is smoothed the same way. The result equals
    ``fit_function`` (with ``Lp = chol(K_uu + jitter I)``) up to rounding.
    With ``bases``, the cells' factors are taken from (or put into) that
    cache under ``label``.
    """
    sigma = _check_sigma(sigma)
    m, n_genes = landmarks.shape[0], Y.shape[1]
    prior = _check_prior(mean_weights, (m, n_genes), "mean_weights")
    variance_prior = _check_prior(variance_mean_weights, (m, n_genes), "variance_mean_weights")
    K = kernel_matrix(cov_func, np.asarray(X, np.float64), landmarks)
    basis = replicate_basis(K, Lp, sigma) if bases is None else bases.basis(label, K, Lp, sigma)
    R = _rows(Y, slice(None), mu)  # may be a view of the caller's array: never written to
    if prior is not None:
        R = R - K @ prior
    c = _cell_solve(basis, R)
    fit = ReplicateFit(landmarks, cov_func, Lp, None, None, mu, sigma, X.shape[0])
    fit.basis, fit.prior, fit.coefficients = basis, prior, c
    if not obs_variance:
        return fit
    r2 = (sigma**2 * c) ** 2 / np.maximum(basis.one_minus_h, 1e-12)[:, None] ** 2
    if variance_prior is not None:
        r2 -= K @ variance_prior
    fit.variance_prior, fit.variance_coefficients = variance_prior, _cell_solve(basis, r2)
    return fit


def share_prior(fits) -> bool:
    """Whether all ``fits`` are :class:`ReplicateFit` with the same ``mu`` and prior means.

    The fits of one :class:`~kompot.SampleVarianceEstimator` are; their
    predictions then split into one common part and one part per sample
    (:func:`replicate_predictions`).
    """
    if not fits:
        return False
    first = fits[0]
    return all(
        isinstance(f, ReplicateFit) and f.prior is first.prior
        and f.variance_prior is first.variance_prior and np.array_equal(f.mu, first.mu)
        for f in fits
    )


def replicate_predictions(fits, K: np.ndarray, variance: bool = False, keep: bool = False):
    """The fits' means (or, with ``variance``, unclipped empirical variances) at the rows of ``K``.

    Returns ``(common, parts)`` with fit k's prediction ``common + parts[k]``:
    ``common = mu + K @ prior`` once, and ``parts[k] = (K T_k) @ c_k``,
    which costs ``n_k (m + n_genes)`` per row instead of ``m n_genes``
    (``K T_k`` is the kernel between the rows and the sample's cells in the
    landmark approximation). ``fits`` must :func:`share_prior`. With ``keep``
    each sample keeps ``K T_k`` for later calls at the same points
    (:meth:`ReplicateBasis.times_T`).
    """
    first = fits[0]
    prior = first.variance_prior if variance else first.prior
    common = 0.0 if variance else first.mu
    if prior is not None:
        common = K @ prior + common
    parts = [f.basis.times_T(K, keep) @ (f.variance_coefficients if variance else f.coefficients)
             for f in fits]
    return common, parts


def _cell_solve(basis: ReplicateBasis, R: np.ndarray) -> np.ndarray:
    """``S^{-1} R`` with ``S = LS LS^T``."""
    return upper_solve(basis.LS, lower_solve(basis.LS, R))


class ReplicateFit(FunctionFit):
    """A :class:`FunctionFit` whose landmark weights and factor ``LB`` are built on first use.

    A sample variance estimator reads its replicate fits through their
    cell-space coefficients (:func:`replicate_predictions`); the landmark
    weights ``prior + T c`` (``m x n_genes`` each) and ``LB`` (an ``m x m``
    Cholesky factor) are needed only for other uses, such as a mellon
    predictor, so they are not computed up front.
    """

    basis: ReplicateBasis | None = None
    # Weights = prior + basis.T @ coefficients (and the same for the empirical variance).
    prior: np.ndarray | None = None
    coefficients: np.ndarray | None = None
    variance_prior: np.ndarray | None = None
    variance_coefficients: np.ndarray | None = None

    @property
    def LB(self):
        if self._LB is None and self.basis is not None:
            A = self.basis.A
            self._LB = safe_cholesky(np.eye(A.shape[0]) + (A @ A.T) / self.sigma**2,
                                     what="expression GP system")
        return self._LB

    @LB.setter
    def LB(self, value):
        self._LB = value

    @property
    def weights(self):
        if self._weights is None and self.coefficients is not None:
            self._weights = _landmark_weights(self.basis, self.prior, self.coefficients)
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights = value

    @property
    def variance_weights(self):
        if self._variance_weights is None and self.variance_coefficients is not None:
            self._variance_weights = _landmark_weights(self.basis, self.variance_prior,
                                                       self.variance_coefficients)
        return self._variance_weights

    @variance_weights.setter
    def variance_weights(self, value):
        self._variance_weights = value


def _landmark_weights(basis: ReplicateBasis, prior, coefficients) -> np.ndarray:
    """``prior + T @ coefficients``: the landmark weights of a cell-space fit."""
    weights = basis.T @ coefficients
    if prior is not None:
        weights += prior
    return weights
