"""kompot results on an embedding, drawn by :func:`scanpy.pl.embedding`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._keys import DA_KEY_DEFAULT, DE_KEY_DEFAULT, DAKeys
from ..models._schema import DA_SCHEMA, DE_SCHEMA, SMOOTH_SCHEMA
from ._common import (
    DIVERGING_CMAP,
    analysed_gene,
    axes_or_new,
    da_run,
    de_run,
    finish,
    gene_index,
    is_smooth_run,
    layer_column,
    observed_layer,
    panel_grid,
    smooth_fit_cells,
    smooth_run,
    symmetric_limit,
    versus,
)
from ._quantities import log_expression, run_log_base

# Short names of a differential-abundance run's per-cell fields: its schema's obs fields.
DA_FIELDS = tuple(f.name for f in DA_SCHEMA.in_slot("obs"))
GENE_VALUES = ("fold_change", "smoothed", "observed")
# scanpy options that need slots this view does not carry (neighbour graph).
_UNSUPPORTED = ("edges", "arrows", "neighbors_key", "use_raw", "gene_symbols", "save")


@dataclass
class Panel:
    """One panel: the values per cell, how to title it and whether it is signed."""

    values: pd.Series
    title: str
    signed: bool = False
    colors: list | None = None  # categorical colours from uns
    limits: tuple[float, float] | None = None  # colour limits shared with other panels


def resolve_basis(adata, basis: str) -> str:
    """The ``obsm`` key of ``basis``, accepting scanpy's ``"umap"`` for ``"X_umap"``."""
    for candidate in (basis, f"X_{basis}"):
        if candidate in adata.obsm:
            return candidate
    raise KeyError(
        f"Basis {basis!r} is not in adata.obsm (found: {list(adata.obsm)}). Pass one of those, "
        "or compute the embedding first (e.g. scanpy.tl.umap)."
    )


def _signed_obs_columns(adata) -> set[str]:
    """Log fold changes and z-scores of every kompot DA run stored in ``adata``."""
    signed = set()
    for name, record in adata.uns.items():
        if isinstance(record, Mapping) and {"condition1", "condition2"} <= set(record):
            keys = DAKeys(str(name), str(record["condition1"]), str(record["condition2"]))
            signed |= {keys.name(f.name) for f in DA_SCHEMA.in_slot("obs") if f.signed}
    return signed


def gene_panels(adata, gene: str, key: str, values: str | None,
                layer: str | None = None) -> list[Panel]:
    """Panels of one gene: its fold change, smoothed expression per condition, or observed.

    ``key`` may also name a :func:`kompot.tl.compute_smoothed_expression` run,
    whose one smoothed layer is shown (it has no fold change).
    """
    if is_smooth_run(adata, key):
        return _smooth_gene_panels(adata, gene, key, values or "smoothed", layer)
    values = values or "fold_change"
    keys = de_run(adata, key, layers=values != "observed")
    column = gene_index(adata, gene) if values == "observed" else analysed_gene(adata, keys, gene)
    index = adata.obs_names
    base = run_log_base(adata, key)
    if values == "fold_change":
        fold = layer_column(adata, keys.fold_change, column)
        field = DE_SCHEMA["fold_change"]
        title = f"{gene} {field.label_for(base)}\n{versus(keys)}"
        return [Panel(pd.Series(fold, index=index), title, field.signed)]
    if values == "smoothed":
        smoothed = [layer_column(adata, keys.smoothed(c), column)
                    for c in (keys.condition1, keys.condition2)]
        panels = [
            Panel(pd.Series(v, index=index), f"{gene} smoothed, {c}\n{log_expression(base)}")
            for v, c in zip(smoothed, (keys.condition1, keys.condition2), strict=True)
        ]
        shared_limits(panels)
        return panels
    return [_observed_panel(adata, gene, key, column, layer)]


