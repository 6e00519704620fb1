"""Held-out checks of two rules of 2026-12-04, on data they were not chosen on.

    python benchmarks/precision_heldout.py

1. ``kompot.settings.precision = "mixed"`` against ``"double"`` on real
   cells: scanpy's bundled ``pbmc68k_reduced`` (``X_pca``), conditions
   assigned at random, 20 genes raised by 1.5 in the treated cells of
   louvain cluster 0 (the rule was chosen on ``scale.py``'s generator and
   ``toy``'s diffusion map).
2. The length-scale rule above 100,000 cells
   (:func:`kompot.core.landmarks.length_scale_of`) against the exact rule on
   a noisy 3-D swiss roll of 300,000 points (chosen on the 10-D generator).
3. Differential abundance's whitened kernel kept in float32 (mixed
   precision, where float64 does not fit its cache: a million cells; here
   the cache is shrunk so that 700 cells take that path) against float64,
   on ``pbmc68k_reduced`` (``X_pca``) with treated cells over-represented in
   louvain cluster 0 (95 % against 40 %; added 2026-12-04, later the same day).

Prints the numbers; ``benchmarks/RESULTS.md`` ("Mixed precision") quotes
them. Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd


def _in_both_precisions(adata, analysis, slot: str) -> dict:
    """``analysis`` on a copy of ``adata`` in double, then mixed precision: each copy's ``slot``."""
    import kompot

    out = {}
    try:
        for precision in ("double", "mixed"):
            kompot.settings.precision = precision
            a = adata.copy()
            analysis(a)
            out[precision] = getattr(a, slot)
    finally:
        kompot.settings.precision = "auto"
    return out


def mixed_on_real_cells() -> None:
    import scanpy as sc

    import kompot

    adata = sc.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(1)
    treated = rng.random(adata.n_obs) < 0.5
    adata.obs["condition"] = pd.Categorical(np.where(treated, "treated", "control"))
    X = np.asarray(adata.X, np.float64).copy()
    region = (adata.obs["louvain"].astype(str) == "0").to_numpy()
    planted = rng.choice(adata.n_vars, 20, replace=False)
    X[np.ix_(treated & region, planted)] += 1.5
    adata.X = X
    truth = np.isin(np.arange(adata.n_vars), planted)
    prefix = "kompot_de_control_to_treated_"
    var = _in_both_precisions(adata, lambda a: kompot.tl.compute_differential_expression(
        a, "condition", "control", "treated", obsm_key="X_pca", store_layers=False,
        progress=False), "var")
    d, m = var["double"][prefix + "mahalanobis"], var["mixed"][prefix + "mahalanobis"]
    print(f"pbmc68k_reduced, X_pca, 20 genes +1.5 in {(treated & region).sum()} treated cells")
    print(f"  largest relative difference of the Mahalanobis distance: "
          f"{np.max(np.abs(m - d) / d):.1e}")
    calls = {p: v[prefix + "is_de"].to_numpy(bool) for p, v in var.items()}
    for precision, called in calls.items():
        print(f"  {precision}: {called.sum()} calls, {(called & truth).sum()} true")
    print(f"  calls differing: {int((calls['double'] != calls['mixed']).sum())}")


def length_scale_on_a_swiss_roll(n: int = 300_000) -> None:
    from kompot.core import landmarks

    rng = np.random.default_rng(0)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    X = np.column_stack([t * np.cos(t), 20 * rng.random(n), t * np.sin(t)])
    X += rng.normal(0, 0.1, X.shape)
    t0 = time.perf_counter()
    exact = landmarks.length_scale(landmarks.nearest_neighbor_distances(X), 10.0)
    t1 = time.perf_counter()
    estimate = landmarks.length_scale_of(X, 10.0)
    t2 = time.perf_counter()
    print(f"swiss roll, {n:,} points: exact length scale {exact:.5f} ({t1 - t0:.1f} s), "
          f"estimate {estimate:.5f} ({t2 - t1:.1f} s), relative difference "
          f"{estimate / exact - 1:.1e}")


def da_kernel_in_float32_on_real_cells() -> None:
    import scanpy as sc

    import kompot
    from kompot.core import density

    adata = sc.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(2)
    region = (adata.obs["louvain"].astype(str) == "0").to_numpy()
    treated = rng.random(adata.n_obs) < np.where(region, 0.95, 0.4)
    adata.obs["condition"] = pd.Categorical(np.where(treated, "treated", "control"))
    n_landmarks = 200
    full = density._KERNEL_CACHE_BYTES
    density._KERNEL_CACHE_BYTES = adata.n_obs * n_landmarks * 6  # float32 fits, float64 not
    try:
        obs = _in_both_precisions(adata, lambda a: kompot.tl.compute_differential_abundance(
            a, "condition", "control", "treated", obsm_key="X_pca", n_landmarks=n_landmarks,
            progress=False), "obs")
    finally:
        density._KERNEL_CACHE_BYTES = full
    prefix = "kompot_da_control_to_treated_"
    d, m = (obs[p][prefix + "lfc"].to_numpy() for p in ("double", "mixed"))
    calls = {p: o[prefix + "lfc_direction"].astype(str).to_numpy() for p, o in obs.items()}
    print(f"pbmc68k_reduced, X_pca, DA with {n_landmarks} landmarks, treated 95 % in louvain 0 (40 % elsewhere)")
    print(f"  largest difference of the log fold change: {np.max(np.abs(m - d)):.1e} "
          f"(largest |lfc| {np.max(np.abs(d)):.2f})")
    z = {p: o[prefix + "lfc_zscore"].to_numpy() for p, o in obs.items()}
    fdr = {p: o[prefix + "lfc_fdr"].to_numpy() for p, o in obs.items()}
    print(f"  largest difference of the z-score: {np.max(np.abs(z['mixed'] - z['double'])):.1e} "
          f"(largest |z| {np.max(np.abs(z['double'])):.2f}); smallest FDR "
          f"{fdr['double'].min():.3g} (double), {fdr['mixed'].min():.3g} (mixed)")
    for precision, called in calls.items():
        print(f"  {precision}: {(called != 'neutral').sum()} cells called, "
              f"{(called[region] != 'neutral').sum()} of them in louvain 0")
    print(f"  calls differing: {int((calls['double'] != calls['mixed']).sum())}")


if __name__ == "__main__":
    mixed_on_real_cells()
    length_scale_on_a_swiss_roll()
    da_kernel_in_float32_on_real_cells()
