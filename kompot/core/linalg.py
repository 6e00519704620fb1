"""Small dense linear-algebra helpers with loud failure instead of NaN."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
from numpy.linalg import LinAlgError
from scipy.linalg import lapack, solve_triangular

from .._warnings import KompotRuntimeWarning
from ..parallel import single_threaded_blas

# Below this size OpenBLAS's threaded Cholesky is slower than a single thread,
# and it collapses (100x) when other processes share the cores.
_SINGLE_THREAD_CHOLESKY_MAX = 1500


def _potrf(M: np.ndarray, **kwargs):
    """LAPACK ``dpotrf``, single-threaded for the mid-sized matrices kompot factors."""
    small = M.shape[0] <= _SINGLE_THREAD_CHOLESKY_MAX
    with single_threaded_blas() if small else nullcontext():
        return lapack.dpotrf(M, **kwargs)

ADVICE = (
    "Try a larger eps (diagonal regularisation of the covariance), fewer landmarks, "
    "a longer length scale, or check the inputs."
)


def jittered_cholesky(
    M: np.ndarray, jitter: float, max_tries: int, what: str
) -> tuple[np.ndarray, float]:
    """Lower Cholesky of finite symmetric ``M`` with escalating jitter; no warning.

    Returns ``(L, used)`` where ``used`` is the absolute amount added to the diagonal (0.0 if
    plain Cholesky succeeded). ``M`` is not modified. Raises ``LinAlgError`` when all fail.
    """
    L, info = _potrf(M, lower=1, clean=1, overwrite_a=0)
    if info == 0:
        return L, 0.0
    if info < 0:  # pragma: no cover - only on malformed arguments to LAPACK
        raise LinAlgError(f"LAPACK dpotrf rejected argument {-info} for the {what}.")
    scale = float(np.mean(np.diag(M)))
    # A nonpositive mean diagonal already proves the matrix is not PSD; jitter proportional to
    # it would be meaningless.
    if not scale > 0.0:
        raise LinAlgError(
            f"The {what} is not positive definite (mean diagonal {scale:.3g} <= 0). {ADVICE}"
        )
    idx = np.arange(M.shape[0])
    used = 0.0
    for k in range(max_tries):
        used = jitter * scale * 10.0**k
        Mj = np.array(M, dtype=np.float64, order="F", copy=True)
        Mj[idx, idx] += used
        L, info = _potrf(Mj, lower=1, clean=1, overwrite_a=1)
        if info == 0:
            return L, used
    raise LinAlgError(
        f"The {what} is not positive definite even after adding {used:.3g} "
        f"({jitter * 10.0 ** (max_tries - 1):.0e} x its mean diagonal) to its diagonal; it "
        f"probably has a clearly negative eigenvalue. {ADVICE}"
    )



def safe_cholesky(A: np.ndarray, jitter: float = 1e-10, max_tries: int = 6, what: str = "matrix") -> np.ndarray:
    """Lower Cholesky factor of ``A``; escalating jitter with a warning, else raise.

    A failed factorisation must never become NaN further down, so every
    retry is reported and the last failure raises ``LinAlgError``.
    """
    if not np.all(np.isfinite(A)):
        raise ValueError(f"The {what} contains NaN or inf; check the inputs for missing values.")
    L, used = jittered_cholesky(np.asarray(A, np.float64), jitter, max_tries, what)
    if used > 0:
        warnings.warn(
            f"The {what} was not numerically positive definite; added {used:.3g} to its "
            "diagonal. Consider fewer landmarks or a longer length scale.",
            KompotRuntimeWarning,
            stacklevel=3,
        )
    return L


def lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-1} B`` for lower-triangular ``L``."""
    return solve_triangular(L, B, lower=True, check_finite=False)


def upper_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-T} B`` for lower-triangular ``L``."""
    return solve_triangular(L, B, lower=True, trans="T", check_finite=False)

