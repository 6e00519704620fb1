"""The log density ratio of two conditions as a Gaussian process on condition labels.

With each condition's density normalised by its cell count, the log ratio
``log p2(x) - log p1(x)`` equals ``logit P(condition 2 | x) - log(n2 / n1)``.
A Gaussian-process classifier on the pooled cells estimates it directly:
``y_i = 1`` for cells of condition 2, ``P(y_i = 1) = sigmoid(b + f(x_i))``
with the offset ``b = log(n2 / n1)`` fixed, so that the prior says "no
change anywhere", and ``f = a * L w`` on the whitened landmark basis
``L = K(X, U) Lp^{-T}`` with ``w ~ N(0, I)``. Then ``f`` *is* the log ratio.

The negative log posterior is convex in ``w``; Newton's method with the exact
Hessian ``H = I + a^2 L^T diag(pi (1 - pi)) L`` converges in a few steps and
``H^{-1}`` is the Laplace posterior covariance of ``w``. The Laplace
approximation of the marginal likelihood (the evidence) ranks
hyper-parameters ``(a, ls)`` without held-out data.

Replicate samples: the leave-one-sample-out (jackknife) refits, each taken
as two Newton steps from the full fit, give the between-sample spread of the
log ratio at every cell state (:func:`sample_jackknife`).

Everything here works on arrays; ``blocks`` is any re-iterable of
``(slice, L_block)`` pairs covering the cells (e.g.
:class:`kompot.core.density.WhitenedKernelBlocks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from .density import gradient_and_hessian, map_blocks
from .linalg import lower_solve, safe_cholesky, upper_solve

logger = logging.getLogger("kompot")

# Memory for the per-sample m x m Hessians of the jackknife, held at once.
_JACKKNIFE_BYTES = 512 * 1024**2
# A Newton step with a Hessian from an earlier iterate is kept as long as it
# cuts the Newton decrement at least this much (else the Hessian is rebuilt).
_STALE_HESSIAN_RATE = 0.1


@dataclass(frozen=True)
class LogRatioFit:
    """MAP and Laplace posterior of the whitened weights of the log ratio."""

    w: np.ndarray  # MAP of the whitened weights, (m,)
    chol: np.ndarray  # lower Cholesky factor R of the Hessian H = R R^T at the MAP
    amplitude: float  # prior standard deviation a of f
    offset: float  # b = log(n2 / n1)
    log_evidence: float  # Laplace approximation of log p(y | a, ls)
    n_iter: int
    converged: bool


def _latent(blocks, w: np.ndarray, n: int) -> np.ndarray:
    """``L w`` over all cells."""
    out = np.empty(n)
    for s, Lw in map_blocks(blocks, lambda s, L: (s, L @ w)):
        out[s] = Lw
    return out


def _gradient(blocks, residual: np.ndarray, m: int) -> np.ndarray:
    """``L^T residual`` over all cells."""
    g = np.zeros(m)
    for part in map_blocks(blocks, lambda s, L: L.T @ residual[s]):
        g += part
    return g


def _log_likelihood(y: np.ndarray, eta: np.ndarray) -> float:
    """Bernoulli log likelihood of the labels at log-odds ``eta``."""
    return float(np.sum(log_expit(np.where(y > 0, eta, -eta))))


def fit_log_ratio(
    blocks,
    y: np.ndarray,
    *,
    amplitude: float,
    offset: float,
    n_landmarks: int,
    w0: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 50,
) -> LogRatioFit:
    """Newton MAP of the label GP and its Laplace evidence.

    Parameters
    ----------
    blocks
        Re-iterable of ``(slice, L_block)``: the whitened landmark features of
        every cell, ``L_block`` of shape ``(cells in block, n_landmarks)``.
    y
        1 for cells of condition 2, 0 for condition 1.
    amplitude
        Prior standard deviation ``a`` of the log ratio.
    offset
        Fixed log-odds ``b`` where the log ratio is 0, ``log(n2 / n1)``.
    w0
        Starting weights (a warm start from a nearby fit); zeros by default.
    """
    y = np.asarray(y, np.float64)
    n, m, a = y.size, int(n_landmarks), float(amplitude)
    w = np.zeros(m) if w0 is None else np.array(w0, np.float64)

    def objective(w, eta):
        return 0.5 * w @ w - _log_likelihood(y, eta)

    eta = offset + a * _latent(blocks, w, n)
    current = objective(w, eta)
    converged = False
    n_iter = 0
    R, fresh, fresh_enough, last_decrement = None, False, False, np.inf
    for n_iter in range(1, max_iter + 1):
        pi = expit(eta)
        # Lazy Newton: the Hessian (n m^2, the costly part) is rebuilt only when
        # the previous step with it did not shrink the Newton decrement fast.
        if not fresh_enough:
            g, H = gradient_and_hessian(blocks, y - pi, pi * (1.0 - pi), m)
            R = safe_cholesky(np.eye(m) + (a * a) * H, what="log-ratio Hessian")
            fresh = True
        else:
            g = _gradient(blocks, y - pi, m)
            fresh = False
        grad = w - a * g
        step = upper_solve(R, lower_solve(R, grad))
        decrement = float(grad @ step)
        logger.debug("log-ratio Newton %d: objective %.6g decrement %.3g", n_iter, current,
                     decrement)
        if decrement / 2 <= tol * max(1.0, abs(current)):
            converged = True
            break
        fresh_enough = decrement <= _STALE_HESSIAN_RATE * last_decrement
        last_decrement = decrement
        t = 1.0
        while True:  # backtracking (Armijo); the objective is convex, so this ends
            w_new = w - t * step
            eta_new = offset + a * _latent(blocks, w_new, n)
            new = objective(w_new, eta_new)
            if new <= current - 0.25 * t * decrement or t < 1e-8:
                break
            t *= 0.5
        w, eta, current = w_new, eta_new, new
    if not (converged and fresh):  # the Laplace posterior needs the Hessian at the MAP
        pi = expit(eta)
        _, H = gradient_and_hessian(blocks, y - pi, pi * (1.0 - pi), m)
        R = safe_cholesky(np.eye(m) + (a * a) * H, what="log-ratio Hessian")
    # Laplace: log p(y) ~ log p(y | w*) - |w*|^2 / 2 - log det(H) / 2.
    log_evidence = -current - float(np.sum(np.log(np.diag(R))))
    return LogRatioFit(w=w, chol=R, amplitude=a, offset=float(offset),
                       log_evidence=log_evidence, n_iter=n_iter, converged=converged)


def ratio_moments(fit: LogRatioFit, Phi: np.ndarray, prior_residual: np.ndarray):
    """Posterior mean and variance of the log ratio at cells with features ``Phi``.

    ``Phi`` holds the whitened features ``Lp^{-1} k(U, x)`` as rows;
    ``prior_residual`` is the prior variance they leave unexplained,
    ``1 - |Phi_x|^2`` (the Nyström residual), added with the amplitude's scale.
    """
    a = fit.amplitude
    mean = a * (Phi @ fit.w)
    var = a * a * (np.sum(np.square(lower_solve(fit.chol, Phi.T)), axis=0) + prior_residual)
    return mean, var


@dataclass(frozen=True)
class Jackknife:
    """Leave-one-sample-out weight shifts ``w_(-k) - w`` and the samples' conditions."""

    shifts: np.ndarray  # (m, K)
    condition: np.ndarray  # (K,) 0 or 1
    samples: np.ndarray  # (K,) sample labels


