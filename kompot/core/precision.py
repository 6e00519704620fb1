"""The arithmetic of the passes over cells, resolved once per analysis.

``kompot.settings.precision`` chooses it: ``"double"``, ``"mixed"`` (those
passes in float32, summed in float64; and differential abundance's whitened
kernel kept in float32 where float64 does not fit its cache), or ``"auto"``,
which an analysis (:func:`~kompot.models.run_differential_expression`,
:func:`~kompot.models.run_smoothed_expression`,
:func:`~kompot.models.run_differential_abundance`) resolves from its number
of cells (:func:`resolved`) and holds for its duration (:func:`using`), on
a Dask worker as in this process. Outside an analysis ``"auto"`` means
``"double"``.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from .._settings import settings

# From this many cells "auto" is "mixed": there the passes over the cells are
# most of the time, and the float32 products halve it.
AUTO_MIXED_CELLS = 50_000

_current: ContextVar[str | None] = ContextVar("kompot_cell_precision", default=None)


def resolved(n_cells: int) -> str:
    """``settings.precision`` for an analysis of ``n_cells`` cells: ``"double"`` or ``"mixed"``."""
    if settings.precision == "auto":
        return "mixed" if n_cells >= AUTO_MIXED_CELLS else "double"
    return settings.precision


@contextmanager
def using(precision: str):
    """Run the enclosed passes over cells in ``precision`` (``"double"`` or ``"mixed"``)."""
    token = _current.set(precision)
    try:
        yield
    finally:
        _current.reset(token)


def is_mixed() -> bool:
    """Whether the empirical-variance passes run in float32 here and now."""
    current = _current.get()
    if current is None:
        current = "double" if settings.precision == "auto" else settings.precision
    return current == "mixed"
