"""Heatmap of the top differentially expressed genes across cell groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._keys import DE_KEY_DEFAULT
from ._common import (
    DIVERGING_CMAP,
    analysed_gene,
    axes_or_new,
    centred_norm,
    de_run,
    finish,
    gene_index,
    run_param,
    versus,
)
from ._quantities import expression_lfc, log_expression, run_log_base

HEATMAP_VALUES = ("fold_change", "smoothed")


def top_genes(adata, keys, n_genes: int) -> list[str]:
    """The ``n_genes`` genes with the largest Mahalanobis distance, ordered by mean fold change."""
    distance = adata.var[keys.mahalanobis]
    top = distance.dropna().sort_values(ascending=False, kind="stable").index[:n_genes]
    # Up genes on top, down genes at the bottom: the blocks of colour read at a glance.
    return list(adata.var.loc[top, keys.mean_lfc].sort_values(ascending=False, kind="stable").index)


def group_means(adata, layer: str, genes: list[str], groups: pd.Series) -> pd.DataFrame:
    """Mean of ``layer`` over the cells of each group (rows genes, columns groups)."""
    columns = [gene_index(adata, g) for g in genes]
    block = np.asarray(adata.layers[layer][:, columns], dtype=np.float64)
    codes = groups.cat.codes.to_numpy()
    present = [c for c in range(len(groups.cat.categories)) if np.any(codes == c)]
    means = np.stack([np.nanmean(block[codes == c], axis=0) for c in present], axis=1)
    return pd.DataFrame(means, index=genes, columns=groups.cat.categories[present])


def heatmap(
    adata,
    *,
    groupby: str,
    key: str = DE_KEY_DEFAULT,
    n_genes: int = 20,
    genes: Sequence[str] | None = None,
    values: str = "fold_change",
    standard_scale: str | None = None,
    cmap: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Top differentially expressed genes (rows) across cell groups (columns).

    Each entry is the mean over a group's cells of the gene's log fold change
    (condition 2 minus condition 1 log expression, on a colour scale centred
    at 0) or, with ``values="smoothed"``, of each condition's smoothed log
    expression, side by side per group. Group labels give the number of
    cells; genes the run called differentially expressed (``is_de``, when it
    computed an FDR) are marked with ``*``. The fold change and smoothed expression exist at every
    cell state, so all cells of a group count, whatever their condition.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_expression` (with its layers).
    groupby
        Categorical column of ``adata.obs`` defining the groups, e.g. cell types.
    key
        The ``key_added`` of the expression run.
    n_genes
        Number of genes with the largest Mahalanobis distance to show
        (ordered by mean fold change, increases first).
    genes
        Genes to show instead, in this order.
    values
        ``"fold_change"`` or ``"smoothed"``.
    standard_scale
        With ``"gene"``, rescale each gene's smoothed values to 0..1 so that
        genes of different expression levels compare (``values="smoothed"`` only).
    cmap
        Colour map; ``None`` uses a diverging map for fold changes and the
        rcParams default for expression.
    ax
        Axes to draw into; a new figure when ``None``.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.

    Returns
    -------
    The Axes, the Figure with ``return_fig=True``, or ``None`` when shown.
    """
    keys = de_run(adata, key, layers=True)
    if values not in HEATMAP_VALUES:
        raise ValueError(f"`values` must be one of {HEATMAP_VALUES}, got {values!r}.")
    if standard_scale not in (None, "gene"):
        raise ValueError(f"`standard_scale` must be None or 'gene', got {standard_scale!r}.")
    if standard_scale is not None and values != "smoothed":
        raise ValueError("`standard_scale='gene'` applies to values='smoothed' only.")
    if groupby not in adata.obs:
        raise KeyError(f"`groupby` {groupby!r} is not a column of adata.obs; pass one of its columns.")
    if genes is None:
        if int(n_genes) < 1:
            raise ValueError(f"`n_genes` must be a positive integer, got {n_genes!r}.")
        genes = top_genes(adata, keys, int(n_genes))
    else:
        genes = [genes] if isinstance(genes, str) else list(genes)
        for gene in genes:
            analysed_gene(adata, keys, gene)
    groups = adata.obs[groupby]
    if not isinstance(groups.dtype, pd.CategoricalDtype):
        groups = groups.astype("category")
    base = run_log_base(adata, key)

    fig, ax = axes_or_new(ax)
    if values == "fold_change":
        table = group_means(adata, keys.fold_change, genes, groups)
        image = ax.imshow(table.to_numpy(), aspect="auto", interpolation="nearest",
                          cmap=cmap or DIVERGING_CMAP, norm=centred_norm(table.to_numpy()))
        names = group_names(table.columns, groups)
        label = expression_lfc(base, "mean ") + f"\n{versus(keys)}"
    else:
        image, names = _draw_smoothed(ax, adata, keys, genes, groups, standard_scale, cmap)
        label = ("smoothed expression, scaled 0-1 per gene" if standard_scale
                 else log_expression(base, "smoothed "))
    ax.set_xticks(range(len(names)), names, rotation=90)
    ticks, note = significance_marks(adata, keys, genes)
    ax.set_yticks(range(len(genes)), ticks)
    ax.tick_params(length=0)
    ax.set_xlabel(groupby)
    ax.set_ylabel(note)
    ax.set_title(f"Differential expression: {versus(keys)}")
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    return finish(ax, fig, show=show, return_fig=return_fig)


def group_names(present: pd.Index, groups: pd.Series) -> list[str]:
    """``"group (n=123)"``: each group with its number of cells."""
    counts = groups.value_counts(sort=False)
    return [f"{g} (n={int(counts[g])})" for g in present]


def significance_marks(adata, keys, genes: list[str]) -> tuple[list[str], str]:
    """Gene tick labels with ``*`` for genes the run called, and the note that explains it.

    Runs without an FDR made no calls; their genes are shown unmarked.
    """
    if keys.is_de not in adata.var:
        return list(genes), "genes (no FDR computed)"
    called = adata.var[keys.is_de]
    threshold = run_param(adata, keys.key_added, "fdr_threshold")
    level = f" {threshold:g}" if threshold is not None else ""
    ticks = [f"{g} *" if bool(called.iloc[gene_index(adata, g)]) else g for g in genes]
    return ticks, f"genes (* tail FDR \u2264{level})"


def _draw_smoothed(ax, adata, keys, genes, groups, standard_scale, cmap):
    """Both conditions' smoothed expression, side by side per group."""
    conditions = (keys.condition1, keys.condition2)
    parts = [group_means(adata, keys.smoothed(c), genes, groups) for c in conditions]
    # Columns alternate condition 1, condition 2 within each group.
    matrix = np.stack([p.to_numpy() for p in parts], axis=2).reshape(len(genes), -1)
    if standard_scale == "gene":
        low = np.nanmin(matrix, axis=1, keepdims=True)
        span = np.nanmax(matrix, axis=1, keepdims=True) - low
        matrix = (matrix - low) / np.where(span > 0, span, 1.0)
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap)
    names = [f"{g} · {c}" for g in group_names(parts[0].columns, groups) for c in conditions]
    # Thin white lines between groups keep condition pairs together.
    for boundary in np.arange(2, matrix.shape[1], 2) - 0.5:
        ax.axvline(boundary, color="white", lw=1.5)
    return image, names
