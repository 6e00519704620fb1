"""Plots of kompot results, read from what :mod:`kompot.tl` wrote into an AnnData.

Every plot finds its run through ``key`` (the ``key_added`` of the
:mod:`kompot.tl` call) and follows scanpy's conventions: ``ax=`` for single
panels, the Axes returned (the Figure with ``return_fig=True``), ``show=None``
and category colours from ``adata.uns[f"{column}_colors"]``.
"""

from ._barplot import direction_barplot
from ._embedding import embedding
from ._expression import expression
from ._heatmap import heatmap
from ._volcano import volcano_da, volcano_de

__all__ = [
    "direction_barplot",
    "embedding",
    "expression",
    "heatmap",
    "volcano_da",
    "volcano_de",
]
