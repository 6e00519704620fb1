"""Checks of what the inputs mean, beyond their types and shapes.

Expression should be log-normalised (``sc.pp.normalize_total`` then
``sc.pp.log1p``): raw counts or z-scored values (``sc.pp.scale``) are
accepted but warned about. A cell-state representation loses columns that
carry no information about cell state: constant ones, and the first column
of scanpy's ``X_diffmap``, the trivial eigenvector (eigenvalue 1) that
``sc.tl.diffmap`` keeps. Both checks read a sample of rows only, so that they
cost little on large or sparse data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from .._warnings import KompotInputWarning
from ..core.cell_rows import CellRows
from ._inputs import reading_numbers

# Rows read by the expression check; evenly spaced over all cells.
SAMPLE_ROWS = 2000
_LOG_NORMALISE = ("run sc.pp.normalize_total(adata) and sc.pp.log1p(adata) on counts, or pass "
                  "layer= naming a log-normalised layer")


def sample_rows(n_obs: int, n: int = SAMPLE_ROWS) -> np.ndarray:
    """At most ``n`` row indices, evenly spaced over ``n_obs`` rows (deterministic)."""
    return np.unique(np.linspace(0, n_obs - 1, num=min(n, n_obs)).astype(np.int64))


def expression_scale(block: np.ndarray) -> str | None:
    """``"counts"``, ``"z-scored"`` or ``None`` (looks log-normalised) for a cells x genes sample."""
    if block.size == 0 or not np.any(block):
        return None
    if block.min() >= 0 and block.max() > 1 and np.array_equal(block, np.round(block)):
        return "counts"
    if block.min() < 0 and block.shape[0] >= 10:
        mean = np.median(np.abs(block.mean(axis=0)))
        sd = np.median(block.std(axis=0))
        if mean < 0.1 and abs(sd - 1.0) < 0.15:
            return "z-scored"
    return None


def check_expression_scale(source, gene_idx: np.ndarray, what: str) -> str | None:
    """Warn (once, one line) when the expression looks like raw counts or z-scores.

    Reads at most :data:`SAMPLE_ROWS` evenly spaced rows of the analysed
    genes (``gene_idx``; unused when ``source`` is a :class:`CellRows`
    view, which has its genes already). Returns what was found, for the run's record.
    """
    cells = source if isinstance(source, CellRows) else CellRows(source, genes=gene_idx)
    with reading_numbers(source, what):
        block = cells.block(sample_rows(cells.shape[0]))
    scale = expression_scale(block)
    if scale == "counts":
        warnings.warn(
            f"{what} holds non-negative integers, like raw counts, but kompot models "
            f"log-normalised expression; {_LOG_NORMALISE}.",
            KompotInputWarning, stacklevel=3,
        )
    elif scale == "z-scored":
        warnings.warn(
            f"{what} looks z-scored (per-gene mean 0, sd 1, as after sc.pp.scale), but kompot "
            f"models log-normalised expression; {_LOG_NORMALISE}.",
            KompotInputWarning, stacklevel=3,
        )
    return scale


def log1p_base(adata) -> float:
    """The base scanpy's ``sc.pp.log1p`` recorded in ``adata.uns["log1p"]`` (e when none)."""
    record = adata.uns.get("log1p")
    base = record.get("base") if isinstance(record, Mapping) else None
    return math.e if base is None else float(base)


def informative_columns(adata, obsm_key: str, X: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``X`` without its uninformative columns, and the indices of those dropped.

    Dropped: constant columns, and column 0 of scanpy's ``X_diffmap`` when
    ``adata.uns["diffmap_evals"]`` gives it eigenvalue 1. One line warns when
    any column goes.
    """
    constant = np.ptp(X, axis=0) == 0
    evals = adata.uns.get("diffmap_evals") if obsm_key == "X_diffmap" else None
    trivial = evals is not None and len(evals) == X.shape[1] and abs(float(evals[0]) - 1) < 1e-6
    drop = constant.copy()
    drop[0] |= trivial
    dropped = [int(i) for i in np.flatnonzero(drop)]
    if not dropped:
        return X, []
    if len(dropped) == X.shape[1]:
        raise ValueError(
            f"adata.obsm[{obsm_key!r}] has no informative column (all constant); recompute the "
            "representation or pass another obsm_key."
        )
    why = ("scanpy's diffmap keeps the trivial eigenvector (eigenvalue 1) as column 0"
           if trivial else "constant columns say nothing about cell state")
    warnings.warn(
        f"kompot drops column(s) {dropped} of adata.obsm[{obsm_key!r}] ({why}); the run's "
        "record lists them under 'obsm_columns_dropped'.",
        KompotInputWarning, stacklevel=3,
    )
    return X[:, ~drop], dropped
