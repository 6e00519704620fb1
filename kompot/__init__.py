"""kompot: differential abundance and expression between two conditions in single-cell data.

Cell density and gene expression are modelled as Gaussian processes over a
cell-state representation, so every cell state gets a fold change with a
calibrated uncertainty. The numerics are numpy; fitted models are handed
out as mellon (JAX) objects on request.

Importing kompot has no side effects: it configures no logging and leaves
JAX alone (mellon, which switches JAX to float64 on the CPU when imported, is
imported only when a mellon object is asked for). ``tl``, ``pl`` and
``datasets`` are imported on first use, as scanpy does with its heavier
parts, so that ``import kompot`` stays fast.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from ._settings import settings
from ._warnings import KompotWarning
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
    __version__ = "1.0.0.dev0+unknown"

_LAZY_SUBMODULES = ("datasets", "pl", "tl")

__all__ = [
    "DifferentialAbundance",
    "DifferentialAbundanceRatio",
    "DifferentialExpression",
    "ExpressionModel",
    "KompotWarning",
    "SampleVarianceEstimator",
    "datasets",
    "pl",
    "settings",
    "tl",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        module = import_module(f".{name}", __name__)
        globals()[name] = module  # later lookups skip this function
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