def _rows_by_sample(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples present in ``codes`` (sorted) and the rows grouped by sample."""
    rows = np.argsort(codes, kind="stable")
    return np.unique(codes), rows


def _starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Index of the first row of every run of equal codes."""
    return np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])


def _per_sample_hessians(blocks, codes, curvature, ks, m):
    """``L_k^T D_k L_k`` for the samples ``ks``, one pass over the cell blocks."""
    H = np.zeros((len(ks), m, m))
    for s, L in blocks:
        c = codes[s]
        for j, k in enumerate(ks):
            rows = c == k
            if rows.any():
                Lc = L[rows] * np.sqrt(curvature[s][rows])[:, None]
                H[j] += Lc.T @ Lc
    return H


def _second_step(blocks, y, codes, fit, ks, shifts, offsets, chols):
    """Newton corrections of the leave-one-out weights, all samples ``ks`` in one pass."""
    a = fit.amplitude
    W = fit.w[:, None] + np.nan_to_num(shifts)  # (m, len(ks))

    def block(s, L):
        eta = offsets[None, :] + a * (L @ W)  # (block, len(ks))
        resid = y[s][:, None] - expit(eta)
        resid[codes[s][:, None] == ks[None, :]] = 0.0  # each sample's own cells are left out
        return L.T @ resid

    grad = W.copy()
    for part in map_blocks(blocks, block):
        grad -= a * part
    out = np.zeros_like(W)
    for j in range(len(ks)):
        if np.all(np.isfinite(shifts[:, j])):
            out[:, j] = -upper_solve(chols[j], lower_solve(chols[j], grad[:, j]))
    return out


