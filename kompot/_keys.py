"""Every name kompot writes into an AnnData, derived in one place.

``kompot.tl`` writes through these helpers and ``kompot.pl`` reads through
them, so a renamed field can never leave the plots behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DA_KEY_DEFAULT = "kompot_da"
DE_KEY_DEFAULT = "kompot_de"
SMOOTH_KEY_DEFAULT = "kompot_smooth"

DIRECTION_CATEGORIES = ("down", "neutral", "up")
# Blue for less abundant in condition 2, grey for no call, red for more abundant.
DIRECTION_COLORS = ("#2166ac", "#c8c8c8", "#b2182b")


def sanitize(name: object) -> str:
    """Condition name as it appears inside a column name (no spaces or slashes)."""
    return re.sub(r"[\s/\\]+", "_", str(name)).strip("_")


@dataclass(frozen=True)
class DAKeys:
    """Column names of one differential-abundance run."""

    key_added: str
    condition1: str
    condition2: str

    @property
    def prefix(self) -> str:
        return f"{self.key_added}_{sanitize(self.condition1)}_to_{sanitize(self.condition2)}"

    @property
    def lfc(self) -> str:
        return f"{self.prefix}_lfc"

    @property
    def zscore(self) -> str:
        return f"{self.prefix}_lfc_zscore"

    @property
    def neg_log10_ptp(self) -> str:
        return f"{self.prefix}_neg_log10_lfc_ptp"

    @property
    def direction(self) -> str:
        return f"{self.prefix}_lfc_direction"

    @property
    def direction_colors(self) -> str:
        return f"{self.direction}_colors"

    @property
    def lfc_std(self) -> str:
        return f"{self.prefix}_lfc_std"

    @property
    def lfc_fdr(self) -> str:
        return f"{self.prefix}_lfc_fdr"

    @property
    def lfc_pvalue(self) -> str:
        return f"{self.prefix}_lfc_pvalue"

    @property
    def lfc_sample_std(self) -> str:
        return f"{self.prefix}_lfc_sample_std"

    def log_density(self, condition: str) -> str:
        return f"{self.key_added}_{sanitize(condition)}_log_density"

    def obs_columns(self, method: str = "ratio", *, samples: bool = False,
                    fdr: bool = True) -> list[str]:
        """The ``obs`` columns one run writes, for its method and inputs."""
        columns = [self.lfc, self.zscore, self.neg_log10_ptp, self.direction, self.lfc_std]
        if fdr:
            columns.append(self.lfc_fdr)
        if method == "ratio":
            columns.append(self.lfc_pvalue)
            if samples:
                columns.append(self.lfc_sample_std)
        else:
            columns += [self.log_density(self.condition1), self.log_density(self.condition2)]
        return columns


@dataclass(frozen=True)
class DEKeys:
    """Column and layer names of one differential-expression run."""

    key_added: str
    condition1: str
    condition2: str

    @property
    def prefix(self) -> str:
        return f"{self.key_added}_{sanitize(self.condition1)}_to_{sanitize(self.condition2)}"

    @property
    def mean_lfc(self) -> str:
        return f"{self.prefix}_mean_lfc"

    @property
    def mahalanobis(self) -> str:
        return f"{self.prefix}_mahalanobis"

    @property
    def pvalue(self) -> str:
        return f"{self.prefix}_pvalue"

    @property
    def local_fdr(self) -> str:
        return f"{self.prefix}_local_fdr"

    @property
    def tail_fdr(self) -> str:
        return f"{self.prefix}_tail_fdr"

    @property
    def is_de(self) -> str:
        return f"{self.prefix}_is_de"

    @property
    def fold_change(self) -> str:
        return f"{self.prefix}_fold_change"

    def smoothed(self, condition: str) -> str:
        return f"{self.key_added}_{sanitize(condition)}_smoothed"

    def std(self, condition: str) -> str:
        return f"{self.key_added}_{sanitize(condition)}_std"

    def var_columns(self) -> list[str]:
        return [self.mean_lfc, self.mahalanobis, self.pvalue, self.local_fdr, self.tail_fdr, self.is_de]

    def layer_names(self) -> list[str]:
        return [
            self.smoothed(self.condition1),
            self.smoothed(self.condition2),
            self.std(self.condition1),
            self.std(self.condition2),
            self.fold_change,
        ]


@dataclass(frozen=True)
class SmoothKeys:
    """Layer names of one smoothed-expression (imputation) run."""

    key_added: str

    @property
    def smoothed(self) -> str:
        return f"{self.key_added}_smoothed"

    @property
    def std(self) -> str:
        return f"{self.key_added}_std"

    def layer_names(self) -> list[str]:
        return [self.smoothed, self.std]


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


__all__ = ["DAKeys", "DEKeys", "SmoothKeys", "keys_from_uns", "sanitize"]
