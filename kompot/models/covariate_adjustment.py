"""Covariate adjustment of both conditions' expression before differential expression.

The strata of :mod:`kompot.core.covariates` are groups of similar cell states
(k-means on the pooled cells) crossed with the condition, so the covariates'
effects are learned within a condition and a state and never absorb the
condition contrast.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..core.covariates import (
    check_identifiable,
    covariate_effects,
    identifiable,
    remove_covariate_effects,
)
from ..core.landmarks import select_landmarks

# Groups of similar cell states within which covariate effects are learned.
# More groups follow a condition effect that varies over states more closely;
# fewer keep more cells (and both covariate values) in each group.
N_STATE_GROUPS = 20
MIN_CELLS_PER_GROUP = 50


def adjust_for_covariates(X1, Y1, Z1, X2, Y2, Z2, *, names=None, random_state=0):
    """Both conditions' expression with the covariates' effects removed.

    Parameters
    ----------
    X1, X2
        Cell states of the two conditions.
    Y1, Y2
        Their expression (cells x genes, dense or sparse).
    Z1, Z2
        Their numeric covariate design (cells x covariates, e.g. a batch's
        indicator columns without a reference level, or a numeric covariate).
    names
        Labels of the design's columns, for error messages.

    Returns
    -------
    ``(Y1_adjusted, Y2_adjusted, gamma)``: dense float64 expression and the
    per-gene effects (covariates x genes).
    """
    Z, strata = _design_and_strata(X1, Z1, X2, Z2, random_state)
    return adjusted_pair(Y1, Y2, Z, strata, names=names)


def adjusted_pair(Y1, Y2, Z: np.ndarray, strata: np.ndarray, *, names=None):
    """``(Y1_adjusted, Y2_adjusted, gamma)`` given the stacked design and strata of both groups."""
    gamma = covariate_effects([Y1, Y2], Z, strata, names=names)
    centre = Z.mean(axis=0)
    n1 = Y1.shape[0]
    return (remove_covariate_effects(Y1, Z[:n1], gamma, centre),
            remove_covariate_effects(Y2, Z[n1:], gamma, centre), gamma)


def check_covariates(X1, Z1, X2, Z2, *, names=None, random_state=0) -> None:
    """Raise the error :func:`adjust_for_covariates` would raise, without reading expression."""
    check_identifiable(*_design_and_strata(X1, Z1, X2, Z2, random_state), names)


def separable(X1, Z1, X2, Z2, random_state=0) -> bool:
    """Whether the covariates' effects can be learned for this split of the cells."""
    return identifiable(*_design_and_strata(X1, Z1, X2, Z2, random_state))


def _design_and_strata(X1, Z1, X2, Z2, random_state):
    """The stacked design and the (state group, condition) stratum of every cell."""
    X = np.vstack([np.asarray(X1, np.float64), np.asarray(X2, np.float64)])
    Z = np.vstack([_design(Z1, len(X1)), _design(Z2, len(X2))])
    condition = np.r_[np.zeros(len(X1), int), np.ones(len(X2), int)]
    return Z, state_groups(X, random_state=random_state) * 2 + condition


def state_groups(X: np.ndarray, n_groups: int | None = None, random_state=0) -> np.ndarray:
    """One integer per cell: its nearest of ``n_groups`` k-means centres of the states."""
    if n_groups is None:
        n_groups = max(1, min(N_STATE_GROUPS, X.shape[0] // MIN_CELLS_PER_GROUP))
    centres = select_landmarks(X, n_groups, random_state=random_state)
    return cKDTree(centres).query(X)[1]


def _design(Z, n_rows: int) -> np.ndarray:
    Z = np.asarray(Z, np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2 or Z.shape[0] != n_rows:
        raise ValueError(
            f"Covariates must have one row per cell ({n_rows}), got shape {Z.shape}."
        )
    if not np.isfinite(Z).all():
        raise ValueError("Covariates must be finite; fill or drop cells with missing values.")
    return Z
