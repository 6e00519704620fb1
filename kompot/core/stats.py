"""Per-cell significance of a log fold change: z-score, PTP and direction."""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

_LN10 = np.log(10.0)


def zscore(lfc: np.ndarray, variance: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """``lfc / sqrt(variance + eps)``."""
    return lfc / np.sqrt(np.asarray(variance) + eps)


def neg_log10_ptp(z: np.ndarray) -> np.ndarray:
    """``-log10 Φ(-|z|)``, the one-sided posterior tail probability on a log scale.

    Computed through ``log_ndtr`` so that it stays finite for any finite z.
    """
    return -log_ndtr(-np.abs(z)) / _LN10


def direction(
    lfc: np.ndarray, neg_log10_ptp_values: np.ndarray, lfc_threshold: float, ptp_threshold: float
) -> np.ndarray:
    """``'up'``/``'down'`` where both the effect and the PTP pass, else ``'neutral'``."""
    significant = neg_log10_ptp_values > -np.log10(ptp_threshold)
    out = np.full(np.shape(lfc), "neutral", dtype=object)
    out[significant & (lfc > lfc_threshold)] = "up"
    out[significant & (lfc < -lfc_threshold)] = "down"
    return out
