"""One gene's expression and change on an embedding, in several panels."""

from __future__ import annotations

from matplotlib.figure import Figure

from .._keys import DE_KEY_DEFAULT
from ._common import finish, panel_grid
from ._embedding import draw_panel, gene_panels, resolve_basis


def expression(
    adata,
    gene: str,
    *,
    key: str = DE_KEY_DEFAULT,
    basis: str = "X_umap",
    layer: str | None = None,
    ncols: int = 4,
    wspace: float | None = None,
    show: bool | None = None,
    **kwargs,
) -> Figure | None:
    """A gene's observed, smoothed (per condition) and fold-change panels on an embedding.

    The two smoothed panels share one colour scale, so that they compare
    directly; the fold change (condition 2 minus condition 1) uses a
    diverging colour map centred at 0. Both smoothed surfaces are predicted
    at every cell, so each covers all cells whatever their condition.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_expression` (with its layers).
    gene
        A name in ``adata.var_names``.
    key
        The ``key_added`` of the expression run.
    basis
        Embedding in ``adata.obsm`` (``"X_umap"`` or ``"umap"``).
    layer
        Layer of the observed panel; ``None`` uses the expression the run
        was fitted on.
    ncols
        Panels per row.
    wspace
        Width between panels, as scanpy's ``wspace``.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` for every panel (e.g. ``size``,
        ``frameon``).

    Returns
    -------
    The Figure (its panels are ``fig.axes``, colour bars included), or
    ``None`` when shown.
    """
    obsm_key = resolve_basis(adata, basis)
    panels = (
        gene_panels(adata, gene, key, "observed", layer)
        + gene_panels(adata, gene, key, "smoothed")
        + gene_panels(adata, gene, key, "fold_change")
    )
    fig, axes = panel_grid(len(panels), ncols, wspace=wspace)
    coords = adata.obsm[obsm_key]
    for panel, ax in zip(panels, axes, strict=True):
        draw_panel(panel, coords, obsm_key, ax, kwargs)
    return finish(fig, fig, show=show, return_fig=False)
