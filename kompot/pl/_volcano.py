"""Volcano plots: per-gene (differential expression) and per-cell (differential abundance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._keys import DA_KEY_DEFAULT, DE_KEY_DEFAULT, DIRECTION_COLORS
from ..models._schema import DA_SCHEMA, DE_SCHEMA
from ._common import (
    DIVERGING_CMAP,
    axes_or_new,
    category_colors,
    centred_norm,
    da_run,
    de_run,
    default_size,
    finish,
    run_param,
    versus,
)
from ._labels import place_labels
from ._quantities import neg_log10, run_log_base

_SCORES = ("mahalanobis", "local_fdr", "tail_fdr", "pvalue")
# Distances as they are, p-values and FDRs as -log10.
_SCORE_LABELS = {
    name: DE_SCHEMA[name].label if name == "mahalanobis" else neg_log10(DE_SCHEMA[name].label)
    for name in _SCORES
}
_THRESHOLD_STYLE = dict(color="0.35", lw=0.8, ls="--", zorder=1)


def _neg_log10(p: np.ndarray) -> np.ndarray:
    # FDRs of exactly 0 would be infinite; clip at the smallest positive double.
    return -np.log10(np.clip(np.asarray(p, dtype=np.float64), np.finfo(np.float64).tiny, None))


def volcano_de(
    adata,
    *,
    key: str = DE_KEY_DEFAULT,
    score: str = "mahalanobis",
    n_top_labels: int = 10,
    fdr_threshold: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **scatter_kwargs,
) -> Axes | Figure | None:
    """Volcano plot of a differential-expression run: one point per gene.

    The x axis is the gene's mean log fold change (condition 2 minus
    condition 1, averaged over the cells of both conditions), the y axis its
    evidence for a change. Genes called differentially expressed are
    coloured red (up) or blue (down); the strongest ones are labelled.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_expression`.
    key
        The ``key_added`` of that run.
    score
        The y axis: ``"mahalanobis"`` (distance between the two conditions'
        expression), or ``"local_fdr"``, ``"tail_fdr"`` or ``"pvalue"``,
        drawn as ``-log10``.
    n_top_labels
        Number of genes to label, those with the highest score.
    fdr_threshold
        Call genes significant at this FDR instead of using the run's stored
        calls. The FDR is ``score`` when that is an FDR or p-value column,
        the tail FDR otherwise.
    ax
        Axes to draw into; a new figure when ``None``.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s``, ``alpha``).

    Returns
    -------
    The Axes, the Figure with ``return_fig=True``, or ``None`` when shown.
    """
    keys = de_run(adata, key)
    if score not in _SCORES:
        raise ValueError(f"`score` must be one of {_SCORES}, got {score!r}.")
    columns = {name: keys.name(name) for name in _SCORES}
    fdr_column = columns[score] if score != "mahalanobis" else keys.tail_fdr
    needed = [columns[score]] + ([fdr_column] if fdr_threshold is not None else [])
    for column in needed:
        if column not in adata.var:
            raise KeyError(
                f"adata.var has no {column!r}: the run {key!r} computed no FDR. Re-run "
                "kompot.tl.compute_differential_expression with fdr=True, or use score='mahalanobis'."
            )
    if fdr_threshold is not None and not 0 < fdr_threshold <= 1:
        raise ValueError(f"`fdr_threshold` must lie in (0, 1], got {fdr_threshold!r}.")

    var = adata.var
    analysed = var[keys.mahalanobis].notna().to_numpy()  # genes outside `genes=` are NaN
    lfc = var[keys.mean_lfc].to_numpy(dtype=np.float64)[analysed]
    raw_score = var[columns[score]].to_numpy(dtype=np.float64)[analysed]
    y = raw_score if score == "mahalanobis" else _neg_log10(raw_score)
    if fdr_threshold is not None:
        significant = var[fdr_column].to_numpy(dtype=np.float64)[analysed] <= fdr_threshold
    elif keys.is_de in var:
        significant = var[keys.is_de].to_numpy(dtype=bool)[analysed]
    else:
        significant = None  # the run made no calls (fdr=False)
    names = adata.var_names[analysed]

    fig, ax = axes_or_new(ax)
    size = scatter_kwargs.pop("s", default_size(lfc.size))
    down, neutral, up = DIRECTION_COLORS
    called = np.zeros(lfc.size, dtype=bool) if significant is None else significant
    groups = [
        ("not significant" if significant is not None else "genes (no FDR computed)",
         ~called, neutral),
        ("down", called & (lfc < 0), down),
        ("up", called & (lfc >= 0), up),
    ]
    for label, mask, color in groups:
        # Drawn even when empty, so that collection i is always the same group;
        # without calls, the empty groups stay out of the legend ("_" labels).
        label = f"{label} ({mask.sum()})" if significant is not None or mask.any() else "_"
        ax.scatter(lfc[mask], y[mask], s=size, c=color, label=label,
                   edgecolors="none", **{"zorder": 2, **scatter_kwargs})
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    _draw_de_threshold(ax, adata, key, score, y, called, fdr_threshold)
    ax.set_xlabel(f"{DE_SCHEMA['mean_lfc'].label_for(run_log_base(adata, key))}, {versus(keys)}")
    ax.set_ylabel(_SCORE_LABELS[score])
    ax.set_title(f"Differential expression: {versus(keys)}")
    ax.legend(loc="best", fontsize="small", frameon=False, markerscale=1.0)

    n_labels = int(min(max(n_top_labels, 0), lfc.size))
    if n_labels:
        # Rank by score; ties by absolute fold change.
        top = np.lexsort((-np.abs(lfc), -np.nan_to_num(y, nan=-np.inf)))[:n_labels]
        ax.margins(x=0.12, y=0.1)  # room for labels of the outermost genes
        ax.set_xlim(ax.get_xlim())  # freeze: the placement depends on the scaling
        ax.set_ylim(ax.get_ylim())
        place_labels(ax, lfc[top], y[top], [str(n) for n in names[top]], marker_size=size,
                     avoid=np.column_stack([lfc, y]))
    return finish(ax, fig, show=show, return_fig=return_fig)


def _draw_de_threshold(ax, adata, key, score, y, significant, fdr_threshold) -> None:
    """The boundary of the significance call, where it is a line on this y axis."""
    threshold = fdr_threshold
    if threshold is None and score == "tail_fdr":
        threshold = run_param(adata, key, "fdr_threshold")
    if score != "mahalanobis" and threshold is not None:
        ax.axhline(_neg_log10(np.array([threshold]))[0], **_THRESHOLD_STYLE,
                   label=f"FDR {threshold:g}")
        return
    if score == "mahalanobis" and significant.any() and (~significant).any():
        # The call is an FDR on the distances: draw the boundary only when it
        # separates the genes cleanly (a single distance cut-off).
        lowest_called, highest_not = y[significant].min(), y[~significant].max()
        if lowest_called > highest_not:
            ax.axhline(0.5 * (lowest_called + highest_not), **_THRESHOLD_STYLE,
                       label="significance cut-off")


def volcano_da(
    adata,
    *,
    key: str = DA_KEY_DEFAULT,
    color: str | None = None,
    score: str | None = None,
    lfc_threshold: float | None = None,
    ptp_threshold: float | None = None,
    fdr_threshold: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **scatter_kwargs,
) -> Axes | Figure | None:
    """Volcano plot of a differential-abundance run: one point per cell.

    The x axis is the log fold change of abundance (condition 2 over
    condition 1, natural log) at the cell's state, the y axis ``-log10`` of
    the score the run's calls were made with: the false-discovery rate for
    ``direction_by="fdr"`` (the default), the posterior tail probability
    (PTP) for ``direction_by="ptp"``. Dashed lines mark that rule's
    thresholds, so the coloured calls lie exactly beyond them.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of
        :func:`kompot.tl.compute_differential_abundance`.
    key
        The ``key_added`` of that run.
    color
        Column of ``adata.obs`` to colour cells by; ``None`` uses the run's
        up/neutral/down calls. Categories take their colours from
        ``adata.uns[f"{color}_colors"]``; numeric columns get a colour bar.
    score
        ``"fdr"`` or ``"ptp"`` on the y axis; ``None`` uses the run's rule.
    lfc_threshold
        Absolute log fold change drawn as vertical lines (none at 0);
        ``None`` uses the run's threshold.
    ptp_threshold, fdr_threshold
        Level drawn as a horizontal line for the PTP or the FDR; ``None``
        uses the run's threshold.
    ax
        Axes to draw into; a new figure when ``None``.
    show
        Show the figure; ``None`` shows it only in interactive sessions.
    return_fig
        Return the figure instead of the Axes.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s``, ``alpha``).

    Returns
    -------
    The Axes, the Figure with ``return_fig=True``, or ``None`` when shown.
    """
    keys = da_run(adata, key)
    color = keys.direction if color is None else color
    if color not in adata.obs:
        raise KeyError(f"`color` {color!r} is not a column of adata.obs; pass one of its columns.")
    rule = _da_rule(adata, key)
    score = rule["by"] if score is None else score
    if score not in ("fdr", "ptp"):
        raise ValueError(f"score must be 'fdr' or 'ptp', got {score!r}.")
    if score == "fdr" and keys.lfc_fdr not in adata.obs:
        raise KeyError(f"Run {key!r} has no FDR column; rerun it with fdr=True or pass "
                       "score='ptp'.")
    if lfc_threshold is None:
        lfc_threshold = rule["lfc"]
    level = (fdr_threshold if fdr_threshold is not None else rule["fdr"]) if score == "fdr" \
        else (ptp_threshold if ptp_threshold is not None else rule["ptp"])

    obs = adata.obs
    x = obs[keys.lfc].to_numpy(dtype=np.float64)
    if score == "fdr":
        y = -np.log10(np.maximum(obs[keys.lfc_fdr].to_numpy(dtype=np.float64), 1e-300))
    else:
        y = obs[keys.neg_log10_ptp].to_numpy(dtype=np.float64)
    shown = np.isfinite(y)  # cells of other conditions have no FDR
    x, y, obs = x[shown], y[shown], obs[shown]
    fig, ax = axes_or_new(ax)
    categorical = _draw_da_points(ax, adata, keys, x, y, obs[color], color, scatter_kwargs)
    _draw_da_rule(ax, lfc_threshold, level, "FDR" if score == "fdr" else "PTP")
    if categorical:
        ax.legend(title=None if color == keys.direction else color, fontsize="small",
                  frameon=False, loc="best", markerscale=1.5)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel(f"{DA_SCHEMA['lfc'].label}, {versus(keys)}")
    ax.set_ylabel(neg_log10(DA_SCHEMA["lfc_fdr"].label) if score == "fdr"
                  else DA_SCHEMA["neg_log10_ptp"].label)
    ax.set_title(f"Differential abundance: {versus(keys)}")
    return finish(ax, fig, show=show, return_fig=return_fig)


def _draw_da_rule(ax, lfc_threshold, level, score_name: str) -> None:
    """Dashed lines at the thresholds of the call rule, labelled for the legend."""
    if lfc_threshold is not None and float(lfc_threshold) > 0:
        for sign in (-1.0, 1.0):
            ax.axvline(sign * float(lfc_threshold), **_THRESHOLD_STYLE,
                       label=f"|log fold change| {float(lfc_threshold):g}" if sign > 0 else "_")
    if level is not None:
        ax.axhline(-np.log10(float(level)), **_THRESHOLD_STYLE, label=f"{score_name} {level:g}")


def _draw_da_points(ax, adata, keys, x, y, values, color, scatter_kwargs) -> bool:
    """One point per cell, coloured by ``values``; whether they were drawn as categories."""
    size = scatter_kwargs.pop("s", default_size(x.size))
    style = {"edgecolors": "none", "zorder": 2, **scatter_kwargs}
    if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype in (bool, object):
        categories = _categories(values)
        if not isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(str)
        codes = pd.Categorical(values, categories=categories)
        colors = category_colors(adata, color, categories)
        for i, category in enumerate(categories):
            mask = np.asarray(codes == category)
            # Neutral cells go underneath so that calls stay visible.
            order = 1 if str(category) == "neutral" and color == keys.direction else 2
            ax.scatter(x[mask], y[mask], s=size, c=colors[i],
                       label=f"{category} ({mask.sum()})", **{**style, "zorder": order})
        return True
    numbers = values.to_numpy(dtype=np.float64)
    signed = np.nanmin(numbers) < 0 < np.nanmax(numbers)
    norm = centred_norm(numbers) if signed else None
    order = np.argsort(np.abs(numbers) if signed else numbers, kind="stable")
    mappable = ax.scatter(x[order], y[order], c=numbers[order], s=size, norm=norm,
                          cmap=DIVERGING_CMAP if signed else None, **style)
    ax.figure.colorbar(mappable, ax=ax, label=_obs_label(keys, color))
    return False


def _obs_label(keys, column: str) -> str:
    """Colour-bar label of an obs column: kompot's own fields by their schema's label."""
    names = {keys.name(f.name): f.label for f in DA_SCHEMA.in_slot("obs")}
    return names.get(column, column)


def _da_rule(adata, key: str) -> dict:
    """The call rule of a DA run: ``by`` ("fdr"/"ptp") and its thresholds.

    Runs record it under ``rule``; older runs only have their parameters,
    whose calls were made by the PTP rule unless ``direction_by`` says otherwise.
    """
    rule = adata.uns[key].get("rule")
    if rule is not None:
        return {k: (None if isinstance(v, str) and v == "None" else v) for k, v in rule.items()}
    by = run_param(adata, key, "direction_by") or "ptp"
    lfc = run_param(adata, key, "log_fold_change_threshold")
    return {"by": by, "lfc": 1.0 if lfc is None else lfc,
            "ptp": run_param(adata, key, "ptp_threshold"),
            "fdr": run_param(adata, key, "fdr_threshold")}


def _categories(values: pd.Series) -> list:
    """Categories present in ``values``, in the column's own order."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present]
    return sorted(values.dropna().astype(str).unique())
