"""Fixed covariate effects (batch, sex, age) in the label GP of the log ratio.

The label model of :mod:`kompot.core.log_ratio` gains a linear term in the
covariates ``z`` of each cell:

    logit P(condition 2 | x, z) = b + f(x) + z^T beta,   beta ~ N(0, s^2 I).

``z`` is centred over the fitted cells, so ``z^T beta`` averages 0 and the
fixed offset ``b = log(n2 / n1)`` keeps its meaning ("no change" is
``f = 0``); ``beta`` absorbs how much the covariate shifts the odds of
condition 2 (e.g. a batch holding more treated samples), and ``f`` is the
condition's log ratio within a covariate level. ``beta`` is estimated with
``f`` in the same Newton MAP: in whitened form ``beta = s v`` with ``v ~ N(0,
I)``, so the covariates are ``p`` more feature columns ``(s / a) z`` next to
the landmark features ``L`` and every routine of the label GP applies
unchanged to the ``m + p`` weights ``[w; v]``. The Laplace posterior of
``f`` at a cell is then marginal over ``beta``: its features are ``[Phi, 0]``.

Array in, array out, like :mod:`kompot.core.log_ratio`.
"""

from __future__ import annotations

import numpy as np

from .log_ratio import Jackknife, LogRatioFit, fit_log_ratio

# Prior standard deviation of a covariate effect on the log odds of condition 2
# (per unit of the covariate): weak, it only keeps a separated level finite.
COVARIATE_PRIOR_SD = 5.0


class CovariateBlocks:
    """``(slice, [L, scale * Z])`` blocks of the cells in ``keep``, re-indexed to those cells.

    ``blocks`` yields the landmark features ``L`` of all cells; ``Z`` holds
    one row per cell. With ``keep`` (a boolean mask) only those cells are
    yielded, and the slices index the kept cells in order.
    """

    def __init__(self, blocks, Z: np.ndarray, scale: float, keep: np.ndarray | None = None):
        self.blocks, self.Z, self.scale, self.keep = blocks, np.asarray(Z, np.float64), scale, keep

    def __iter__(self):
        start = 0
        for s, L in self.blocks:
            Zs = self.Z[s]
            if self.keep is not None:
                rows = self.keep[s]
                L, Zs = L[rows], Zs[rows]
            stop = start + len(L)
            yield slice(start, stop), np.hstack([L, self.scale * Zs])
            start = stop


def fit_log_ratio_covariates(
    blocks,
    y: np.ndarray,
    Z: np.ndarray,
    *,
    amplitude: float,
    offset: float,
    n_landmarks: int,
    prior_sd: float = COVARIATE_PRIOR_SD,
    keep: np.ndarray | None = None,
    w0: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 50,
) -> LogRatioFit:
    """Newton MAP and Laplace posterior of ``[w; v]`` with covariates ``Z`` (cells x p).

    ``Z`` is centred here over the fitted cells (those in ``keep``, all by
    default; ``y`` has one entry per fitted cell). The returned fit's
    weights are ``m + p`` long: the landmark weights ``w``, then ``v = beta /
    prior_sd``; its Cholesky factor and evidence are those of the joint
    posterior. Other arguments as :func:`~kompot.core.log_ratio.fit_log_ratio`.
    """
    Z = np.asarray(Z, np.float64)
    rows = slice(None) if keep is None else keep
    centred = Z - Z[rows].mean(axis=0)
    augmented = CovariateBlocks(blocks, centred, prior_sd / amplitude, keep)
    return fit_log_ratio(augmented, y, amplitude=amplitude, offset=offset,
                         n_landmarks=int(n_landmarks) + Z.shape[1], w0=w0, tol=tol,
                         max_iter=max_iter)


def covariate_effects(fit: LogRatioFit, n_landmarks: int, prior_sd: float = COVARIATE_PRIOR_SD):
    """MAP of ``beta``, the covariates' effects on the log odds of condition 2."""
    return prior_sd * fit.w[int(n_landmarks):]


def landmark_only(Phi: np.ndarray, n_covariates: int) -> np.ndarray:
    """Features ``[Phi, 0]`` of ``f`` alone among the ``m + p`` weights."""
    return np.hstack([Phi, np.zeros((len(Phi), int(n_covariates)))])


def covariate_jackknife(
    blocks,
    y: np.ndarray,
    Z: np.ndarray,
    sample_codes: np.ndarray,
    fit: LogRatioFit,
    *,
    n_landmarks: int,
    prior_sd: float = COVARIATE_PRIOR_SD,
    tol: float = 1e-9,
) -> Jackknife:
    """Leave-one-sample-out refits of a covariate fit: shifts of ``[w; v]``.

    Each refit drops one sample's cells, moves the offset to the remaining
    condition sizes and centres ``Z`` over the remaining cells, as the fit
    on those cells would. A level of the indicator columns (a combination of
    categories) that is left with cells of one condition only says nothing
    about the condition within it (its effect would grow without bound), so
    its cells are left out of that refit too. Unlike
    :func:`~kompot.core.log_ratio.sample_jackknife` these are full Newton
    refits (warm-started at ``fit``).
    """
    y = np.asarray(y, np.float64)
    labels, codes = np.unique(np.asarray(sample_codes), return_inverse=True)
    codes = codes.reshape(-1)
    K = labels.size
    if np.any(np.bincount(codes[y > 0], minlength=K) * np.bincount(codes[y == 0], minlength=K)):
        raise ValueError("A sample holds cells of both conditions; samples must be nested in them.")
    cond = np.zeros(K, dtype=int)
    cond[codes[y > 0]] = 1
    levels = indicator_levels(Z)
    shifts = np.full((fit.w.size, K), np.nan)
    for k in range(K):
        keep = _informative(codes != k, levels, y)
        yk = y[keep]
        n2k = float(yk.sum())
        n1k = float(yk.size - n2k)
        if n1k <= 0 or n2k <= 0:
            continue  # the condition's only sample: nothing to leave out
        refit = fit_log_ratio_covariates(
            blocks, yk, Z, amplitude=fit.amplitude, offset=np.log(n2k / n1k),
            n_landmarks=n_landmarks, prior_sd=prior_sd, keep=keep, w0=fit.w, tol=tol)
        shifts[:, k] = refit.w - fit.w
    return Jackknife(shifts=shifts, condition=cond, samples=labels)


def indicator_levels(Z: np.ndarray) -> np.ndarray:
    """Code of each cell's combination of the 0/1 columns of ``Z`` (all 0 without such columns)."""
    Z = np.asarray(Z, np.float64)
    binary = np.all((Z == 0) | (Z == 1), axis=0)
    if not binary.any():
        return np.zeros(len(Z), dtype=int)
    return np.unique(Z[:, binary], axis=0, return_inverse=True)[1].reshape(-1)


def _informative(keep: np.ndarray, levels: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``keep`` without the cells of levels that hold one condition only among the kept."""
    n = levels.max() + 1
    with_2 = np.bincount(levels[keep & (y > 0)], minlength=n) > 0
    with_1 = np.bincount(levels[keep & (y == 0)], minlength=n) > 0
    return keep & (with_1 & with_2)[levels]
