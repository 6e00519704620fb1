"""Share of up / neutral / down cells per group."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._keys import DA_KEY_DEFAULT, DIRECTION_CATEGORIES
from ._common import axes_or_new, category_colors, da_run, finish, versus


def direction_shares(adata, groupby: str, direction: str, *, normalize: bool = True) -> pd.DataFrame:
    """Cells (or their share) of each direction call per group (rows groups, columns calls)."""
    groups = adata.obs[groupby]
    if not isinstance(groups.dtype, pd.CategoricalDtype):
        groups = groups.astype("category")
    calls = pd.Categorical(adata.obs[direction].astype(str), categories=list(DIRECTION_CATEGORIES))
    table = pd.crosstab(groups, calls, dropna=True).reindex(columns=list(DIRECTION_CATEGORIES),
                                                            fill_value=0)
    present = [c for c in groups.cat.categories if c in table.index and table.loc[c].sum() > 0]
    table = table.loc[present]
    if normalize:
        table = table.div(table.sum(axis=1), axis=0)
    return table


def direction_barplot(
    adata,
    groupby: str,
    *,
    key: str = DA_KEY_DEFAULT,
    normalize: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **bar_kwargs,
) -> Axes | Figure | None:
    """Stacked bars of the share of cells called down, neutral and up in each group.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_abundance`.
    groupby
        Column of ``adata.obs`` defining the groups (bars), e.g. cell types.
    key
        The ``key_added`` of the abundance run.
    normalize
        Show shares of each group's cells; ``False`` shows cell counts.
    ax
        Axes to draw into; a new figure when ``None``.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.
    **bar_kwargs
        Passed to :meth:`matplotlib.axes.Axes.bar` (e.g. ``width``).

    Returns
    -------
    The Axes, the Figure with ``return_fig=True``, or ``None`` when shown.
    """
    keys = da_run(adata, key)
    if groupby not in adata.obs:
        raise KeyError(f"`groupby` {groupby!r} is not a column of adata.obs; pass one of its columns.")
    counts = direction_shares(adata, groupby, keys.direction, normalize=False)
    table = counts.div(counts.sum(axis=1), axis=0) if normalize else counts
    colors = category_colors(adata, keys.direction, list(DIRECTION_CATEGORIES))

    fig, ax = axes_or_new(ax)
    positions = np.arange(table.shape[0])
    bottom = np.zeros(table.shape[0])
    style = {"width": 0.8, "edgecolor": "white", "linewidth": 0.5, **bar_kwargs}
    # Stack down, neutral, up from the bottom; the legend lists them top-down.
    for call, color in zip(DIRECTION_CATEGORIES, colors, strict=True):
        heights = table[call].to_numpy(dtype=np.float64)
        ax.bar(positions, heights, bottom=bottom, color=color, label=call, **style)
        bottom += heights
    names = [f"{g} (n={int(n)})" for g, n in zip(table.index, counts.sum(axis=1), strict=True)]
    ax.set_xticks(positions, names, rotation=90)
    ax.set_xlabel(groupby)
    ax.set_ylabel("share of cells" if normalize else "cells")
    if normalize:
        ax.set_ylim(0, 1)
    ax.set_title(f"Differential abundance: {versus(keys)}")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, fontsize="small")
    return finish(ax, fig, show=show, return_fig=return_fig)
