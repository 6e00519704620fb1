"""Reading and checking what ``kompot.tl`` needs from an AnnData.

Everything here only reads ``adata``. The tools call these helpers before any
computation, so a bad argument fails fast and leaves ``adata`` as it was.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import sparse

from .._keys import sanitize
from ..core.cell_rows import CellRows

# Error messages list at most this many names.
_SHOW = 8
# A replicate sample needs this many cells to get its own estimator; the same
# threshold as the model classes' ``min_cells``.
MIN_CELLS_PER_SAMPLE = 2


def preview(names: Sequence[object]) -> str:
    """The first few names of a list, for an error message."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOW else "")


# ----------------------------------------------------------------- scalars
def check_key_added(key_added: object) -> str:
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    return key_added


def check_positive(value, name: str, *, integer: bool = False, allow_none: bool = False):
    """``value`` if it is a positive (integer) number, else a ValueError naming ``name``."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value) or value <= 0:
        what = "a positive integer" if integer else "a positive number"
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {what}{extra}, got {value!r}.")
    return int(value) if integer else float(value)


def check_probability(value, name: str) -> float:
    """``value`` if it lies strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}.")
    return float(value)


def check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    return float(value)


def check_bool(value, name: str) -> bool:
    """``value`` as a bool; anything but True or False raises."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_random_state(random_state) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise ValueError(f"random_state must be an integer seed or None, got {random_state!r}.")
    return int(random_state)


def check_landmarks(landmarks, n_dims: int, obsm_key: str) -> np.ndarray | None:
    """Given landmarks as a finite float64 array with one column per dimension of the representation."""
    if landmarks is None:
        return None
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_dims or arr.shape[0] < 1:
        raise ValueError(
            f"landmarks must have shape (n_landmarks, {n_dims}) to match adata.obsm[{obsm_key!r}], "
            f"got {arr.shape}. Pass points in the same representation, or landmarks=None."
        )
    if not np.isfinite(arr).all():
        raise ValueError("landmarks contain NaN or infinite values.")
    return arr


# --------------------------------------------------------- representation
def representation(adata, obsm_key: str) -> np.ndarray:
    """The cell states ``adata.obsm[obsm_key]`` as a finite float64 array (n_obs x d)."""
    if obsm_key not in adata.obsm:
        raise KeyError(
            f"obsm_key={obsm_key!r} is not in adata.obsm (available: "
            f"{preview(list(adata.obsm.keys())) or 'none'}). Pass the cell-state representation "
            "to use, e.g. obsm_key='X_pca' (sc.pp.pca), or compute a diffusion map first: "
            "sc.tl.diffmap writes 'X_diffmap', palantir.utils.run_diffusion_maps writes "
            "'DM_EigenVectors'."
        )
    raw = adata.obsm[obsm_key]
    if isinstance(raw, pd.DataFrame):
        raw = raw.to_numpy()
    if sparse.issparse(raw):
        raw = raw.toarray()
    try:
        X = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"adata.obsm[{obsm_key!r}] must be numeric cell coordinates.") from None
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(
            f"adata.obsm[{obsm_key!r}] must be a 2-D array (cells x dimensions), got shape {X.shape}."
        )
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(
            f"adata.obsm[{obsm_key!r}] has NaN or infinite values in {int(bad.sum())} cells "
            f"(e.g. {preview(adata.obs_names[bad])}). Recompute the representation, or remove "
            "those cells first (adata = adata[mask].copy())."
        )
    return X


# --------------------------------------------------------------- conditions
def _codes(adata, column: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and string categories of an obs column."""
    if column not in adata.obs.columns:
        raise KeyError(
            f"{role}={column!r} is not a column of adata.obs (columns: "
            f"{preview(list(adata.obs.columns)) or 'none'})."
        )
    col = adata.obs[column]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    categories = np.array([str(c) for c in col.cat.categories], dtype=object)
    return col.cat.codes.to_numpy(), categories


