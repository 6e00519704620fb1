"""False-discovery rates for per-gene Mahalanobis distances against an empirical null.

The observed distances of the real genes are compared with a pool of distances
drawn under the null hypothesis (for example from label permutations). From the
two samples we derive

* an empirical p-value per gene, ``(1 + #{null >= D}) / (1 + N)``, which is valid
  (never smaller than its nominal level) because of the ``+1`` terms;
* ``pi0``, the share of null genes among the observed ones (Storey's estimator);
* the tail FDR ``pi0 * S0(D) / S(D)``, the expected share of false calls among
  all genes at least as extreme as ``D`` -- with the adaptive step-up rule this is
  the Storey/Benjamini-Hochberg q-value of the empirical p-values;
* the local FDR ``pi0 * f0(D) / f(D)``, the probability that a gene at exactly
  ``D`` is null, from kernel density estimates of both samples.

Everything here works on plain arrays; no AnnData.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import log_ndtr
from scipy.stats import gaussian_kde

__all__ = ["empirical_fdr", "fdr_dataframe", "zscore_fdr"]

FDR_COLUMNS = ("mahalanobis", "pvalue", "local_fdr", "tail_fdr", "is_de")

# Storey's tuning parameter: p-values above it are taken to come from null genes.
PI0_LAMBDA = 0.5
# Density estimates are evaluated on a grid (and interpolated) beyond this many
# distinct observed values, and fitted on at most this many null points; both
# bound the O(N * G) cost of a kernel density estimate.
_KDE_MAX_EVAL = 512
_KDE_MAX_NULL = 10_000


def _as_distances(values: object, name: str) -> np.ndarray:
    """Validated 1-D float64 copy of a distance array."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be one-dimensional, got shape {arr.shape}; flatten it first."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values; remove or fix those entries.")
    if np.any(arr < 0):
        raise ValueError(f"`{name}` contains negative values; Mahalanobis distances must be >= 0.")
    return arr


def _storey_pi0(pvalue: np.ndarray) -> float:
    """Share of null genes, Storey's estimator at lambda = 0.5 with the ``+1`` term.

    The ``+1`` in the numerator is the finite-sample version of Storey, Taylor &
    Siegmund (2004): with it the adaptive step-up procedure controls the FDR for
    independent p-values, and on pure-null data the estimate sits at (or is
    clipped to) 1.
    """
    n_genes = pvalue.size
    pi0 = (1.0 + np.count_nonzero(pvalue > PI0_LAMBDA)) / (n_genes * (1.0 - PI0_LAMBDA))
    return float(np.clip(pi0, 1.0 / n_genes, 1.0))


