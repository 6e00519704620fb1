"""Names of the plotted quantities, with the base of every logarithm.

Axis labels, colour-bar labels and panel titles are built here from the
labels of the analyses' field schemas (:mod:`kompot.models._schema`), so
that each log quantity is named the same way in every plot and always says
which logarithm it is. Abundance log fold changes are natural logs (ratios of
densities). Expression log fold changes are differences of the expression
kompot was fitted on, which is log-normalised; its base is the one scanpy's
``sc.pp.log1p`` recorded in ``adata.uns["log1p"]["base"]`` when the run was
made (``None`` there means the natural log), stored in the run's record as
``log_base``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..models._schema import DA_SCHEMA, DE_SCHEMA, MINUS, log_name, neg_log10


def run_log_base(adata, key: str) -> float | None:
    """The base of the log expression a run was fitted on (``None``: natural log).

    Runs record it as ``log_base``; for older runs, the base scanpy's
    ``log1p`` recorded in ``adata`` is used, the natural log when there is none.
    """
    record = adata.uns.get(key, {})
    value = record.get("log_base") if isinstance(record, Mapping) else None
    if value is None:
        log1p = adata.uns.get("log1p")
        value = log1p.get("base") if isinstance(log1p, Mapping) else None
    if value is None or (isinstance(value, str) and value == "None"):
        return None
    return float(value)


def abundance_lfc(prefix: str = "") -> str:
    """``"log fold change of abundance (ln)"``, optionally after ``prefix``."""
    return f"{prefix}{DA_SCHEMA['lfc'].label}"


def expression_lfc(base: float | None, prefix: str = "") -> str:
    """``"log fold change (ln)"`` of expression, in the base of the fitted expression."""
    return f"{prefix}{DE_SCHEMA['fold_change'].label_for(base)}"


def log_expression(base: float | None, prefix: str = "") -> str:
    """``"log expression (ln)"``: the scale of the fitted and smoothed expression."""
    return f"{prefix}{DE_SCHEMA['condition1_smoothed'].label_for(base)}"


__all__ = [
    "MINUS",
    "abundance_lfc",
    "expression_lfc",
    "log_expression",
    "log_name",
    "neg_log10",
    "run_log_base",
]
