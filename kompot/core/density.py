"""Log-density Gaussian process on landmarks: Newton MAP and Laplace posterior.

The model is mellon's nearest-neighbour density model with a fixed landmark
basis: ``f = mu + K_xu Lp^{-T} z`` with ``z ~ N(0, I)``, ``Lp Lp^T = K_uu``,
and the likelihood of the nearest-neighbour distance ``r_i`` in ``d``
dimensions, ``sum_i f_i + (d-1) log r_i - exp(f_i + d log r_i + c_d)``.

The negative log posterior is convex in ``z``, so a damped Newton method
with the exact Hessian ``H = I + Lp^{-1} K_ux diag(e^{f+V}) K_xu Lp^{-T}``
converges in a handful of steps where a quasi-Newton method needs hundreds.
The same ``H`` then gives the Laplace posterior covariance ``H^{-1}`` of ``z``
in full, instead of only its diagonal.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .._warnings import KompotRuntimeWarning
from ..parallel import thread_map
from . import precision
from .blocks import block_slices
from .kernel import kernel_matrix
from .linalg import lower_solve, safe_cholesky, upper_solve

logger = logging.getLogger("kompot")

# Keep K(x, U) in memory below this many bytes, recompute it per block above.
_KERNEL_CACHE_BYTES = 2 * 1024**3


def log_density_mle(nn_distances: np.ndarray, d: float) -> np.ndarray:
    """Per-cell maximum-likelihood log density from the nearest-neighbour distance."""
    return gammaln(d / 2 + 1) - (d / 2) * np.log(np.pi) - d * np.log(nn_distances)


def prior_mean(nn_distances: np.ndarray, d: float) -> float:
    """mellon's prior mean: the 1st percentile of the per-cell MLE minus 10."""
    return float(np.quantile(log_density_mle(nn_distances, d), 0.01) - 10.0)


def fractal_dimension(X: np.ndarray) -> float:
    """Mean local (fractal) dimension of the rows of ``X``.

    mellon's estimate (:func:`mellon.parameters.compute_d_factal`: the slope
    of log neighbour count against log radius over 10 neighbours, averaged
    over 500 seeded cells), taken on the rows in canonical order so that the
    result does not depend on how the cells are ordered.
    """
    from mellon.parameters import compute_d_factal

    from .landmarks import canonical_order

    X = np.asarray(X, np.float64)
    if X.shape[0] < 11:
        raise ValueError(
            f"A fractal dimension needs more than 10 cells, got {X.shape[0]}; pass a number."
        )
    return float(compute_d_factal(X[canonical_order(X)]))


def _best_offset(log_e: np.ndarray, direction: np.ndarray, n_steps: int = 30) -> float:
    """Scalar c minimising ``sum(exp(log_e - c * direction) + c * direction)`` (1-D Newton)."""
    c = 0.0
    for _ in range(n_steps):
        e = np.exp(np.clip(log_e - c * direction, -700, 700))
        grad = np.sum(direction * (1.0 - e))
        hess = np.sum(direction**2 * e)
        if hess <= 0:
            break
        step = grad / hess
        c -= step
        if abs(step) < 1e-10:
            break
    return c


@dataclass
class DensityFit:
    """The fitted log-density GP, in landmark coordinates."""

    z: np.ndarray  # MAP of the whitened latent, (m,)
    weights: np.ndarray  # Lp^{-T} z: mean(x) = mu + K(x, U) @ weights
    uncertainty_factor: np.ndarray  # W = Lp^{-T} R^{-T}, H = R R^T: var = |K(x, U) W|^2
    Lp: np.ndarray  # Cholesky factor of K(U, U) + jitter
    mu: float
    n_obs: int
    n_iter: int


