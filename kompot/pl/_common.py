"""What every kompot plot shares: finding a run's fields, axes, colours and showing.

Plots read only what :mod:`kompot.tl` wrote, through the names in
:mod:`kompot._keys`, and never modify ``adata``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import sparse

from .._keys import (
    DIRECTION_CATEGORIES,
    DIRECTION_COLORS,
    DAKeys,
    DEKeys,
    SmoothKeys,
    keys_from_uns,
)

# Diverging map for signed fields, through the direction colours: blue for lower
# in condition 2, red for higher. Its centre is light grey rather than white
# (as in RdBu), so that cells without change stay visible on a white background.
DIVERGING_CMAP = mpl.colors.LinearSegmentedColormap.from_list(
    "kompot_diverging", ["#053061", DIRECTION_COLORS[0], "#d0d0d0", DIRECTION_COLORS[2], "#67001f"]
)


# ---------------------------------------------------------------- runs
def _record(adata, key: str) -> Mapping:
    if key not in adata.uns:
        keys_from_uns(adata, key, DAKeys)  # raises the KeyError that names the fix
    record = adata.uns[key]
    if not isinstance(record, Mapping) or not {"condition1", "condition2"} <= set(record):
        raise KeyError(
            f"adata.uns[{key!r}] is not a kompot run record (it has no condition1/condition2). "
            "Pass the key_added of a kompot.tl run."
        )
    return record


def da_run(adata, key: str) -> DAKeys:
    """Names of the differential-abundance run stored under ``key``, checked to exist."""
    _record(adata, key)
    keys = keys_from_uns(adata, key, DAKeys)
    missing = [c for c in (keys.lfc, keys.neg_log10_ptp, keys.direction) if c not in adata.obs]
    if missing:
        raise KeyError(
            f"adata.uns[{key!r}] is not a differential-abundance run: adata.obs lacks {missing}. "
            "Pass key= the key_added of kompot.tl.compute_differential_abundance, or re-run it."
        )
    return keys


def de_run(adata, key: str, *, layers: bool = False) -> DEKeys:
    """Names of the differential-expression run under ``key``; ``layers`` requires its layers."""
    _record(adata, key)
    keys = keys_from_uns(adata, key, DEKeys)
    missing = [c for c in (keys.mean_lfc, keys.mahalanobis) if c not in adata.var]
    if missing:
        raise KeyError(
            f"adata.uns[{key!r}] is not a differential-expression run: adata.var lacks {missing}. "
            "Pass key= the key_added of kompot.tl.compute_differential_expression, or re-run it."
        )
    if layers:
        absent = [name for name in keys.layer_names() if name not in adata.layers]
        if absent:
            raise KeyError(
                f"The run {key!r} stored no per-cell layers ({absent} missing). Re-run "
                "kompot.tl.compute_differential_expression with store_layers=True."
            )
    return keys


def is_smooth_run(adata, key: str) -> bool:
    """Whether ``key`` names a :func:`kompot.tl.compute_smoothed_expression` run."""
    record = adata.uns.get(key)
    if not isinstance(record, Mapping) or "condition1" in record:
        return False
    fields = record.get("fields", {})
    layers = fields.get("layers", []) if isinstance(fields, Mapping) else []
    return SmoothKeys(key).smoothed in [str(name) for name in layers]


def smooth_run(adata, key: str) -> SmoothKeys:
    """Names of the smoothed-expression run under ``key``, its layers checked to exist."""
    keys = SmoothKeys(key)
    if keys.smoothed not in adata.layers:
        raise KeyError(
            f"adata.layers has no {keys.smoothed!r}; re-run kompot.tl.compute_smoothed_expression "
            f"with key_added={key!r}."
        )
    return keys


def smooth_fit_cells(adata, key: str) -> str:
    """``"fit on control"`` or ``"fit on all cells"``: which cells a smoothing run used."""
    condition = run_param(adata, key, "condition")
    return "fit on all cells" if condition is None else f"fit on {condition}"


def run_param(adata, key: str, name: str):
    """A parameter recorded for run ``key``, or ``None`` (also for the stored string "None")."""
    value = adata.uns[key].get("params", {}).get(name)
    return None if value is None or (isinstance(value, str) and value == "None") else value


def gene_index(adata, gene: str) -> int:
    """Column of ``gene`` in ``adata``, with an error that lists a few valid names."""
    if gene not in adata.var_names:
        raise KeyError(
            f"Gene {gene!r} is not in adata.var_names (e.g. {list(adata.var_names[:3])}). "
            "Pass a name from adata.var_names."
        )
    location = adata.var_names.get_loc(gene)
    if not isinstance(location, int | np.integer):
        raise ValueError(
            f"Gene {gene!r} occurs more than once in adata.var_names, so the name does not say "
            "which column to plot. Run adata.var_names_make_unique() (before kompot.tl, so that "
            "the run's results follow the new names)."
        )
    return int(location)


def analysed_gene(adata, keys: DEKeys, gene: str) -> int:
    """Column of ``gene``, which the run must have analysed (its results are NaN otherwise)."""
    column = gene_index(adata, gene)
    if not np.isfinite(adata.var[keys.mahalanobis].iloc[column]):
        raise ValueError(
            f"Gene {gene!r} was not analysed by the run {keys.key_added!r} (its results are NaN). "
            "Re-run kompot.tl.compute_differential_expression with genes= including it."
        )
    return column


def layer_column(adata, layer: str | None, column: int) -> np.ndarray:
    """One gene's values from ``adata.X`` (``layer=None``) or a layer, as float64."""
    matrix = adata.X if layer is None else adata.layers[layer]
    values = matrix[:, column]
    if sparse.issparse(values):
        values = values.toarray()
    return np.asarray(values, dtype=np.float64).ravel()