def _smooth_gene_panels(adata, gene: str, key: str, values: str, layer: str | None):
    """The smoothed (or observed) panel of a gene from a smoothed-expression run."""
    if values == "fold_change":
        raise ValueError(
            f"The run {key!r} is a smoothed-expression run, which has no fold change; pass "
            "values='smoothed' (or 'observed'), or key= a differential-expression run."
        )
    keys = smooth_run(adata, key)
    column = gene_index(adata, gene)
    if values == "observed":
        return [_observed_panel(adata, gene, key, column, layer)]
    smoothed = layer_column(adata, keys.smoothed, column)
    if not np.isfinite(smoothed).any():
        raise ValueError(
            f"Gene {gene!r} was not smoothed by the run {key!r} (its values are NaN). Re-run "
            "kompot.tl.compute_smoothed_expression with genes= including it."
        )
    title = (f"{gene} smoothed, {smooth_fit_cells(adata, key)}\n"
             f"{SMOOTH_SCHEMA['smoothed'].label_for(run_log_base(adata, key))}")
    return [Panel(pd.Series(smoothed, index=adata.obs_names), title)]


def _observed_panel(adata, gene: str, key: str, column: int, layer: str | None) -> Panel:
    """The expression a run was fitted on (log expression), or another layer as named."""
    if layer is None:
        layer = observed_layer(adata, key)
        where = "adata.X" if layer is None else f"layer {layer}"
        subtitle = f"{log_expression(run_log_base(adata, key))}, {where}"
    else:
        subtitle = f"layer {layer}"
    observed = layer_column(adata, layer, column)
    return Panel(pd.Series(observed, index=adata.obs_names), f"{gene} observed\n{subtitle}")


def shared_limits(panels: list[Panel]) -> None:
    """One colour scale for the unsigned numeric panels of one gene, so that they compare."""
    numeric = [p for p in panels if not p.signed and not _has_legend(p)]
    if len(numeric) < 2:
        return
    values = np.concatenate([p.values.to_numpy(dtype=np.float64) for p in numeric])
    finite = values[np.isfinite(values)]
    if finite.size:
        for panel in numeric:
            panel.limits = (float(finite.min()), float(finite.max()))


def _panels(adata, colors: list[str], key: str | None, values: str | None, layer: str | None):
    signed_columns = _signed_obs_columns(adata)
    panels = []
    for color in colors:
        if color in DA_FIELDS and color not in adata.obs:
            panels.append(_da_field_panel(adata, color, key or DA_KEY_DEFAULT))
        elif color in adata.obs:
            panels.append(_obs_panel(adata, color, color, color in signed_columns))
        elif color in adata.var_names:
            panels += gene_panels(adata, color, key or DE_KEY_DEFAULT, values, layer)
        else:
            raise KeyError(
                f"`color` {color!r} is neither a kompot field ({', '.join(DA_FIELDS)}), a column "
                "of adata.obs, nor a gene in adata.var_names."
            )
    return panels


def _da_field_panel(adata, name: str, key: str) -> Panel:
    """The panel of one field of the DA run ``key``, titled and signed by its schema."""
    keys = da_run(adata, key)
    field = DA_SCHEMA[name]
    column = keys.name(name)
    if column not in adata.obs:
        raise KeyError(f"adata.obs has no {column!r}: the run {keys.key_added!r} did not write "
                       f"{name!r} (it needs {sorted(field.requires)}); re-run it.")
    scope = {"condition1": keys.condition1, "condition2": keys.condition2}.get(field.scope)
    title = f"{field.label}, {scope}" if scope else f"{field.label}\n({versus(keys)})"
    return _obs_panel(adata, column, title, field.signed)


def _per_panel_options(kwargs: dict, n_panels: int) -> list[dict]:
    """Split scanpy's per-panel options (lists, one entry per panel) out of ``kwargs``.

    A single value applies to every panel, as in scanpy; a title string names
    the first panel only.
    """
    options = [{} for _ in range(n_panels)]
    for name in ("title", "vmin", "vmax", "vcenter", "norm"):
        if name not in kwargs:
            continue
        value = kwargs.pop(name)
        if isinstance(value, str) and name == "title":
            value = [value]
        if isinstance(value, list | tuple):
            for option, entry in zip(options, value, strict=False):
                if entry is not None:
                    option[name] = entry
        else:
            for option in options:
                option[name] = value
    return options


