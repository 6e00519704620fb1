"""kompot: differential abundance and expression between two conditions in single-cell data.

Cell density and gene expression are modelled as Gaussian processes over a
cell-state representation (mellon on JAX), so every cell state gets a fold
change with a calibrated uncertainty.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, tl
from .models import (
    DifferentialAbundance,
    DifferentialAbundanceRatio,
    DifferentialExpression,
    ExpressionModel,
    SampleVarianceEstimator,
)

try:
    __version__ = version("kompot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DifferentialAbundance",
    "DifferentialAbundanceRatio",
    "DifferentialExpression",
    "ExpressionModel",
    "SampleVarianceEstimator",
    "datasets",
    "pl",
    "tl",
    "__version__",
]
