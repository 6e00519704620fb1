"""Writing a run's results into an AnnData, with its provenance record in ``uns``.

The record holds only types that survive ``write_h5ad``/``read_h5ad``
(strings, numbers, booleans, lists and numpy arrays; ``None`` is stored as
the string ``"None"``). It never holds user or host names.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import ImplicitModificationWarning

from .._settings import report
from .._warnings import KompotWarning
from ..models.layer_store import is_lazy

logger = logging.getLogger("kompot")


class ViewModificationWarning(KompotWarning, ImplicitModificationWarning):
    """kompot wrote into a view of an AnnData, which became a copy (anndata's warning too)."""

FIELD_SLOTS = ("obs", "var", "layers", "uns")


def h5ad_value(value: object) -> object:
    """``value`` as something h5ad stores and reads back unchanged in meaning."""
    if value is None:
        return "None"
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 1:
        # Arrays such as landmarks are kept as arrays elsewhere in the record.
        return f"array of shape {value.shape}"
    if isinstance(value, Mapping):
        return {str(k): h5ad_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [h5ad_value(v) for v in value]
    return str(value)


def make_record(
    params: Mapping[str, object],
    *,
    landmarks: np.ndarray | None,
    ls: float | None,
    obsm_key: str,
    groupby: str | None,
    **extra: object,
) -> dict:
    """The ``uns[key_added]`` entry of a run: parameters, version and inputs.

    :func:`write_run` adds ``fields``, the names of everything written.
    """
    import kompot  # at call time: kompot/__init__ may import this package

    record = {
        "params": {k: h5ad_value(v) for k, v in params.items() if k not in ("adata",)},
        "version": str(kompot.__version__),
        "groupby": h5ad_value(groupby),
        "obsm_key": obsm_key,
        "landmarks": np.asarray(landmarks, dtype=np.float64) if landmarks is not None else "None",
        "ls": float(ls) if ls is not None else "None",
    }
    record.update({k: h5ad_value(v) for k, v in extra.items()})
    _record_landmarks_used(record["params"], record["landmarks"])
    return record


def _record_landmarks_used(params: dict, landmarks) -> None:
    """``params["n_landmarks"]`` as the number of landmarks used (at most the cells).

    A request above the number of cells gets every cell as a landmark; the
    request is kept as ``n_landmarks_requested``.
    """
    requested = params.get("n_landmarks")
    if not isinstance(landmarks, np.ndarray) or not isinstance(requested, int):
        return
    if requested != landmarks.shape[0]:
        params["n_landmarks_requested"] = requested
        params["n_landmarks"] = int(landmarks.shape[0])


def _previous_fields(adata, key_added: str) -> dict[str, list[str]]:
    """Fields of an earlier kompot run stored under ``key_added`` (only names it owns)."""
    old = adata.uns.get(key_added)
    if not isinstance(old, Mapping) or not isinstance(old.get("fields"), Mapping):
        return {}
    # Only names derived from key_added, so a foreign dict can never delete user data.
    prefix = f"{key_added}_"
    return {
        slot: [str(n) for n in old["fields"].get(slot, []) if str(n).startswith(prefix)]
        for slot in FIELD_SLOTS
    }


def write_run(
    adata,
    key_added: str,
    record: dict,
    *,
    obs: Mapping[str, object] | None = None,
    var: Mapping[str, object] | None = None,
    layers: Mapping[str, np.ndarray] | None = None,
    uns: Mapping[str, object] | None = None,
) -> None:
    """Replace the run stored under ``key_added`` by this one and log what was written.

    Fields of an earlier run under the same key are removed (a re-run with
    other conditions would otherwise leave orphaned columns that no record
    points to); fields of other keys are never touched. The new ``obs``,
    ``var``, ``layers`` and ``uns`` are built aside first and then swapped in;
    if anything fails (or the run is interrupted) on the way, every slot gets
    its previous content back, so the earlier run stays intact and its record
    never points at deleted fields.
    """
    record = {**record, "fields": {
        slot: list(names or {})
        for slot, names in zip(FIELD_SLOTS, (obs, var, layers, uns), strict=True)
    }}
    staged = _stage(adata, key_added, record, obs=obs or {}, var=var or {}, layers=layers or {},
                    uns=uns or {})
    if adata.is_view:
        # Setting the first slot makes the view an actual AnnData (anndata's
        # setters copy it); say so, as anndata does when a view is modified.
        warnings.warn(
            "kompot writes its results into a view of an AnnData; the view becomes an actual "
            "AnnData (a copy), the AnnData it was taken from is left unchanged.",
            ViewModificationWarning, stacklevel=3,
        )
    _swap_in(adata, staged)
    written = [
        f"{slot}: {', '.join(record['fields'][slot])}"
        for slot in FIELD_SLOTS
        if len(record["fields"][slot])
    ]
    report(logger, "kompot wrote %s; record in uns[%r].", "; ".join(written), key_added)


def write_result(adata, keys, result, record: dict, *, gene_idx: np.ndarray | None = None,
                 copy: bool = False):
    """Write an analysis result into ``adata`` (or a copy) by its schema; ``None`` or the copy.

    Every computed field goes to its slot under its name in ``keys``, with
    the schema's dtype: categories (and their colours, in ``uns``) for
    categorical fields; per-gene and layer fields cover the genes
    ``gene_idx`` (``None``: all) and are NaN (``False`` for booleans) elsewhere.
    """
    slots = {"obs": {}, "var": {}, "layers": {}, "uns": {}}
    for field in result.fields:
        name, values = keys.name(field.name), result[field.name]
        if field.slot == "obs":
            if field.categories is not None:
                values = pd.Categorical(values, categories=list(field.categories))
            slots["obs"][name] = pd.Series(values, index=adata.obs_names)
            if field.colors is not None:
                slots["uns"][f"{name}_colors"] = list(field.colors)
        elif field.slot == "var":
            slots["var"][name] = _full_column(values, gene_idx, adata.var_names, field.dtype)
        else:
            slots["layers"][name] = full_layer(values, gene_idx, adata.n_vars, field.dtype)
    if copy:
        adata = adata.copy()
    write_run(adata, keys.key_added, record, **slots)
    return adata if copy else None


def _full_column(values, gene_idx, var_names: pd.Index, dtype: str) -> pd.Series:
    """A per-gene result over all genes: NaN (False for booleans) where not analysed."""
    if gene_idx is None:
        gene_idx = np.arange(len(var_names))
    full = np.full(len(var_names), False if dtype == "bool" else np.nan, dtype=dtype)
    full[gene_idx] = np.asarray(values)
    return pd.Series(full, index=var_names)


def full_layer(values: np.ndarray, gene_idx, n_vars: int, dtype: str = "float32") -> np.ndarray:
    """A cells x analysed-genes result as a cells x all-genes layer, NaN elsewhere.

    float32 halves the memory of these dense layers; the values are smoothed
    estimates whose uncertainty is far above float32 resolution. A dask
    array (layers on disk) stays lazy.
    """
    if is_lazy(values):
        return _full_lazy_layer(values, gene_idx, n_vars, dtype)
    if gene_idx is None or gene_idx.size == n_vars:
        return np.asarray(values, dtype=dtype)  # no copy when already of that dtype
    full = np.full((values.shape[0], n_vars), np.nan, dtype=dtype)
    full[:, gene_idx] = values
    return full


def _full_lazy_layer(values, gene_idx, n_vars: int, dtype: str):
    """:func:`full_layer` of a dask array: its columns and NaN columns, joined lazily.

    ``gene_idx`` is sorted, so each run of analysed genes is a slice of
    ``values`` and each run of other genes a block of NaN.
    """
    import dask.array as da

    values = values.astype(dtype)
    if gene_idx is None or gene_idx.size == n_vars:
        return values
    analysed = np.zeros(n_vars, bool)
    analysed[gene_idx] = True
    bounds = np.flatnonzero(np.diff(analysed.astype(np.int8))) + 1
    pieces, taken = [], 0
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, n_vars], strict=True):
        if analysed[start]:
            pieces.append(values[:, taken:taken + stop - start])
            taken += stop - start
        else:
            pieces.append(da.full((values.shape[0], stop - start), np.nan, dtype=dtype,
                                  chunks=(values.chunks[0], stop - start)))
    return da.concatenate(pieces, axis=1)


