"""Expression Gaussian process on landmarks (one condition, all genes at once).

With scalar noise ``sigma`` the posterior covariance does not depend on the
gene, so one factorisation serves every gene: only ``K_ux Y`` and the
weights are per gene. This is the landmark (DTC) model that mellon's
``FunctionEstimator`` fits with ``gp_type="fixed"``; kompot computes it in
cell blocks so that memory stays bounded, and adds the empirical
(aleatoric) variance from leverage-corrected squared residuals smoothed by a
second GP on the same factorisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend, precision
from .blocks import block_slices
from .cell_rows import dense_rows
from .kernel import _is_plain_matern52, kernel_diag, kernel_matrix
from .linalg import lower_solve, safe_cholesky, upper_solve

# Keep the whitened kernel of the training cells in memory below this size.
_WHITENED_CACHE_BYTES = 2 * 1024**3


@dataclass
class FunctionFit:
    """A fitted landmark GP for ``n_genes`` outputs."""

    landmarks: np.ndarray  # (m, d)
    cov_func: object
    Lp: np.ndarray  # chol(K_uu + jitter I)
    LB: np.ndarray  # chol(I + Lp^{-1} K_ux K_xu Lp^{-T} / sigma^2)
    weights: np.ndarray  # (m, G): mean(x) = mu + K(x, U) @ weights
    mu: np.ndarray | float
    sigma: float
    n_obs: int
    variance_weights: np.ndarray | None = None  # (m, G): obs_variance(x) = K(x, U) @ vw

    def _solve_weights_whitened(self, AR: np.ndarray) -> np.ndarray:
        """``Lp^{-T} B^{-1} A R / sigma^2`` given ``A R = Lp^{-1} K_ux R``."""
        c = lower_solve(self.LB, AR / self.sigma**2)
        return upper_solve(self.Lp, upper_solve(self.LB, c))

    def kernel(self, X: np.ndarray) -> np.ndarray:
        return kernel_matrix(self.cov_func, X, self.landmarks)

    def mean(self, X: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        K = self.kernel(X) if K is None else K
        return self.mu + K @ self.weights

    def covariance_diag(
        self, X: np.ndarray, K: np.ndarray | None = None, As: np.ndarray | None = None
    ) -> np.ndarray:
        """Posterior variance of the latent mean at each row of ``X`` (same for all genes).

        ``K = k(X, U)`` and ``As = Lp^{-1} K^T`` may be passed in when another
        model on the same landmarks and kernel has computed them already.
        """
        K = self.kernel(X) if K is None else K
        As = lower_solve(self.Lp, K.T) if As is None else As
        C = lower_solve(self.LB, As)
        var = kernel_diag(self.cov_func, X) - np.sum(As**2, axis=0) + np.sum(C**2, axis=0)
        return np.maximum(var, 0.0)

    def covariance_full(self, X: np.ndarray) -> np.ndarray:
        """Full posterior covariance between the rows of ``X`` (for a few hundred rows)."""
        K = self.kernel(X)
        As = lower_solve(self.Lp, K.T)
        C = lower_solve(self.LB, As)
        cov = kernel_matrix(self.cov_func, X, X) - As.T @ As + C.T @ C
        return 0.5 * (cov + cov.T)

    def obs_variance(self, X: np.ndarray, K: np.ndarray | None = None, eps: float = 0.0):
        if self.variance_weights is None:
            return 0.0
        K = self.kernel(X) if K is None else K
        return np.maximum(K @ self.variance_weights, eps)


def fit_function(
    X: np.ndarray,
    Y: np.ndarray,
    landmarks: np.ndarray,
    cov_func,
    *,
    sigma: float = 1.0,
    mu: float | np.ndarray = 0.0,
    mean_weights: np.ndarray | None = None,
    variance_mean_weights: np.ndarray | None = None,
    jitter: float = 1e-6,
    obs_variance: bool = True,
    batch_size: int | None = 10_000,
    progress: bool = False,
) -> FunctionFit:
    """Fit the landmark GP to every column of ``Y`` (dense, scipy sparse or a
    :class:`~kompot.core.cell_rows.CellRows`, read one block of cells at a time).

    The prior mean is ``mu`` plus, with ``mean_weights`` (m, G), the function
    ``K(x, landmarks) @ mean_weights`` on the same landmarks and kernel;
    ``variance_mean_weights`` does the same for the smoothed empirical
    variance, whose prior mean is otherwise 0. Passing another fit's weights
    (e.g. of a pooled fit) makes this fit revert to that one where it has few
    cells, instead of to a constant.
    """
    return fit_function_parts(
        [(X, Y)], landmarks, cov_func, sigma=sigma, mu=mu, mean_weights=mean_weights,
        variance_mean_weights=variance_mean_weights, jitter=jitter, obs_variance=obs_variance,
        batch_size=batch_size, progress=progress,
    )


def fit_function_parts(
    parts,
    landmarks: np.ndarray,
    cov_func,
    *,
    sigma: float = 1.0,
    mu: float | np.ndarray = 0.0,
    mean_weights: np.ndarray | None = None,
    variance_mean_weights: np.ndarray | None = None,
    jitter: float = 1e-6,
    obs_variance: bool = True,
    batch_size: int | None = 10_000,
    progress: bool = False,
) -> FunctionFit:
    """:func:`fit_function` on the cells of several ``(X, Y)`` parts together.

    The parts (e.g. the two conditions, for a pooled fit) are accumulated block
    by block and never stacked, so no copy of the expression is made.
    """
    landmarks = np.asarray(landmarks, np.float64)
    sigma = _check_sigma(sigma)
    m = landmarks.shape[0]
    parts = [(np.asarray(X, np.float64), Y) for X, Y in parts]
    n_genes = parts[0][1].shape[1]
    mean_weights = _check_prior(mean_weights, (m, n_genes), "mean_weights")
    variance_mean_weights = _check_prior(variance_mean_weights, (m, n_genes),
                                         "variance_mean_weights")
    Lp = landmark_cholesky(landmarks, cov_func, jitter)
    n = sum(X.shape[0] for X, _ in parts)
    # The whitened kernel blocks are reused by the empirical-variance pass
    # when they fit in memory; otherwise they are recomputed there.
    keep = obs_variance and n * m * 8 <= _WHITENED_CACHE_BYTES
    blocks = []  # (X, Y, slice, cached whitened kernel or None)
    AAt = np.zeros((m, m))
    AR = np.zeros((m, n_genes))
    device_cache = {} if backend.uses_jax() and _is_plain_matern52(cov_func) else None
    for X, Y in parts:
        for s in block_slices(X.shape[0], batch_size, progress=progress, desc="fit expression GP"):
            A = _whitened(X[s], Lp, cov_func, landmarks, device_cache)
            gram, products = gram_and_products(A, _rows(Y, s, mu))
            AAt += gram
            AR += products
            blocks.append((X, Y, s, A if keep else None))
    fit = fit_from_sums(AAt, AR, landmarks, cov_func, Lp, sigma=sigma, mu=mu,
                        mean_weights=mean_weights, n_obs=n)
    if obs_variance:
        _fit_empirical_variance(fit, blocks, AAt, variance_mean_weights, device_cache)
    return fit


def fit_from_sums(AAt, AR, landmarks, cov_func, Lp, *, sigma: float, mu, mean_weights,
                  n_obs: int, LB: np.ndarray | None = None) -> FunctionFit:
    """The fit of cells from their sums ``A A^T`` and ``A (Y - mu)`` (``A`` the whitened kernel).

    This is all of :func:`fit_function_parts` after its pass over the cells
    but the empirical variance (:func:`set_empirical_variance`), so that
    refits of cells whose sums are known already (the permutation null)
    need no pass. ``LB``, when known, is ``chol(I + A A^T / sigma^2)``.
    """
    if mean_weights is not None:
        # Fit the residual from the prior mean function: A (y - A^T Lp^T w0).
        AR = AR - AAt @ (Lp.T @ mean_weights)
    if LB is None:
        LB = safe_cholesky(np.eye(AAt.shape[0]) + AAt / sigma**2, what="expression GP system")
    fit = FunctionFit(landmarks, cov_func, Lp, LB, None, mu, sigma, n_obs)
    fit.weights = fit._solve_weights_whitened(AR)
    if mean_weights is not None:
        fit.weights += mean_weights
    return fit


def set_empirical_variance(fit: FunctionFit, AR2: np.ndarray, AAt: np.ndarray,
                           variance_mean_weights) -> None:
    """Set ``fit.variance_weights`` from ``AR2``, the cells' sum of smoothed squared residuals."""
    if variance_mean_weights is not None:
        AR2 = AR2 - AAt @ (fit.Lp.T @ variance_mean_weights)
    fit.variance_weights = fit._solve_weights_whitened(AR2)
    if variance_mean_weights is not None:
        fit.variance_weights += variance_mean_weights


