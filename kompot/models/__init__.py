"""The model layer: arrays in, arrays out (no AnnData).

The estimators (the model classes) fit and predict. The analyses
(``run_*``) run a whole comparison on arrays -- fit, permutation null,
FDR and calls -- and return an :class:`AnalysisResult` keyed by the fields
of their schema (:data:`DA_SCHEMA`, :data:`DE_SCHEMA`, :data:`SMOOTH_SCHEMA`),
the same numbers :mod:`kompot.tl` writes into an AnnData.
"""

from ._schema import DA_SCHEMA, DE_SCHEMA, SMOOTH_SCHEMA, AnalysisResult, Field, Schema
from .abundance_analysis import CallRule, run_differential_abundance
from .abundance_ratio import DifferentialAbundanceRatio
from .differential_abundance import DifferentialAbundance
from .differential_expression import DifferentialExpression
from .expression_analysis import run_differential_expression, run_smoothed_expression
from .expression_model import ExpressionModel
from .sample_variance import SampleVarianceEstimator

__all__ = [
    "DA_SCHEMA",
    "DE_SCHEMA",
    "SMOOTH_SCHEMA",
    "AnalysisResult",
    "CallRule",
    "DifferentialAbundance",
    "DifferentialAbundanceRatio",
    "DifferentialExpression",
    "ExpressionModel",
    "Field",
    "SampleVarianceEstimator",
    "Schema",
    "run_differential_abundance",
    "run_differential_expression",
    "run_smoothed_expression",
]