class WhitenedKernelBlocks:
    """``L = K(X, U) Lp^{-T}`` in cell blocks, cached when it fits in memory.

    Working with the whitened kernel keeps every Gram matrix ``L^T D L``
    numerically positive semi-definite, which ``Lp^{-1} (K^T D K) Lp^{-T}``
    is not when ``K(U, U)`` is ill-conditioned (long length scales).
    """

    def __init__(self, X, landmarks, cov_func, Lp, batch_size):
        self.X, self.U, self.cov_func, self.Lp = X, landmarks, cov_func, Lp
        n, m = X.shape[0], landmarks.shape[0]
        self.slices = list(block_slices(n, batch_size))
        self.cache = None
        dtype = _cache_dtype(n * m)
        if dtype is not None:
            self.cache = list(thread_map(lambda s: self._compute(s).astype(dtype, copy=False),
                                         self.slices))

    def _compute(self, s):
        return lower_solve(self.Lp, kernel_matrix(self.cov_func, self.X[s], self.U).T).T

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int):
        """Block ``i``: its slice of the cells and its ``L`` (float64)."""
        s = self.slices[i]
        return s, (self._compute(s) if self.cache is None
                   else self.cache[i].astype(np.float64, copy=False))

    def __iter__(self):
        for i in range(len(self.slices)):
            yield self[i]


def _cache_dtype(entries: int):
    """The dtype the kernel is kept in, or ``None`` to compute it again on every pass.

    Double while it fits the cache; in mixed precision single when only that
    fits: every pass then reads the same rounded kernel, in double arithmetic,
    instead of computing the kernel and its solve again (a pass's costliest part).
    """
    if entries * 8 <= _KERNEL_CACHE_BYTES:
        return np.float64
    if precision.is_mixed() and entries * 4 <= _KERNEL_CACHE_BYTES:
        return np.float32
    return None


def map_blocks(blocks, func):
    """``func(s, L)`` for each block, yielded in block order.

    The blocks of a :class:`WhitenedKernelBlocks` are computed (or read)
    and passed to ``func`` in threads (:func:`~kompot.parallel.thread_map`);
    any other iterable of blocks is visited in this thread.
    """
    if isinstance(blocks, WhitenedKernelBlocks):
        return thread_map(lambda i: func(*blocks[i]), range(len(blocks)))
    return (func(s, L) for s, L in blocks)


def gradient_and_hessian(blocks, residual: np.ndarray, curvature: np.ndarray, m: int):
    """``L^T residual`` and ``L^T diag(curvature) L``, accumulated over cell blocks."""
    def block(s, L):
        Lc = L * np.sqrt(curvature[s])[:, None]
        return L.T @ residual[s], Lc.T @ Lc

    g = np.zeros(m)
    H = np.zeros((m, m))
    for g_block, H_block in map_blocks(blocks, block):
        g += g_block
        H += H_block
    return g, H


def fit_density(
    X: np.ndarray,
    landmarks: np.ndarray,
    cov_func,
    *,
    d: float,
    mu: float,
    nn_distances: np.ndarray,
    jitter: float = 1e-6,
    tol: float = 1e-9,
    max_iter: int = 100,
    batch_size: int | None = 20_000,
) -> DensityFit:
    """MAP log density on ``X`` with a Laplace posterior, all on ``landmarks``."""
    X = np.asarray(X, np.float64)
    landmarks = np.asarray(landmarks, np.float64)
    m = landmarks.shape[0]
    V, Vdr = _log_volumes(nn_distances, d)

    Kuu = kernel_matrix(cov_func, landmarks, landmarks)
    Lp = safe_cholesky(Kuu + jitter * np.eye(m), what="landmark covariance")
    blocks = WhitenedKernelBlocks(X, landmarks, cov_func, Lp, batch_size)
    posterior = _Posterior(blocks, X.shape[0], mu, V, Vdr)
    z, R = _ridge_start(posterior, log_density_mle(nn_distances, d) - mu, m)
    z, R, n_iter = _newton(posterior, z, R, m, tol, max_iter)

    # Laplace covariance of z is H^{-1} = R^{-T} R^{-1}; map it to weight space.
    W = upper_solve(Lp, upper_solve(R, np.eye(m)))
    return DensityFit(
        z=z,
        weights=upper_solve(Lp, z),
        uncertainty_factor=W,
        Lp=Lp,
        mu=float(mu),
        n_obs=X.shape[0],
        n_iter=n_iter,
    )


