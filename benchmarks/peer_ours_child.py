"""One timed stage of our kompot.tl in a fresh process; prints one JSON line.

The counterpart of ``peer_child.py`` (the published kompot 0.8.0), started by
``benchmarks/peer_compare.py``. Every stage also saves the landmarks and
length scale it chose, which the peer is then given.

    python benchmarks/peer_ours_child.py --stage da --data d.h5ad --out ours_da.npz
"""

import argparse
import json
import time
import warnings

import anndata as ad
import numpy as np
from _proc import peak_rss_gb

import kompot
from kompot.tl._defaults import DA_LS_FACTOR, DE_LS_FACTOR, N_LANDMARKS, OBSM_KEY

C1, C2 = "control", "treated"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=["da", "de", "de_fdr"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--sample-col", default=None)
    p.add_argument("--out", required=True, help=".npz for the per-cell / per-gene results")
    p.add_argument("--hyper", default=None, help="write the landmarks (.npy) and ls (.json) used here")
    p.add_argument("--no-empirical-variance", action="store_true")
    a = p.parse_args()

    adata = ad.read_h5ad(a.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if a.stage == "da":
            kompot.tl.compute_differential_abundance(
                adata, "condition", C1, C2, sample_col=a.sample_col, progress=False,
            )
        else:
            kompot.tl.compute_differential_expression(
                adata, "condition", C1, C2, sample_col=a.sample_col,
                fdr=a.stage == "de_fdr", use_empirical_variance=not a.no_empirical_variance,
                progress=False,
            )
        elapsed = time.perf_counter() - t0

    prefix = f"{C1}_to_{C2}"
    if a.stage == "da":
        base = f"kompot_da_{prefix}"
        np.savez(a.out, lfc=adata.obs[f"{base}_lfc"].to_numpy(np.float64),
                 zscore=adata.obs[f"{base}_lfc_zscore"].to_numpy(np.float64))
    else:
        base = f"kompot_de_{prefix}"
        var = adata.var
        is_de = var[f"{base}_is_de"].to_numpy(bool) if f"{base}_is_de" in var else np.array([])
        np.savez(a.out, mahalanobis=var[f"{base}_mahalanobis"].to_numpy(np.float64), is_de=is_de)
    if a.hyper:
        record = adata.uns["kompot_da" if a.stage == "da" else "kompot_de"]
        np.save(a.hyper + ".npy", np.asarray(record["landmarks"], np.float64))
        with open(a.hyper + ".json", "w") as fh:
            json.dump({"ls": float(record["ls"]), "ls_factor": DA_LS_FACTOR if a.stage == "da" else DE_LS_FACTOR,
                       "n_landmarks": N_LANDMARKS, "obsm_key": OBSM_KEY,
                       "d": int(adata.obsm[OBSM_KEY].shape[1]),
                       "landmarks": a.hyper + ".npy"}, fh)
    messages = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    print(json.dumps({
        "side": "ours", "stage": a.stage, "call_s": elapsed,
        "peak_rss_gb": peak_rss_gb(),
        "warnings": messages,
    }))


if __name__ == "__main__":
    main()
