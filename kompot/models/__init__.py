"""The model classes: arrays in, dictionaries of arrays out (no AnnData)."""

from .abundance_ratio import DifferentialAbundanceRatio
from .differential_abundance import DifferentialAbundance
from .differential_expression import DifferentialExpression
from .expression_model import ExpressionModel
from .sample_variance import SampleVarianceEstimator

__all__ = [
    "DifferentialAbundance",
    "DifferentialAbundanceRatio",
    "DifferentialExpression",
    "ExpressionModel",
    "SampleVarianceEstimator",
]