def _log_volumes(nn_distances: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Log volume of each cell's nearest-neighbour ball, and the log of its derivative in r."""
    const = (d / 2) * np.log(np.pi) - gammaln(d / 2 + 1)
    V = d * np.log(nn_distances) + const
    Vdr = np.log(d) + (d - 1) * np.log(nn_distances) + const
    return V, Vdr


class _Posterior:
    """The latent log density at the cells and the negative log posterior of ``z``."""

    def __init__(self, blocks: WhitenedKernelBlocks, n: int, mu: float, V, Vdr):
        self.blocks, self.n, self.mu, self.V, self.Vdr = blocks, n, mu, V, Vdr

    def latent(self, z: np.ndarray) -> np.ndarray:
        """``f = mu + L z`` at every cell."""
        f = np.empty(self.n)
        for s, L in self.blocks:
            f[s] = L @ z
        return f + self.mu

    def loss(self, z: np.ndarray, f: np.ndarray) -> float:
        return 0.5 * z @ z - np.sum(f + self.Vdr - np.exp(f + self.V))


def _ridge_start(posterior: _Posterior, target: np.ndarray, m: int):
    """Starting ``z`` of the Newton iterations, and the ridge system's Cholesky factor.

    Ridge start as in mellon, argmin |L z - (mle - mu)|^2 + |z|^2, then
    shifted by the best constant: the smoothed MLE sits above the optimum
    (the optimum is a local soft-minimum of the noisy per-cell MLE), and
    Newton only walks down an exponential by about one unit per step.
    """
    H_ridge = np.zeros((m, m))
    rhs = np.zeros((m, 2))
    for s, L in posterior.blocks:
        H_ridge += L.T @ L
        rhs += L.T @ np.column_stack([target[s], np.ones(s.stop - s.start)])
    R = safe_cholesky(np.eye(m) + H_ridge, what="ridge system")
    z_target, z_one = upper_solve(R, lower_solve(R, rhs)).T
    mu = posterior.mu
    f_target, f_one = posterior.latent(z_target) - mu, posterior.latent(z_one) - mu
    return z_target - _best_offset(f_target + mu + posterior.V, f_one) * z_one, R


def _newton(posterior: _Posterior, z: np.ndarray, R: np.ndarray, m: int, tol: float,
            max_iter: int):
    """Damped Newton from ``z`` to the MAP; returns it, the last Hessian's Cholesky, the steps."""
    f = posterior.latent(z)
    current = posterior.loss(z, f)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        e = np.exp(f + posterior.V)
        gz, Hz = gradient_and_hessian(posterior.blocks, 1.0 - e, e, m)
        grad = z - gz
        R = safe_cholesky(np.eye(m) + Hz, what="Laplace Hessian")
        step = upper_solve(R, lower_solve(R, grad))
        decrement = float(grad @ step)
        logger.debug("density Newton %d: loss %.6g decrement %.3g", n_iter, current, decrement)
        if decrement / 2 <= tol * max(1.0, abs(current)):
            break
        z, f, current = _line_search(posterior, z, step, current, decrement)
    else:
        warnings.warn(f"Density Newton iterations did not converge in {max_iter} steps; "
                      "results may be inaccurate.", KompotRuntimeWarning, stacklevel=4)
    return z, R, n_iter


def _line_search(posterior: _Posterior, z, step, current: float, decrement: float):
    """Backtracking (Armijo) along ``-step``: the new ``z``, its latent and its loss."""
    t = 1.0
    while True:
        z_new = z - t * step
        f_new = posterior.latent(z_new)
        new = posterior.loss(z_new, f_new)
        if np.isfinite(new) and new <= current - 0.25 * t * decrement:
            return z_new, f_new, new
        t *= 0.5
        if t < 1e-10:
            raise np.linalg.LinAlgError(
                "The density optimisation could not make progress; check for "
                "duplicated or extreme coordinates in the cell states."
            )
