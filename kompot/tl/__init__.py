"""Tools: AnnData in, results written back into ``obs``, ``var``, ``layers`` and ``uns``."""

from ._differential_abundance import compute_differential_abundance
from ._differential_expression import compute_differential_expression
from ._smoothed_expression import compute_smoothed_expression

__all__ = [
    "compute_differential_abundance",
    "compute_differential_expression",
    "compute_smoothed_expression",
]