def _fit_empirical_variance(fit: FunctionFit, blocks, AAt, variance_mean_weights,
                            device_cache) -> None:
    """Set ``fit.variance_weights``: the smoothed, leverage-corrected squared residuals.

    Leverage h_i = k_i^T (sigma^2 K_uu + K_ux K_xu)^{-1} k_i, then HC3-corrected
    squared residuals, smoothed by a second GP with the same factorisation.
    In whitened form h_i = a_i^T (sigma^2 I + A A^T)^{-1} a_i = |LB^{-1} a_i|^2 / sigma^2,
    and the fitted mean at the cells is mu + A^T (Lp^T weights).
    """
    Lp, LB, mu, sigma = fit.Lp, fit.LB, fit.mu, fit.sigma
    whitened_weights = Lp.T @ fit.weights
    AR2 = np.zeros(fit.weights.shape)
    for X, Y, s, A in blocks:
        if A is None:
            A = _whitened(X[s], Lp, fit.cov_func, fit.landmarks, device_cache)
        AR2 += smoothed_squared_residuals(A, LB, whitened_weights, _rows(Y, s, mu), sigma)
    set_empirical_variance(fit, AR2, AAt, variance_mean_weights)


def gram_and_products(A, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A A^T`` and ``A R`` of one block of cells (``A`` in numpy or on the JAX device)."""
    if isinstance(A, backend.KernelBlock):
        return A.gram(), A.times(R)
    return A @ A.T, A @ R


def leverages(A: np.ndarray, LB: np.ndarray, sigma: float) -> np.ndarray:
    """Each cell's leverage ``|LB^{-1} a_i|^2 / sigma^2`` (numpy ``A``)."""
    return np.sum(lower_solve(LB, A) ** 2, axis=0) / sigma**2


def smoothed_squared_residuals(A, LB, whitened_weights, R, sigma: float,
                                h: np.ndarray | None = None) -> np.ndarray:
    """``A r2``, with ``r2`` the block's HC3-corrected squared residuals.

    ``h``, the cells' :func:`leverages`, may be passed when known (numpy ``A`` only).
    """
    if isinstance(A, backend.KernelBlock):
        return A.smoothed_squared_residuals(LB, whitened_weights, R, sigma)
    h = leverages(A, LB, sigma) if h is None else h
    if precision.is_mixed():
        # Both products in float32 (twice as fast); the sum over blocks stays float64.
        A, whitened_weights = A.astype(np.float32), whitened_weights.astype(np.float32)
        R = R.astype(np.float32, copy=False)
    # In place: one block of cells x genes besides the expression block.
    r2 = A.T @ whitened_weights
    np.subtract(R, r2, out=r2)
    r2 **= 2
    r2 /= (np.maximum(1.0 - h, 1e-12) ** 2).astype(r2.dtype)[:, None]
    return (A @ r2).astype(np.float64, copy=False)


def landmark_cholesky(landmarks: np.ndarray, cov_func, jitter: float) -> np.ndarray:
    """``chol(K_uu + jitter I)``."""
    m = landmarks.shape[0]
    return safe_cholesky(
        kernel_matrix(cov_func, landmarks, landmarks) + jitter * np.eye(m),
        what="landmark covariance",
    )


def _check_prior(weights, shape, name):
    if weights is None:
        return None
    weights = np.asarray(weights, np.float64)
    if weights.shape != shape:
        raise ValueError(
            f"{name} must have shape (n_landmarks, n_genes) = {shape}, got {weights.shape}."
        )
    return weights


def _check_sigma(sigma) -> float:
    if not np.isscalar(sigma) and np.ndim(sigma) != 0:
        raise ValueError("sigma must be a single positive number (one noise level for all genes).")
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(
            f"sigma must be positive, got {sigma}: with sigma=0 the landmark GP divides by zero."
        )
    return sigma


def _whitened(X: np.ndarray, Lp: np.ndarray, cov_func, landmarks: np.ndarray,
              device_cache: dict | None = None):
    # A = Lp^{-1} K_ux keeps A A^T numerically PSD (see density.py).
    if device_cache is not None:  # kept on the JAX device
        return backend.KernelBlock(X, landmarks, float(cov_func.ls), Lp, device_cache,
                                   keep_kernel=False)
    return lower_solve(Lp, kernel_matrix(cov_func, X, landmarks).T)


def _rows(Y, s, mu) -> np.ndarray:
    # One block of cells, densified alone (Y may be sparse or a CellRows view);
    # without a constant prior mean no second copy is made.
    block = dense_rows(Y, s)
    return block if np.ndim(mu) == 0 and mu == 0 else block - mu