def condition_mask(adata, groupby: str, condition: object, role: str = "condition") -> np.ndarray:
    """Boolean mask of the cells whose ``groupby`` label is ``condition`` (compared as text)."""
    codes, categories = _codes(adata, groupby, "groupby")
    hits = np.flatnonzero(categories == str(condition))
    mask = np.isin(codes, hits)
    if not hits.size:
        raise ValueError(
            f"{role}={condition!r} is not a category of adata.obs[{groupby!r}]; "
            f"categories are: {preview(categories)}."
        )
    if mask.sum() < 2:
        raise ValueError(
            f"{role}={condition!r} has {int(mask.sum())} cell(s) in adata.obs[{groupby!r}]; "
            "at least 2 are needed."
        )
    return mask


def condition_masks(adata, groupby: str, condition1: object, condition2: object):
    """Masks of the two conditions' cells, after checking that they are distinct."""
    if str(condition1) == str(condition2):
        raise ValueError(
            f"condition1 and condition2 are both {condition1!r}; pass two different "
            f"categories of adata.obs[{groupby!r}]."
        )
    if sanitize(condition1) == sanitize(condition2):
        raise ValueError(
            f"condition1={condition1!r} and condition2={condition2!r} give the same name in "
            "output columns (spaces and slashes become '_'); rename one category."
        )
    return (condition_mask(adata, groupby, condition1, "condition1"),
            condition_mask(adata, groupby, condition2, "condition2"))


def sample_labels(
    adata,
    sample_col: str,
    masks: Sequence[np.ndarray],
    conditions: Sequence[object],
    *,
    allow_single_condition_variance: bool = False,
) -> list[np.ndarray]:
    """Replicate labels of each condition's cells, checked to be nested in the conditions.

    With one mask (one condition) only the number of usable samples is checked.
    """
    codes, categories = _codes(adata, sample_col, "sample_col")
    per_condition = []
    for mask, condition in zip(masks, conditions, strict=True):
        c = codes[mask]
        if (c < 0).any():
            raise ValueError(
                f"adata.obs[{sample_col!r}] is missing for {int((c < 0).sum())} cells of "
                f"condition {condition!r}; every analysed cell needs a sample label."
            )
        per_condition.append(c)
    shared = np.intersect1d(*per_condition) if len(per_condition) == 2 else np.array([], int)
    if shared.size:
        raise ValueError(
            f"Samples must be nested in conditions, but adata.obs[{sample_col!r}] has labels in "
            f"both {conditions[0]!r} and {conditions[1]!r}: {preview(categories[shared])}. "
            "Give each replicate a label of its own, e.g. "
            f"adata.obs[{sample_col!r}] = adata.obs[groupby].astype(str) + '_' + "
            f"adata.obs[{sample_col!r}].astype(str)."
        )
    usable = [int(np.sum(np.bincount(c) >= MIN_CELLS_PER_SAMPLE)) for c in per_condition]
    lacking = [cond for cond, n in zip(conditions, usable, strict=True) if n < 2]
    if len(lacking) == len(conditions) or (lacking and not allow_single_condition_variance):
        hint = ("" if len(lacking) == len(conditions) else
                " Or set allow_single_condition_variance=True to use the other condition's "
                "replicate variance for both.")
        raise ValueError(
            f"Replicate variance needs at least 2 samples with >= {MIN_CELLS_PER_SAMPLE} cells "
            f"per condition; in adata.obs[{sample_col!r}] condition(s) {preview(lacking)} have "
            f"fewer. Pass sample_col=None to ignore replicates.{hint}"
        )
    return [categories[c] for c in per_condition]


# -------------------------------------------------------------- expression
def gene_indices(adata, genes) -> np.ndarray:
    """Sorted column indices of the genes to analyse (names or a boolean mask; None = all)."""
    if genes is None:
        return np.arange(adata.n_vars)
    if isinstance(genes, str):
        genes = [genes]
    arr = np.asarray(genes)
    if arr.dtype == bool:
        if arr.shape != (adata.n_vars,):
            raise ValueError(
                f"genes as a boolean mask needs one entry per gene ({adata.n_vars}), got shape "
                f"{arr.shape}."
            )
        idx = np.flatnonzero(arr)
    else:
        names = [str(g) for g in arr.ravel()]
        if not adata.var_names.is_unique:
            raise ValueError(
                "adata.var_names are not unique, so genes cannot be selected by name; run "
                "adata.var_names_make_unique() or pass a boolean mask."
            )
        positions = adata.var_names.get_indexer(names)
        missing = [n for n, p in zip(names, positions, strict=True) if p < 0]
        if missing:
            raise KeyError(
                f"{len(missing)} of the requested genes are not in adata.var_names: "
                f"{preview(missing)}. Pass names from adata.var_names or a boolean mask."
            )
        idx = np.unique(positions)
    if idx.size == 0:
        raise ValueError("genes selects no gene; pass at least one gene name or True entry.")
    return idx