def _monotone_in_distance(raw: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Smallest value over all genes with a distance <= each gene's distance.

    This makes the result non-increasing in the distance, as in the step-up rule
    of Benjamini-Hochberg (a gene is called whenever a less extreme one would be).
    Tied distances share one value.
    """
    order = np.argsort(distance, kind="stable")
    out = np.empty_like(raw)
    out[order] = np.minimum.accumulate(raw[order])
    return out


def _survival_counts(sorted_values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``#{sorted_values >= a}`` for every ``a`` in ``at``."""
    return sorted_values.size - np.searchsorted(sorted_values, at, side="left")


def _log_transform_offset(null: np.ndarray) -> float:
    """Offset c of the ``log(D + c)`` transform, small against typical null distances."""
    positive = null[null > 0]
    if positive.size == 0:
        return 1.0
    return 1e-2 * float(np.median(positive))


def _thin_sorted(sorted_values: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spaced order statistics (keeps the distribution's shape)."""
    if sorted_values.size <= max_points:
        return sorted_values
    idx = np.round(np.linspace(0, sorted_values.size - 1, max_points)).astype(np.intp)
    return sorted_values[idx]


def _is_degenerate(sample: np.ndarray) -> bool:
    """Too few distinct values for a Gaussian KDE (its covariance would be singular)."""
    return sample.size < 2 or not np.ptp(sample) > 0


def _local_fdr(
    observed: np.ndarray, sorted_null: np.ndarray, pi0: float, fallback: np.ndarray
) -> np.ndarray:
    """``pi0 * f0(D) / f(D)`` from Gaussian KDEs on ``log(D + c)``.

    On the log scale the null bulk and a long tail of strong genes can share one
    bandwidth; the Jacobian of the transform is the same for both densities and
    cancels in the ratio. Log densities keep far tails from turning into 0 / 0.
    """
    offset = _log_transform_offset(sorted_null)
    t_obs = np.log(observed + offset)
    t_null = np.log(_thin_sorted(sorted_null, _KDE_MAX_NULL) + offset)
    if _is_degenerate(t_obs) or _is_degenerate(t_null):
        warnings.warn(
            "Too few distinct distances for a density estimate; local_fdr falls back to tail_fdr.",
            RuntimeWarning,
            stacklevel=3,
        )
        return fallback.copy()

    kde_obs = gaussian_kde(t_obs)
    kde_null = gaussian_kde(t_null)
    points, inverse = np.unique(t_obs, return_inverse=True)
    if points.size <= _KDE_MAX_EVAL:
        log_ratio = kde_null.logpdf(points) - kde_obs.logpdf(points)
        log_ratio = log_ratio[inverse]
    else:
        # Both log densities vary on the scale of the smaller KDE bandwidth; a
        # grid with several points per bandwidth keeps interpolation error small.
        bandwidth = min(np.sqrt(kde_obs.covariance[0, 0]), np.sqrt(kde_null.covariance[0, 0]))
        n_grid = int(np.clip(8 * (points[-1] - points[0]) / bandwidth, _KDE_MAX_EVAL, 8192))
        grid = np.linspace(points[0], points[-1], min(n_grid, points.size))
        log_ratio = np.interp(t_obs, grid, kde_null.logpdf(grid) - kde_obs.logpdf(grid))
    # Cap before exponentiating: large ratios are clipped to 1 anyway.
    lfdr = pi0 * np.exp(np.minimum(log_ratio, -np.log(pi0)))
    # Defensive: should both log densities ever underflow, call the gene null.
    lfdr = np.nan_to_num(lfdr, nan=1.0)
    return _monotone_in_distance(np.clip(lfdr, 0.0, 1.0), observed)


def empirical_fdr(
    observed: np.ndarray, null: np.ndarray, *, threshold: float = 0.05
) -> dict[str, np.ndarray]:
    """P-values, local and tail FDR of observed distances against an empirical null.

    Parameters
    ----------
    observed
        Mahalanobis distances of the real genes, shape ``(G,)``, all ``>= 0``.
    null
        Distances under the null hypothesis, shape ``(N,)``, pooled over
        permutations or null genes.
    threshold
        A gene is called (``is_de``) when its tail FDR is at most this, in (0, 1).

    Returns
    -------
    dict with ``pvalue``, ``local_fdr``, ``tail_fdr`` (float arrays of shape
    ``(G,)``), ``is_de`` (bool array) and ``pi0`` (float, the estimated share of
    null genes). Both FDRs lie in [0, 1] and are non-increasing in the distance.
    """
    observed = _as_distances(observed, "observed")
    null = _as_distances(null, "null")
    if observed.size == 0:
        raise ValueError("`observed` is empty; pass the distances of at least one gene.")
    if null.size == 0:
        raise ValueError("`null` is empty; pass distances computed under the null hypothesis.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"`threshold` must lie strictly between 0 and 1, got {threshold!r}.")

    n_genes, n_null = observed.size, null.size
    sorted_null = np.sort(null)
    sorted_obs = np.sort(observed)

    # Null survival with the +1 correction; it doubles as the empirical p-value.
    pvalue = (1.0 + _survival_counts(sorted_null, observed)) / (1.0 + n_null)
    pi0 = _storey_pi0(pvalue)

    # Observed survival: >= 1/G because each gene counts itself.
    obs_survival = _survival_counts(sorted_obs, observed) / n_genes
    tail_raw = np.clip(pi0 * pvalue / obs_survival, 0.0, 1.0)
    tail_fdr = _monotone_in_distance(tail_raw, observed)

    local_fdr = _local_fdr(observed, sorted_null, pi0, fallback=tail_fdr)

    return {
        "pvalue": pvalue,
        "local_fdr": local_fdr,
        "tail_fdr": tail_fdr,
        "is_de": tail_fdr <= threshold,
        "pi0": pi0,
    }


def fdr_dataframe(
    observed: np.ndarray,
    null: np.ndarray,
    threshold: float = 0.05,
    gene_names: Sequence[str] | pd.Index | None = None,
) -> pd.DataFrame:
    """:func:`empirical_fdr` as a table, one row per gene.

    Columns are ``mahalanobis, pvalue, local_fdr, tail_fdr, is_de``; the index is
    ``gene_names`` when given (one per observed distance). The estimated ``pi0``
    and the threshold are kept in ``DataFrame.attrs``.
    """
    result = empirical_fdr(observed, null, threshold=threshold)
    distances = np.atleast_1d(np.asarray(observed, dtype=np.float64))
    index = None
    if gene_names is not None:
        index = pd.Index(gene_names)
        if len(index) != distances.size:
            raise ValueError(
                f"`gene_names` has {len(index)} entries but `observed` has {distances.size}; "
                "pass one name per gene."
            )
    frame = pd.DataFrame(
        {
            "mahalanobis": distances,
            "pvalue": result["pvalue"],
            "local_fdr": result["local_fdr"],
            "tail_fdr": result["tail_fdr"],
            "is_de": result["is_de"],
        },
        index=index,
    )
    frame.attrs["pi0"] = result["pi0"]
    frame.attrs["threshold"] = float(threshold)
    return frame


def zscore_fdr(z: np.ndarray, null_z: np.ndarray, *, threshold: float = 0.05) -> dict:
    """Cell-level FDR for correlated z-scores, with the scale taken from permutations.

    Neighbouring cells share their evidence, so counting null exceedances in a
    few permuted fields (as :func:`empirical_fdr` does for genes) is far too
    noisy here. Instead the permutations only calibrate the *scale* of the
    z-scores — ``s^2`` is the mean of the squared null z-scores, floored at 1
    so that calibration never makes the model's own z larger — and
    Benjamini–Hochberg is applied to the two-sided p-values of ``z / s``.
    BH controls the FDR for positively dependent test statistics (Benjamini
    and Yekutieli, 2001), which is what a smoothed field is.

    Parameters
    ----------
    z
        Observed z-scores, shape (n_cells,).
    null_z
        z-scores from permuted condition labels, any shape (pooled).
    threshold
        FDR level of the ``significant`` flag.

    Returns
    -------
    dict with ``pvalue``, ``fdr`` (BH-adjusted, monotone in ``|z|``),
    ``significant`` (``fdr <= threshold``) and ``scale`` (the ``s`` used).
    """
    z = np.asarray(z, dtype=np.float64)
    null_z = np.asarray(null_z, dtype=np.float64).ravel()
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"`z` must be a non-empty 1-D array, got shape {z.shape}.")
    if null_z.size == 0 or not np.all(np.isfinite(null_z)):
        raise ValueError("`null_z` must be non-empty and finite.")
    if not np.all(np.isfinite(z)):
        raise ValueError("`z` contains NaN or inf.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"`threshold` must lie strictly between 0 and 1, got {threshold!r}.")
    scale = max(1.0, float(np.sqrt(np.mean(null_z**2))))
    log_p = np.log(2.0) + log_ndtr(-np.abs(z) / scale)
    pvalue = np.exp(log_p)
    # Benjamini-Hochberg step-up, as adjusted p-values.
    order = np.argsort(pvalue)
    ranked = pvalue[order] * z.size / np.arange(1, z.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    fdr = np.empty_like(adjusted)
    fdr[order] = np.minimum(adjusted, 1.0)
    return {"pvalue": pvalue, "fdr": fdr, "significant": fdr <= threshold, "scale": scale}
