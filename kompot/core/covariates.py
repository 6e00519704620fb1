"""Removing covariate effects (batch, sex, age) from expression before the condition contrast.

Per gene, expression is modelled as a free mean for every stratum of cells
(a group of similar cell states within one condition) plus a linear effect of
the covariates shared by all strata:

    y = mean[stratum] + Z @ gamma + noise.

The strata absorb the cell-state structure and the condition effect,
however it varies over states, so ``gamma`` is learned only from how
expression differs between cells with different covariate values *in the
same state and condition* (Frisch-Waugh-Lovell: regress on the covariates
centred within each stratum). The adjusted expression is ``y - (Z - mean(Z))
@ gamma``: the covariates' effect is removed, the overall level kept.
"""

from __future__ import annotations

import numpy as np

from .blocks import block_slices
from .cell_rows import dense_rows


def centred_within(Z: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """``Z`` minus its mean over the rows of the same stratum."""
    Z = np.asarray(Z, np.float64)
    codes = np.unique(np.asarray(strata), return_inverse=True)[1].reshape(-1)
    counts = np.bincount(codes)
    means = np.zeros((counts.size, Z.shape[1]))
    np.add.at(means, codes, Z)
    means /= counts[:, None]
    return Z - means[codes]


def covariate_effects(parts, Z: np.ndarray, strata: np.ndarray, *, names=None,
                      batch_size: int = 10_000) -> np.ndarray:
    """Per-gene effects ``gamma`` (covariates x genes) of ``Z`` on expression within strata.

    ``parts`` are expression matrices (cells x genes: dense, scipy sparse or
    :class:`~kompot.core.cell_rows.CellRows` views)
    whose rows, one after the other, are the rows of ``Z`` and ``strata``;
    they are read in row blocks and never stacked. Raises
    a ValueError when a covariate does not vary within any stratum (it is then
    confounded with the condition or the cell state and cannot be separated
    from them); ``names`` label the covariate columns in that message.
    """
    Zc = centred_within(Z, strata)
    gram = Zc.T @ Zc
    check_identifiable(Z, strata, names, gram)
    ZtY = np.zeros((Z.shape[1], parts[0].shape[1]))
    start = 0
    for Y in parts:
        for s in block_slices(Y.shape[0], batch_size):
            ZtY += Zc[start + s.start:start + s.stop].T @ dense_rows(Y, s)
        start += Y.shape[0]
    if start != Z.shape[0]:
        raise ValueError(f"The expression has {start} rows but the covariates {Z.shape[0]}.")
    return np.linalg.solve(gram, ZtY)


def identifiable(Z: np.ndarray, strata: np.ndarray) -> bool:
    """Whether every covariate varies within some stratum, independently of the others."""
    try:
        check_identifiable(Z, strata)
    except ValueError:
        return False
    return True


def check_identifiable(Z: np.ndarray, strata: np.ndarray, names=None, gram=None) -> None:
    """Raise a ValueError naming the covariates whose effect cannot be learned within strata."""
    Z = np.asarray(Z, np.float64)
    if gram is None:
        Zc = centred_within(Z, strata)
        gram = Zc.T @ Zc
    names = list(names) if names is not None else [f"column {j}" for j in range(Z.shape[1])]
    scale = np.maximum(np.diag(Z.T @ Z), 1e-300)
    flat = [names[j] for j in np.flatnonzero(np.diag(gram) <= 1e-10 * scale)]
    if flat:
        raise ValueError(
            f"Covariate(s) {flat} do not vary among cells of the same condition and cell "
            "state, so their effect cannot be told apart from the condition's; drop them "
            "from covariates (they are nested in the condition)."
        )
    if np.linalg.matrix_rank(gram) < gram.shape[0]:
        raise ValueError(
            f"The covariates {names} are linearly dependent within conditions (e.g. one "
            "column repeats another, or every level of a category is given); drop one."
        )


def remove_covariate_effects(Y, Z: np.ndarray, gamma: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``Y - (Z - centre) @ gamma`` as a dense float64 array."""
    return dense_rows(Y, slice(None)) - (np.asarray(Z, np.float64) - centre) @ gamma
