"""Small dense linear-algebra helpers with loud failure instead of NaN."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import cholesky, solve_triangular


def safe_cholesky(A: np.ndarray, jitter: float = 1e-10, max_tries: int = 6, what: str = "matrix") -> np.ndarray:
    """Lower Cholesky factor of ``A``; escalating jitter with a warning, else raise.

    A failed factorisation must never become NaN further down, so every
    retry is reported and the last failure raises ``LinAlgError``.
    """
    if not np.all(np.isfinite(A)):
        raise ValueError(f"The {what} contains NaN or inf; check the inputs for missing values.")
    try:
        return cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    scale = float(np.mean(np.abs(np.diag(A)))) or 1.0
    for k in range(max_tries):
        added = jitter * scale * 10.0**k
        try:
            L = cholesky(A + added * np.eye(A.shape[0]), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        warnings.warn(
            f"The {what} was not numerically positive definite; added {added:.3g} to its "
            "diagonal. Consider fewer landmarks or a longer length scale.",
            RuntimeWarning,
            stacklevel=3,
        )
        return L
    raise np.linalg.LinAlgError(
        f"The {what} is not positive definite even with {added:.3g} added to its diagonal. "
        "Use fewer landmarks, a longer length scale, or a larger eps."
    )


def lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-1} B`` for lower-triangular ``L``."""
    return solve_triangular(L, B, lower=True, check_finite=False)


def upper_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-T} B`` for lower-triangular ``L``."""
    return solve_triangular(L, B, lower=True, trans="T", check_finite=False)