def _has_legend(panel: Panel) -> bool:
    values = panel.values
    return isinstance(values.dtype, pd.CategoricalDtype) or values.dtype in (bool, object)


def _obs_panel(adata, column: str, title: str, signed: bool) -> Panel:
    values = adata.obs[column]
    colors = None
    if isinstance(values.dtype, pd.CategoricalDtype):
        stored = adata.uns.get(f"{column}_colors")
        if stored is not None and len(stored) >= len(values.cat.categories):
            colors = list(stored)
    return Panel(values, title, signed=signed, colors=colors)


def draw_panel(panel: Panel, coords: np.ndarray, basis: str, ax: Axes, kwargs: dict) -> Axes:
    """One panel through scanpy, on a minimal AnnData holding only what it needs."""
    import scanpy as sc

    kwargs = dict(kwargs)
    values = panel.values
    order = np.arange(values.size)
    categorical = _has_legend(panel)
    if kwargs.get("sort_order", True):
        if panel.signed:
            # Strong changes of either sign on top, NaN at the bottom (scanpy
            # would put the highest values on top and bury the negative ones).
            magnitude = np.abs(values.to_numpy(dtype=np.float64))
            order = np.argsort(np.nan_to_num(magnitude, nan=-1.0), kind="stable")
            kwargs["sort_order"] = False
        elif categorical and "neutral" in set(values.astype(str)):
            # Direction calls: neutral cells underneath.
            order = np.argsort(values.astype(str).to_numpy() != "neutral", kind="stable")
    for name in ("size", "s", "mask_obs"):
        given = kwargs.get(name)
        if isinstance(given, np.ndarray | pd.Series | Sequence) and not isinstance(given, str) \
                and len(given) == values.size:
            kwargs[name] = np.asarray(given)[order]
    column = "values"
    obs = pd.DataFrame({column: values.to_numpy()[order]}, index=values.index[order])
    if isinstance(values.dtype, pd.CategoricalDtype):
        obs[column] = pd.Categorical(obs[column], categories=values.cat.categories)
    mini = ad.AnnData(obs=obs, obsm={basis: coords[order]})
    if panel.colors is not None:
        mini.uns[f"{column}_colors"] = panel.colors
    if not categorical and kwargs.get("norm") is None:
        kwargs.pop("norm", None)
        vmax = kwargs.get("vmax")
        if panel.signed and (vmax is None or isinstance(vmax, Real)):
            # Centred at 0; a user's vmax sets the symmetric limit.
            limit = symmetric_limit(values) if vmax is None else float(vmax)
            kwargs["vmax"] = limit
            for name, default in (("vmin", -limit), ("vcenter", 0.0)):
                if kwargs.get(name) is None:
                    kwargs[name] = default
        elif panel.limits is not None and kwargs.get("vmin") is None and vmax is None:
            kwargs.update(vmin=panel.limits[0], vmax=panel.limits[1])
    if panel.signed and kwargs.get("cmap") is None and kwargs.get("color_map") is None:
        kwargs["cmap"] = DIVERGING_CMAP
    kwargs.setdefault("title", panel.title)
    # scanpy names the axes "UMAP1"... only for the short basis name.
    short = basis[2:] if basis.startswith("X_") else basis
    return sc.pl.embedding(mini, short, color=column, ax=ax, show=False, **kwargs)