def observed_layer(adata, key: str) -> str | None:
    """The layer a DE run read its expression from (``None`` for ``adata.X``)."""
    layer = run_param(adata, key, "layer")
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"The run {key!r} read adata.layers[{layer!r}], which no longer exists.")
    return layer


def versus(keys: DAKeys | DEKeys) -> str:
    """``"treated vs control"``: condition 2 against the reference."""
    return f"{keys.condition2} vs {keys.condition1}"


# ---------------------------------------------------------------- colours
def symmetric_limit(values: np.ndarray) -> float:
    """Largest finite absolute value (1 when there is none), for limits centred at 0."""
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def centred_norm(values: np.ndarray, vmax: float | None = None) -> mpl.colors.TwoSlopeNorm:
    """A norm centred at 0 with symmetric limits ``-vmax .. vmax``."""
    limit = symmetric_limit(values) if vmax is None else float(vmax)
    return mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def category_colors(adata, column: str, categories: Sequence) -> list[str]:
    """Colours of ``categories`` of ``obs[column]``: ``uns[f"{column}_colors"]`` when complete.

    Falls back to the direction colours for direction calls and to scanpy's
    default palettes otherwise, without writing anything into ``adata``.
    """
    stored = adata.uns.get(f"{column}_colors")
    all_categories = list(adata.obs[column].cat.categories) if isinstance(
        adata.obs[column].dtype, pd.CategoricalDtype
    ) else list(categories)
    if stored is not None and len(stored) >= len(all_categories):
        lookup = dict(zip(all_categories, list(stored), strict=False))
        return [lookup[c] for c in categories]
    if list(categories) == list(DIRECTION_CATEGORIES):
        return list(DIRECTION_COLORS)
    from scanpy.plotting import palettes

    n = len(all_categories)
    palette = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
    lookup = {c: palette[i % len(palette)] for i, c in enumerate(all_categories)}
    return [lookup[c] for c in categories]


def default_size(n_points: int) -> float:
    """Marker area: the rcParams default, shrunk for many points as scanpy does."""
    return float(min(mpl.rcParams["lines.markersize"] ** 2, 120_000 / max(n_points, 1)))


# ---------------------------------------------------------------- axes and showing
def axes_or_new(ax: Axes | None) -> tuple[Figure, Axes]:
    """The given Axes and its figure, or a new figure of rcParams' size."""
    if ax is None:
        fig, ax = plt.subplots()
        return fig, ax
    return ax.figure, ax


def panel_grid(n_panels: int, ncols: int, *, wspace: float | None = None, hspace: float = 0.25):
    """A figure with one rcParams-sized cell per panel, laid out like scanpy's panel grid."""
    if ncols < 1:
        raise ValueError(f"`ncols` must be a positive integer, got {ncols!r}.")
    if wspace is None:
        wspace = 0.75 / mpl.rcParams["figure.figsize"][0] + 0.02
    nx = min(ncols, n_panels)
    ny = int(np.ceil(n_panels / nx))
    width, height = mpl.rcParams["figure.figsize"]
    fig = plt.figure(figsize=(nx * width * (1 + wspace), ny * height))
    left, bottom = 0.2 / nx, 0.13 / ny
    grid = fig.add_gridspec(
        nrows=ny, ncols=nx, left=left, right=1 - (nx - 1) * left - 0.01 / nx,
        bottom=bottom, top=1 - (ny - 1) * bottom - 0.1 / ny, hspace=hspace, wspace=wspace,
    )
    axes = [fig.add_subplot(grid[i // nx, i % nx]) for i in range(n_panels)]
    return fig, axes


def should_show(show: bool | None) -> bool:
    """scanpy's rule, for scripts too: ``None`` shows only in interactive sessions."""
    if show is not None:
        return bool(show)
    import scanpy as sc

    return bool(sc.settings.autoshow) and mpl.is_interactive()


def finish(result, fig: Figure, *, show: bool | None, return_fig: bool):
    """Return the figure, or show it (returning ``None``, as scanpy does), or the Axes."""
    if return_fig:
        return fig
    if should_show(show):
        plt.show()
        return None
    return result
