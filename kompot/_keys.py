"""Every name kompot writes into an AnnData, derived from the analyses' field schemas.

The names come from :mod:`kompot.models._schema`: each field of a run's
schema is an attribute here (``DAKeys(...).lfc_fdr``, ``DEKeys(...).is_de``),
so a field added to a schema has its name at once. ``kompot.tl`` writes
through these helpers and ``kompot.pl`` reads through them, so a renamed
field can never leave the plots behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .models._schema import (
    DA_SCHEMA,
    DE_SCHEMA,
    DIRECTION_CATEGORIES,
    DIRECTION_COLORS,
    SMOOTH_SCHEMA,
    Schema,
    Slot,
    sanitize,
)

DA_KEY_DEFAULT = "kompot_da"
DE_KEY_DEFAULT = "kompot_de"
SMOOTH_KEY_DEFAULT = "kompot_smooth"


@dataclass(frozen=True)
class RunKeys:
    """Names of one run's fields: one attribute per field of ``schema``."""

    schema: ClassVar[Schema]
    key_added: str
    condition1: str = ""
    condition2: str = ""

    def __getattr__(self, name: str) -> str:
        schema = type(self).schema
        if name in schema:
            return schema[name].column(self.key_added, self.condition1, self.condition2)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}.")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(type(self).schema.names))

    @property
    def prefix(self) -> str:
        return f"{self.key_added}_{sanitize(self.condition1)}_to_{sanitize(self.condition2)}"

    def name(self, field: str) -> str:
        """The AnnData name of the field ``field``."""
        return getattr(self, field)

    def for_condition(self, field: str, condition: object) -> str:
        """The name of a per-condition field (e.g. ``"log_density1"``) for ``condition``."""
        return f"{self.key_added}_{sanitize(condition)}_{type(self).schema[field].suffix}"

    def names(self, options=None, slot: Slot | None = None) -> list[str]:
        """Names of the fields a run with ``options`` writes (all fields for ``None``)."""
        return [self.name(f.name) for f in type(self).schema.written_with(options, slot)]


@dataclass(frozen=True)
class DAKeys(RunKeys):
    """Column names of one differential-abundance run."""

    schema: ClassVar[Schema] = DA_SCHEMA

    @property
    def direction_colors(self) -> str:
        return f"{self.direction}_colors"

    def log_density(self, condition: str) -> str:
        return self.for_condition("log_density1", condition)

    def obs_columns(self, method: str = "ratio", *, samples: bool = False,
                    fdr: bool = True) -> list[str]:
        """The ``obs`` columns one run writes, for its method and inputs."""
        options = {method} | ({"samples"} if samples else set()) | ({"fdr"} if fdr else set())
        return self.names(options, "obs")


@dataclass(frozen=True)
class DEKeys(RunKeys):
    """Column and layer names of one differential-expression run."""

    schema: ClassVar[Schema] = DE_SCHEMA

    def smoothed(self, condition: str) -> str:
        return self.for_condition("condition1_smoothed", condition)

    def std(self, condition: str) -> str:
        return self.for_condition("condition1_std", condition)

    def var_columns(self) -> list[str]:
        return self.names(slot="var")

    def layer_names(self) -> list[str]:
        return self.names(slot="layers")


@dataclass(frozen=True)
class SmoothKeys(RunKeys):
    """Layer names of one smoothed-expression (imputation) run."""

    schema: ClassVar[Schema] = SMOOTH_SCHEMA

    def layer_names(self) -> list[str]:
        return self.names(slot="layers")


def keys_from_uns(adata, key_added: str, kind: type[DAKeys] | type[DEKeys]):
    """Rebuild the names of a stored run from ``adata.uns[key_added]``.

    Plots call this so that they read exactly the run the user names, never
    "the latest one".
    """
    if key_added not in adata.uns:
        raise KeyError(
            f"adata.uns has no {key_added!r}. Run kompot.tl with key_added={key_added!r} "
            f"first, or pass the key_added of an existing run (found: "
            f"{[k for k in adata.uns if str(k).startswith('kompot')]})."
        )
    record = adata.uns[key_added]
    return kind(key_added, str(record["condition1"]), str(record["condition2"]))


__all__ = [
    "DIRECTION_CATEGORIES",
    "DIRECTION_COLORS",
    "DAKeys",
    "DEKeys",
    "RunKeys",
    "SmoothKeys",
    "keys_from_uns",
    "sanitize",
]
