"""What each analysis returns, field by field: one declaration read by every layer.

A :class:`Field` says what one output is (its name in a result, the AnnData
slot it is written to, the end of its AnnData name, its dtype, whether it is
signed, and a label with units, every logarithm with its base). A
:class:`Schema` is the ordered tuple of one analysis's fields. The analyses
in :mod:`kompot.models` return an :class:`AnalysisResult` keyed by these
names; :mod:`kompot.tl` writes a result by its schema, :mod:`kompot._keys`
derives every AnnData name from it and :mod:`kompot.pl` takes titles, colour
bars and diverging colour maps from it. Adding an output is one new
:class:`Field` here and the code that computes its values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

Slot = Literal["obs", "var", "layers"]
# Whose name a field carries: the comparison ("key_c1_to_c2_suffix"), one
# condition ("key_c1_suffix", "key_c2_suffix") or the run alone ("key_suffix").
Scope = Literal["comparison", "condition1", "condition2", "run"]

# scanpy writes a unicode minus in tick labels; labels match it.
MINUS = "\u2212"

DIRECTION_CATEGORIES = ("down", "neutral", "up")
# Blue for less in condition 2, grey for no call, red for more.
DIRECTION_COLORS = ("#2166ac", "#c8c8c8", "#b2182b")


def sanitize(name: object) -> str:
    """A condition name as it appears inside an output name (no spaces or slashes)."""
    return re.sub(r"[\s/\\]+", "_", str(name)).strip("_")


def log_name(base: float | None) -> str:
    """``"ln"``, ``"log2"``, ``"log10"`` or ``"log{base}"`` for a logarithm's base."""
    if base is None or math.isclose(float(base), math.e):
        return "ln"
    return f"log{float(base):g}"


def neg_log10(what: str) -> str:
    """``"−log10 FDR"`` and the like."""
    return f"{MINUS}log10 {what}"


@dataclass(frozen=True)
class Field:
    """One output of an analysis.

    Attributes
    ----------
    name
        Key of the values in an :class:`AnalysisResult`, attribute of the run's
        names in :mod:`kompot._keys`, and the short name plots accept.
    slot
        Where :mod:`kompot.tl` writes it: ``"obs"`` (per cell), ``"var"``
        (per gene) or ``"layers"`` (cells x genes).
    suffix
        End of its AnnData name; see :meth:`column`.
    dtype
        dtype as written: ``"float64"``, ``"float32"``, ``"bool"`` or
        ``"category"`` (with ``categories`` in that order).
    label
        What it is, with units; ``{log}`` stands for the base of the
        expression's logarithm (:func:`log_name`), filled by :meth:`label_for`.
    description
        One sentence for documentation.
    signed
        Whether 0 means "no change" and both signs occur (plots centre a
        diverging colour map at 0).
    scope
        Whose name it carries (see :meth:`column`).
    requires
        Run options without which the field is not written (``"fdr"``,
        ``"samples"``, ``"layers"``, a method name).
    categories, colors
        Of a categorical field, in order; the colours are written to
        ``uns[f"{column}_colors"]``.
    """

    name: str
    slot: Slot
    suffix: str
    dtype: str
    label: str
    description: str
    signed: bool = False
    scope: Scope = "comparison"
    requires: frozenset[str] = frozenset()
    categories: tuple[str, ...] | None = None
    colors: tuple[str, ...] | None = None

    def column(self, key_added: str, condition1: object = None, condition2: object = None) -> str:
        """The AnnData name of this field in the run ``key_added``."""
        if self.scope == "run":
            return f"{key_added}_{self.suffix}"
        if self.scope == "condition1":
            return f"{key_added}_{sanitize(condition1)}_{self.suffix}"
        if self.scope == "condition2":
            return f"{key_added}_{sanitize(condition2)}_{self.suffix}"
        return f"{key_added}_{sanitize(condition1)}_to_{sanitize(condition2)}_{self.suffix}"

    def label_for(self, log_base: float | None = None) -> str:
        """The label with the expression's log base filled in (natural log for ``None``)."""
        return self.label.format(log=log_name(log_base))

    def written_with(self, options: set[str] | frozenset[str]) -> bool:
        """Whether a run with these options writes this field."""
        return self.requires <= set(options)


@dataclass(frozen=True)
class Schema:
    """The ordered fields of one analysis."""

    analysis: str
    fields: tuple[Field, ...]

    def __post_init__(self):
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Field names of {self.analysis!r} repeat: {names}.")

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.analysis} has no field {name!r}; its fields: {self.names}.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def in_slot(self, slot: Slot) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.slot == slot)

    def written_with(self, options=None, slot: Slot | None = None) -> tuple[Field, ...]:
        """The fields a run with these options writes (to ``slot``), in schema order.

        ``options=None`` stands for every option: all fields (of ``slot``).
        """
        return tuple(f for f in self.fields
                     if (options is None or f.written_with(options))
                     and (slot is None or f.slot == slot))


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """What one analysis found: arrays keyed by the names of its schema's fields.

    ``values`` holds only the fields the run computed, in schema order.
    Per-cell fields have one entry per row of the states the analysis was
    evaluated at; per-gene fields one per analysed gene; layers are
    cells x analysed genes. ``fitted`` holds the hyper-parameters the fit
    used (``landmarks``, ``ls``, and ``amplitude`` or ``d`` for abundance),
    ``options`` the option tags that decided which fields were computed, and
    ``model`` the fitted model object.
    """

    schema: Schema
    values: Mapping[str, np.ndarray]
    fitted: Mapping[str, object] = field(default_factory=dict)
    options: frozenset[str] = frozenset()
    model: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        unknown = [k for k in self.values if k not in self.schema]
        if unknown:
            raise KeyError(f"{self.schema.analysis} has no fields {unknown}.")
        ordered = {f.name: self.values[f.name] for f in self.schema if f.name in self.values}
        object.__setattr__(self, "values", MappingProxyType(ordered))
        object.__setattr__(self, "fitted", MappingProxyType(dict(self.fitted)))
        object.__setattr__(self, "options", frozenset(self.options))

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.schema[name]  # raises for a name that is no field at all
            raise KeyError(f"This {self.schema.analysis} run did not compute {name!r} "
                           f"(options: {sorted(self.options)}).")
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    @property
    def fields(self) -> tuple[Field, ...]:
        """The fields computed, in schema order."""
        return tuple(self.schema[name] for name in self.values)

    def to_frame(self, slot: Slot = "obs", index=None):
        """The 1-D fields of one slot as a :class:`pandas.DataFrame` (categories as Categorical)."""
        import pandas as pd

        columns = {}
        for f in self.fields:
            if f.slot == slot:
                values = self.values[f.name]
                if f.categories is not None:
                    values = pd.Categorical(values, categories=list(f.categories))
                columns[f.name] = values
        return pd.DataFrame(columns, index=index)