def embedding(
    adata,
    basis: str = "X_umap",
    *,
    color: str | Sequence[str] = "lfc",
    key: str | None = None,
    values: str | None = None,
    layer: str | None = None,
    ncols: int = 4,
    wspace: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Axes | list[Axes] | Figure | None:
    """kompot results on an embedding, one panel per entry of ``color``.

    Each panel is drawn by :func:`scanpy.pl.embedding`. Signed fields (log
    fold changes, z-scores, a gene's fold change) get a diverging colour map
    centred at 0 with symmetric limits, and the cells with the strongest
    change of either sign are drawn on top.

    Parameters
    ----------
    adata
        Annotated data matrix with kompot results.
    basis
        Embedding in ``adata.obsm`` (``"X_umap"`` or ``"umap"``).
    color
        What to colour by, one name or a list (one panel each):

        - a field of the differential-abundance run ``key``, by its name in
          :data:`kompot.models.DA_SCHEMA`: ``"lfc"``, ``"lfc_std"``,
          ``"zscore"``, ``"neg_log10_ptp"``, ``"lfc_fdr"``, ``"direction"``,
          and, where the run wrote them, ``"lfc_pvalue"``,
          ``"lfc_sample_std"``, ``"log_density1"``, ``"log_density2"``;
        - a gene of the differential-expression run ``key``, shown as
          selected by ``values``, or of the smoothed-expression run ``key``
          (:func:`kompot.tl.compute_smoothed_expression`);
        - any column of ``adata.obs``.
    key
        ``key_added`` of the run to read; ``None`` uses ``"kompot_da"`` for
        abundance fields and ``"kompot_de"`` for genes.
    values
        For genes: ``"fold_change"`` (condition 2 minus condition 1 log
        expression), ``"smoothed"`` (one panel per condition, on a shared
        colour scale; the one smoothed layer of a smoothed-expression run) or
        ``"observed"`` (the expression the run was fitted on). ``None`` shows
        the fold change of a differential-expression run and the smoothed
        expression of a smoothed-expression run.
    layer
        With ``values="observed"``, read this layer instead of the run's input.
    ncols
        Panels per row when there are several.
    wspace
        Width between panels, as scanpy's ``wspace``.
    ax
        Axes to draw a single panel into.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``size``, ``cmap``,
        ``vmax``, ``legend_loc``, ``frameon``, ``title``). Options that need
        the neighbour graph (``edges``, ``arrows``) are not available here.

    Returns
    -------
    The Axes (a list of Axes for several panels), the Figure with
    ``return_fig=True``, or ``None`` when shown.
    """
    if values is not None and values not in GENE_VALUES:
        raise ValueError(f"`values` must be None or one of {GENE_VALUES}, got {values!r}.")
    bad = sorted(set(kwargs) & set(_UNSUPPORTED))
    if bad:
        raise ValueError(
            f"{bad} are not supported by kompot.pl.embedding; use scanpy.pl.embedding directly "
            "with the kompot columns for those."
        )
    colors = [color] if isinstance(color, str) else list(color)
    if not colors:
        raise ValueError("`color` is empty; pass at least one field, gene or obs column.")
    obsm_key = resolve_basis(adata, basis)
    panels = _panels(adata, colors, key, values, layer)
    coords = np.asarray(adata.obsm[obsm_key])
    if isinstance(kwargs.get("mask_obs"), str):  # an obs column, which the panels do not carry
        kwargs["mask_obs"] = adata.obs[kwargs["mask_obs"]].to_numpy(dtype=bool)
    per_panel = _per_panel_options(kwargs, len(panels))
    if len(panels) == 1:
        fig, ax = axes_or_new(ax)
        draw_panel(panels[0], coords, obsm_key, ax, {**kwargs, **per_panel[0]})
        return finish(ax, fig, show=show, return_fig=return_fig)
    if ax is not None:
        raise ValueError(
            f"`ax` takes a single panel, but {len(panels)} panels were asked for; pass one "
            "`color` (and values other than 'smoothed'), or leave ax=None."
        )
    if wspace is None and any(_has_legend(p) for i, p in enumerate(panels) if (i + 1) % ncols):
        # Room for a category legend between panels (scanpy's default clips it).
        wspace = 0.75 / mpl.rcParams["figure.figsize"][0] + 0.17
    fig, axes = panel_grid(len(panels), ncols, wspace=wspace)
    for panel, panel_ax, options in zip(panels, axes, per_panel, strict=True):
        draw_panel(panel, coords, obsm_key, panel_ax, {**kwargs, **options})
    return finish(axes, fig, show=show, return_fig=return_fig)