def sample_jackknife(blocks, y: np.ndarray, sample_codes: np.ndarray, fit: LogRatioFit) -> Jackknife:
    """Leave-one-sample-out refits of ``fit``, two Newton steps each.

    Leaving sample ``k`` out changes the data and the offset (the condition
    sizes). From the full MAP ``w`` one Newton step on the reduced objective
    gives ``w_(-k) = w - H_(-k)^{-1} g_(-k)``, with ``H_(-k) = H - a^2 L_k^T
    D_k L_k`` and the offset's effect on the gradient taken to first order; a
    second step with the same Hessian and the exact gradient brings the
    shift to within about 1 % of a full refit. The cost is two passes over
    the cells plus one ``m x m`` Cholesky per sample.
    """
    y = np.asarray(y, np.float64)
    codes = np.asarray(sample_codes)
    labels, codes = np.unique(codes, return_inverse=True)
    K, m, a = labels.size, fit.w.size, fit.amplitude
    n = y.size
    eta = fit.offset + a * _latent(blocks, fit.w, n)
    pi = expit(eta)
    curvature = pi * (1.0 - pi)
    residual = y - pi
    # Per-sample pieces: L_k^T r_k and L_k^T D_k 1 in one pass; the m x m
    # L_k^T D_k L_k for as many samples at a time as fit in _JACKKNIFE_BYTES.
    def block(s, L):
        ks, rows = _rows_by_sample(codes[s])
        starts = _starts(codes[s][rows])
        return (ks, np.add.reduceat(L[rows] * residual[s][rows, None], starts),
                np.add.reduceat(L[rows] * curvature[s][rows, None], starts))

    g_k = np.zeros((K, m))
    d_k = np.zeros((K, m))
    for ks, g_block, d_block in map_blocks(blocks, block):
        g_k[ks] += g_block
        d_k[ks] += d_block
    # The full Hessian I + a^2 L^T D L at the MAP is the fit's R R^T.
    H_full = fit.chol @ fit.chol.T
    g_all, d_all = g_k.sum(0), d_k.sum(0)
    n1 = float(np.sum(y == 0))
    n2 = float(n - n1)
    cond = np.zeros(K, dtype=int)
    cond[codes[y > 0]] = 1
    if np.any(np.bincount(codes[y > 0], minlength=K) * np.bincount(codes[y == 0], minlength=K)):
        raise ValueError("A sample holds cells of both conditions; samples must be nested in them.")
    counts = np.bincount(codes, minlength=K).astype(float)
    shifts = np.zeros((m, K))
    offsets = np.full(K, fit.offset)
    base_grad = fit.w - a * g_all  # ~0 at the MAP; kept for exactness
    group = max(1, int(_JACKKNIFE_BYTES // (8 * m * m)))
    for start in range(0, K, group):
        ks = np.arange(start, min(start + group, K))
        H_k = _per_sample_hessians(blocks, codes, curvature, ks, m)
        chols = np.zeros_like(H_k)
        for j, k in enumerate(ks):
            n1k, n2k = (n1, n2 - counts[k]) if cond[k] else (n1 - counts[k], n2)
            if n1k <= 0 or n2k <= 0:
                shifts[:, k] = np.nan  # the condition's only sample: nothing to leave out
                chols[j] = np.eye(m)
                continue
            db = np.log(n2k / n1k) - fit.offset
            # Gradient of the reduced objective at w: drop sample k's terms, move the offset.
            grad = base_grad + a * g_k[k] + a * db * (d_all - d_k[k])
            chols[j] = safe_cholesky(H_full - (a * a) * H_k[j], what="jackknife Hessian")
            shifts[:, k] = -upper_solve(chols[j], lower_solve(chols[j], grad))
            offsets[k] = fit.offset + db
        # A second step with the same Hessians and the exact reduced gradients.
        shifts[:, ks] += _second_step(blocks, y, codes, fit, ks, shifts[:, ks], offsets[ks],
                                      chols)
    return Jackknife(shifts=shifts, condition=cond, samples=labels)


def jackknife_variance(jk: Jackknife, Phi: np.ndarray, amplitude: float):
    """Between-sample variance of the log ratio at cells ``Phi`` and its degrees of freedom.

    The jackknife is stratified by condition: for condition ``c`` with
    ``K_c`` samples, ``v_c = (K_c - 1) / K_c * sum_k (d_k - mean_c d)^2``
    over its leave-one-out shifts ``d_k``; for a difference of condition
    means this is Welch's ``s_c^2 / K_c``. The degrees of freedom are
    Welch–Satterthwaite's, per cell. A condition with a single sample takes
    the other condition's per-sample variance ``s^2`` (``v = s^2 / 1``).
    """
    D = amplitude * (Phi @ np.nan_to_num(jk.shifts))  # (cells, K): log-ratio shift per sample
    sizes = [int(np.sum(jk.condition == c)) for c in (0, 1)]
    parts, dfs = {}, {}
    for c in (0, 1):
        if sizes[c] >= 2:
            Dc = D[:, jk.condition == c]
            Kc = sizes[c]
            parts[c] = (Kc - 1) / Kc * np.sum(np.square(Dc - Dc.mean(1, keepdims=True)), axis=1)
            dfs[c] = Kc - 1
    if not parts:
        raise ValueError("The jackknife needs a condition with at least 2 samples.")
    for c in (0, 1):
        if c not in parts:  # borrow: s^2 = v_other * K_other, over this condition's samples
            other = 1 - c
            parts[c] = parts[other] * sizes[other] / max(sizes[c], 1)
            dfs[c] = dfs[other]
    var = parts[0] + parts[1]
    denom = parts[0] ** 2 / dfs[0] + parts[1] ** 2 / dfs[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(denom > 0, var * var / denom, float(dfs[0] + dfs[1]))
    return var, np.clip(df, min(dfs.values()), dfs[0] + dfs[1])