def expression_source(adata, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, checked to exist and to be cells x genes."""
    if layer is None:
        if adata.X is None:
            raise ValueError(
                f"adata.X is empty; pass layer= naming one of adata.layers "
                f"({preview(list(adata.layers.keys())) or 'none'})."
            )
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers (available: "
            f"{preview(list(adata.layers.keys())) or 'none'}). Pass layer=None to use adata.X."
        )
    return adata.layers[layer]


def expression_rows(source, cols: np.ndarray) -> CellRows:
    """All cells and the genes ``cols`` of ``source``, as a view read block by block.

    Nothing is copied: ``source`` may be dense, scipy sparse (CSC becomes CSR
    of the selected genes once), an h5py-backed matrix of
    ``read_h5ad(backed="r")`` or a dask array.
    """
    return CellRows(source, genes=cols)


@contextmanager
def reading_numbers(source, what: str):
    """Turn a failed conversion of ``source``'s values to floats into an error that names the fix."""
    try:
        yield
    except (TypeError, ValueError) as error:
        dtype = getattr(source, "dtype", type(source).__name__)
        raise ValueError(
            f"{what} is not numeric (dtype {dtype}: {error}); pass layer= naming a layer of "
            "log-normalised expression values."
        ) from None


def finite_rows(cells: CellRows, rows: np.ndarray, what: str) -> CellRows:
    """The view of ``cells``' rows ``rows``, after a block-by-block check that all are finite."""
    rows_view = cells.take(rows)
    with reading_numbers(cells, what):
        finite = rows_view.all_finite()
    if not finite:
        raise ValueError(
            f"{what} has NaN or infinite values in the selected cells and genes; fix them, or "
            "choose another layer or gene subset."
        )
    return rows_view


# -------------------------------------------------------------- covariates
def covariate_design(adata, covariates, masks: Sequence[np.ndarray], groupby: str):
    """Numeric design of ``adata.obs[covariates]`` for each mask's cells, and its column names.

    A numeric column enters as it is; a categorical, string or boolean column
    as one indicator per level seen in the masked cells except the first
    (the reference level).
    """
    columns = [covariates] if isinstance(covariates, str) else list(covariates)
    if not columns:
        raise ValueError("covariates is empty; pass None or column names of adata.obs.")
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(
            f"Covariate column(s) {preview(missing)} not in adata.obs (columns: "
            f"{preview(list(adata.obs.columns))})."
        )
    if groupby in columns:
        raise ValueError(f"{groupby!r} holds the conditions and cannot also be a covariate.")
    rows = np.logical_or.reduce([np.asarray(m, bool) for m in masks])
    blocks, names = [], []
    for column in columns:
        values = adata.obs[column][rows]
        if values.isna().any():
            raise ValueError(
                f"adata.obs[{column!r}] is missing for {int(values.isna().sum())} analysed "
                "cells; fill it or subset adata first."
            )
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            blocks.append(values.to_numpy(np.float64)[:, None])
            names.append(column)
            continue
        levels = pd.Categorical(values.astype(str)) if not isinstance(
            values.dtype, pd.CategoricalDtype) else values.cat.remove_unused_categories().array
        codes = np.asarray(levels.codes)
        for level in range(1, len(levels.categories)):
            blocks.append((codes == level).astype(np.float64)[:, None])
            names.append(f"{column}={levels.categories[level]}")
    if not blocks:
        raise ValueError(f"Covariate(s) {preview(columns)} take a single value in the analysed cells.")
    design = np.full((adata.n_obs, len(names)), np.nan)
    design[rows] = np.hstack(blocks)
    return [design[np.asarray(m, bool)] for m in masks], names
