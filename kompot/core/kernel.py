"""Covariance functions, evaluated block-wise into numpy arrays.

kompot's default covariance is its own :class:`Matern52` object: plain numpy,
so that fitting and predicting never import mellon or JAX. It has the formula
of mellon's ``mellon.cov.Matern52`` (the same distance guard, so the two agree
to rounding); :mod:`kompot.core.mellon_bridge` converts it to mellon's object
only when a mellon predictor or estimator is handed to the user.

A user's own covariance object (any of mellon's, or anything callable as
``cov(X, Y)`` with a ``diag(X)`` method) is accepted wherever kompot takes
``cov_func`` and is called as it is; a plain mellon Matérn-5/2 takes the same
fast numpy path as kompot's (or JAX's, with
``kompot.settings.compute_backend = "jax"``; see :mod:`kompot.core.backend`).
"""

from __future__ import annotations

import sys

import numpy as np

from . import backend

_SQRT5 = np.sqrt(5.0)
# mellon adds this inside the square root of squared distances.
_DISTANCE_GUARD = 1e-12


class Matern52:
    """Matérn-5/2 covariance with unit amplitude and length scale ``ls``.

    ``k(x, y) = (1 + s + s²/3) exp(-s)`` with ``s = sqrt(5) |x - y| / ls``.
    Called as ``cov(X, Y)`` it returns the ``(len(X), len(Y))`` kernel matrix.
    """

    active_dims = None  # acts on all features, like mellon's default

    def __init__(self, ls: float):
        if not np.isfinite(ls) or ls <= 0:
            raise ValueError(f"The length scale must be a positive number, got {ls}.")
        self.ls = float(ls)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, np.float64))
        y = np.atleast_2d(np.asarray(y, np.float64))
        return _matern52_numpy(x, y, self.ls)

    def diag(self, x: np.ndarray) -> np.ndarray:
        """The prior variance ``k(x, x)`` of each row (1 up to the distance guard)."""
        return np.full(np.atleast_2d(x).shape[0], _matern52_at_zero(self.ls))

    def __eq__(self, other: object) -> bool:
        return type(other) is Matern52 and other.ls == self.ls

    def __hash__(self) -> int:
        return hash((Matern52, self.ls))

    def __repr__(self) -> str:
        return f"Matern52(ls={self.ls!r})"


def matern52(ls: float) -> Matern52:
    """The default covariance: Matérn-5/2, unit amplitude, length scale ``ls``."""
    return Matern52(ls)


def _is_plain_matern52(cov_func) -> bool:
    """kompot's Matérn-5/2, or mellon's on all features (without importing mellon)."""
    if type(cov_func) is Matern52:
        return True
    mellon_cov = sys.modules.get("mellon.cov")  # a mellon object implies mellon is loaded
    return (
        mellon_cov is not None
        and type(cov_func) is getattr(mellon_cov, "Matern52", None)
        and getattr(cov_func, "active_dims", None) is None
    )


def _matern52_at_zero(ls: float) -> float:
    # k(x, x) with mellon's guard: r = sqrt(1e-12), not exactly 0.
    r = _SQRT5 * np.sqrt(_DISTANCE_GUARD) / ls
    return float((1.0 + r + r * r / 3.0) * np.exp(-r))


def _matern52_numpy(X: np.ndarray, Y: np.ndarray, ls: float) -> np.ndarray:
    sq = X @ Y.T
    sq *= -2.0
    sq += np.einsum("ij,ij->i", X, X)[:, None]
    sq += np.einsum("ij,ij->i", Y, Y)[None, :]
    sq += _DISTANCE_GUARD
    np.maximum(sq, 0.0, out=sq)
    r = np.sqrt(sq, out=sq)
    r *= _SQRT5 / ls  # r is now sqrt(5) * distance / ls
    out = r * r
    out *= 1.0 / 3.0
    out += r
    out += 1.0
    np.negative(r, out=r)
    np.exp(r, out=r)
    out *= r
    return out


def kernel_matrix(cov_func, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``cov_func(X, Y)`` as a float64 numpy array of shape (len(X), len(Y))."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    if _is_plain_matern52(cov_func):
        if backend.uses_jax():
            return backend.matern52(X, Y, float(cov_func.ls))
        return _matern52_numpy(X, Y, float(cov_func.ls))
    return np.asarray(cov_func(X, Y), np.float64)


def kernel_diag(cov_func, X: np.ndarray) -> np.ndarray:
    """The prior variance ``k(x, x)`` of each row."""
    X = np.asarray(X, np.float64)
    if _is_plain_matern52(cov_func):
        return np.full(X.shape[0], _matern52_at_zero(float(cov_func.ls)))
    return np.asarray(cov_func.diag(X), np.float64)