def _stage(adata, key_added: str, record: dict, *, obs, var, layers, uns) -> dict[str, object]:
    """The new content of every slot this run changes, built without touching ``adata``."""
    old = _previous_fields(adata, key_added)
    staged = {}
    for slot, new in (("obs", obs), ("var", var)):
        if new or old.get(slot):
            staged[slot] = _frame_with(getattr(adata, slot), old.get(slot, []), new)
    if layers or old.get("layers"):
        kept = {k: v for k, v in adata.layers.items() if k not in old.get("layers", [])}
        for name, values in layers.items():
            if tuple(np.shape(values)[:2]) != tuple(adata.shape):
                raise ValueError(
                    f"Layer {name!r} has shape {np.shape(values)}, but adata is {adata.shape}."
                )
        staged["layers"] = {**kept, **layers}
    kept = {k: v for k, v in adata.uns.items() if k not in old.get("uns", [])}
    staged["uns"] = {**kept, **uns, key_added: record}
    return staged


def _frame_with(frame, drop: list[str], add: Mapping[str, object]):
    """A new DataFrame: ``frame`` without the columns ``drop``, with the columns ``add``."""
    out = frame.drop(columns=[name for name in drop if name in frame.columns])
    for name, values in add.items():
        out[name] = values
    return out


def _get_slot(adata, slot: str):
    if slot == "layers":
        return dict(adata.layers)
    if slot == "uns":
        return dict(adata.uns)
    return getattr(adata, slot)


def _set_slot(adata, slot: str, value) -> None:
    if slot == "uns":  # in place: whoever holds adata.uns keeps seeing the record
        adata.uns.clear()
        adata.uns.update(value)
    else:
        setattr(adata, slot, value)


def _swap_in(adata, staged: dict[str, object]) -> None:
    """Set every staged slot; on any failure restore all slots as they were."""
    before = {slot: _get_slot(adata, slot) for slot in staged}
    try:
        for slot, value in staged.items():
            _set_slot(adata, slot, value)
    except BaseException:
        for slot, value in before.items():
            _set_slot(adata, slot, value)
        raise
