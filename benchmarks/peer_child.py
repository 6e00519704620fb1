"""One timed stage of the published kompot 0.8.0 ("the peer"); prints one JSON line.

Runs only inside the peer's own virtual environment, started by
``benchmarks/peer_compare.py`` from a working directory outside the source
tree (so that ``import kompot`` finds the published package, which is
checked). Imports nothing but the peer, anndata and numpy.

    cd /tmp && /work/main/benchmarks/.peer-venv/bin/python \
        /work/main/benchmarks/peer_child.py --stage da --data d.h5ad \
        --params p.json --out peer_da.npz
"""

import argparse
import json
import time
import warnings

import anndata as ad
import numpy as np
from _proc import peak_rss_gb

import kompot

C1, C2 = "control", "treated"


def run_at_defaults(adata, a, obsm_key):
    """What a user of the peer runs: only the data, the conditions and the representation."""
    if a.stage == "da":
        kompot.compute_differential_abundance(adata, "condition", C1, C2, obsm_key=obsm_key,
                                              sample_col=a.sample_col, random_state=0)
    else:
        kompot.compute_differential_expression(
            adata, "condition", C1, C2, obsm_key=obsm_key, sample_col=a.sample_col,
            random_state=0, null_genes="auto" if a.stage == "de_fdr" else 0, progress=False,
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=["da", "de", "de_fdr"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--params", required=True, help="JSON: obsm_key, ls, ls_factor, d, landmarks (.npy)")
    p.add_argument("--sample-col", default=None)
    p.add_argument("--out", required=True, help=".npz for the per-cell / per-gene results")
    p.add_argument("--own-ls", action="store_true",
                   help="let the peer compute its length scale from ls_factor instead of ours")
    p.add_argument("--own-d", action="store_true",
                   help="DA: let the peer estimate the dimensionality (its fractal default)")
    p.add_argument("--no-empirical-variance", action="store_true")
    p.add_argument("--defaults", action="store_true",
                   help="the peer at its own defaults: no landmarks, length scale or d given")
    a = p.parse_args()

    version = getattr(kompot, "__version__", "?")
    if "site-packages" not in kompot.__file__ or version != "0.8.0":
        raise SystemExit(f"expected the published kompot 0.8.0, got {version} at {kompot.__file__}")
    prm = json.loads(open(a.params).read())
    landmarks = np.load(prm["landmarks"])
    adata = ad.read_h5ad(a.data)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if a.defaults:
            run_at_defaults(adata, a, prm["obsm_key"])
        elif a.stage == "da":
            # The peer forwards unknown keywords to mellon's DensityEstimator:
            # `ls` and `d` pin the length scale and dimensionality to ours.
            pinned = {} if a.own_ls else {"ls": prm["ls"]}
            if not a.own_d:
                pinned["d"] = prm["d"]
            kompot.compute_differential_abundance(
                adata, "condition", C1, C2, obsm_key=prm["obsm_key"], sample_col=a.sample_col,
                landmarks=landmarks, ls_factor=prm["ls_factor"], random_state=0, **pinned,
            )
        else:
            kompot.compute_differential_expression(
                adata, "condition", C1, C2, obsm_key=prm["obsm_key"], sample_col=a.sample_col,
                landmarks=landmarks, ls=None if a.own_ls else prm["ls"],
                ls_factor=prm["ls_factor"], sigma=1.0,
                use_empirical_variance=not a.no_empirical_variance, compute_mahalanobis=True, random_state=0,
                null_genes="auto" if a.stage == "de_fdr" else 0, progress=False,
            )
        elapsed = time.perf_counter() - t0

    prefix = f"{C1}_to_{C2}"
    # With samples the peer appends "_sample_var" to its statistics' names.
    sv = "_sample_var" if a.sample_col else ""
    if a.stage == "da":
        base = f"kompot_da_{prefix}"
        np.savez(a.out, lfc=adata.obs[f"{base}_lfc"].to_numpy(np.float64),
                 zscore=adata.obs[f"{base}_lfc_zscore{sv}"].to_numpy(np.float64))
    else:
        var = adata.var
        base = f"kompot_de_{prefix}"
        is_de_col = next((c for c in (f"{base}_is_de{sv}", f"{base}_is_de") if c in var), None)
        is_de = var[is_de_col].to_numpy(bool) if is_de_col else np.array([])
        np.savez(a.out, mahalanobis=var[f"{base}_mahalanobis{sv}"].to_numpy(np.float64),
                 is_de=is_de)
    messages = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    print(json.dumps({
        "side": "peer", "stage": a.stage, "call_s": elapsed,
        "peak_rss_gb": peak_rss_gb(),
        "warnings": messages,
    }))


if __name__ == "__main__":
    main()
