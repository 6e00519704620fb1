"""One gene's expression and change on an embedding, in several panels."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._keys import DE_KEY_DEFAULT
from ._common import axes_or_new, finish, is_smooth_run, panel_grid
from ._embedding import GENE_VALUES, draw_panel, gene_panels, resolve_basis


def expression(
    adata,
    gene: str,
    *,
    key: str = DE_KEY_DEFAULT,
    basis: str = "X_umap",
    values: Sequence[str] | str | None = None,
    layer: str | None = None,
    ncols: int = 4,
    wspace: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Axes | list[Axes] | Figure | None:
    """A gene's observed, smoothed (per condition) and fold-change panels on an embedding.

    The two smoothed panels share one colour scale, so that they compare
    directly; the log fold change (condition 2 minus condition 1 log
    expression) uses a diverging colour map centred at 0. Both smoothed
    surfaces are predicted at every cell, so each covers all cells whatever
    their condition. ``key`` may also name a
    :func:`kompot.tl.compute_smoothed_expression` run: its panels are the
    observed and the smoothed expression.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_expression` (with its layers)
        or :func:`kompot.tl.compute_smoothed_expression`.
    gene
        A name in ``adata.var_names``.
    key
        The ``key_added`` of the expression or smoothing run.
    basis
        Embedding in ``adata.obsm`` (``"X_umap"`` or ``"umap"``).
    values
        Which panels, in order: any of ``"observed"``, ``"smoothed"`` and
        ``"fold_change"``; ``None`` shows all that the run has.
    layer
        Layer of the observed panel; ``None`` uses the expression the run
        was fitted on.
    ncols
        Panels per row.
    wspace
        Width between panels, as scanpy's ``wspace``.
    ax
        Axes to draw into; only for a single panel (e.g. ``values="fold_change"``).
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` for every panel (e.g. ``size``,
        ``frameon``).

    Returns
    -------
    The Axes of a single panel, a list of Axes (colour bars not included)
    for several, the Figure with ``return_fig=True``, or ``None`` when shown.
    """
    obsm_key = resolve_basis(adata, basis)
    panels = []
    for value in _values(adata, key, values):
        panels += gene_panels(adata, gene, key, value, layer)
    coords = adata.obsm[obsm_key]
    if len(panels) == 1:
        fig, ax = axes_or_new(ax)
        draw_panel(panels[0], coords, obsm_key, ax, kwargs)
        return finish(ax, fig, show=show, return_fig=return_fig)
    if ax is not None:
        raise ValueError(
            f"`ax` takes a single panel, but {len(panels)} panels were asked for; pass "
            "values='fold_change' or 'observed' (one panel each), or leave ax=None."
        )
    fig, axes = panel_grid(len(panels), ncols, wspace=wspace)
    for panel, panel_ax in zip(panels, axes, strict=True):
        draw_panel(panel, coords, obsm_key, panel_ax, kwargs)
    return finish(axes, fig, show=show, return_fig=return_fig)


def _values(adata, key: str, values) -> list[str]:
    """The panels asked for, checked; by default all that the run ``key`` has."""
    if values is None:
        smooth = is_smooth_run(adata, key)
        return ["observed", "smoothed"] if smooth else list(GENE_VALUES[::-1])
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in GENE_VALUES]
    if bad or not values:
        raise ValueError(f"`values` must name panels among {GENE_VALUES}, got {values!r}.")
    return values