def _options(*tags: str) -> frozenset[str]:
    return frozenset(tags)


_ABUNDANCE_LFC = "log fold change of abundance (ln)"

DA_SCHEMA = Schema("differential abundance", (
    Field("lfc", "obs", "lfc", "float64", _ABUNDANCE_LFC,
          "log p2(x) - log p1(x), each density normalised by its number of cells.", signed=True),
    Field("lfc_std", "obs", "lfc_std", "float64", f"std of {_ABUNDANCE_LFC}",
          "Posterior standard deviation of the log fold change."),
    Field("zscore", "obs", "lfc_zscore", "float64", "log fold change z-score",
          "Signed z-score (ratio: the normal score of the p-value).", signed=True),
    Field("neg_log10_ptp", "obs", "neg_log10_lfc_ptp", "float64", neg_log10("PTP"),
          "-log10 of the one-sided posterior tail probability."),
    Field("log_density1", "obs", "log_density", "float64", "log density (ln)",
          "Condition 1's log density, normalised by its number of cells.",
          scope="condition1", requires=_options("density")),
    Field("log_density2", "obs", "log_density", "float64", "log density (ln)",
          "Condition 2's log density, normalised by its number of cells.",
          scope="condition2", requires=_options("density")),
    Field("lfc_pvalue", "obs", "lfc_pvalue", "float64", "p-value",
          "Two-sided p-value of each cell.", requires=_options("ratio")),
    Field("lfc_fdr", "obs", "lfc_fdr", "float64", "FDR (Benjamini–Hochberg)",
          "Benjamini-Hochberg FDR over the cells of the two conditions (NaN for others).",
          requires=_options("fdr")),
    Field("lfc_sample_std", "obs", "lfc_sample_std", "float64",
          f"std of {_ABUNDANCE_LFC} between samples",
          "Jackknife standard deviation of the log fold change between replicate samples.",
          requires=_options("ratio", "samples")),
    Field("direction", "obs", "lfc_direction", "category", "direction",
          "'down', 'neutral' or 'up' by the call rule; 'neutral' for cells of other conditions.",
          categories=DIRECTION_CATEGORIES, colors=DIRECTION_COLORS),
))

DE_SCHEMA = Schema("differential expression", (
    Field("mean_lfc", "var", "mean_lfc", "float64", "mean log fold change ({log})",
          "Mean fold change over the cells of both conditions.", signed=True),
    Field("mahalanobis", "var", "mahalanobis", "float64", "Mahalanobis distance",
          "Mahalanobis distance between the two conditions' expression at the landmarks."),
    Field("pvalue", "var", "pvalue", "float64", "p-value",
          "Empirical p-value against the permutation null.", requires=_options("fdr")),
    Field("local_fdr", "var", "local_fdr", "float64", "local FDR",
          "Local false-discovery rate.", requires=_options("fdr")),
    Field("tail_fdr", "var", "tail_fdr", "float64", "tail FDR",
          "Tail (Benjamini-Hochberg-like) false-discovery rate.", requires=_options("fdr")),
    Field("is_de", "var", "is_de", "bool", "differentially expressed",
          "Tail FDR at most the run's fdr_threshold.", requires=_options("fdr")),
    Field("condition1_smoothed", "layers", "smoothed", "float32", "log expression ({log})",
          "Condition 1's smoothed expression.", scope="condition1", requires=_options("layers")),
    Field("condition2_smoothed", "layers", "smoothed", "float32", "log expression ({log})",
          "Condition 2's smoothed expression.", scope="condition2", requires=_options("layers")),
    Field("condition1_std", "layers", "std", "float32", "std of log expression ({log})",
          "Standard deviation of condition 1's smoothed expression.", scope="condition1",
          requires=_options("layers")),
    Field("condition2_std", "layers", "std", "float32", "std of log expression ({log})",
          "Standard deviation of condition 2's smoothed expression.", scope="condition2",
          requires=_options("layers")),
    Field("fold_change", "layers", "fold_change", "float32", "log fold change ({log})",
          "Condition 2 minus condition 1 smoothed expression.", signed=True,
          requires=_options("layers")),
))

SMOOTH_SCHEMA = Schema("smoothed expression", (
    Field("smoothed", "layers", "smoothed", "float32", "log expression ({log})",
          "Smoothed expression at every cell.", scope="run"),
    Field("std", "layers", "std", "float32", "std of log expression ({log})",
          "Standard deviation of the smoothed expression.", scope="run"),
))
