"""One timed run in a fresh process (so peak RSS is this run's): prints one JSON line.

    python benchmarks/speed_child.py --what da --n-cells 10000 --n-genes 2000
"""

import argparse
import json
import resource
import time

import numpy as np
from sklearn.metrics import roc_auc_score

import kompot
from kompot.tl._defaults import DA_LS_FACTOR, DE_LS_FACTOR, N_LANDMARKS


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--what", choices=["da", "de"], required=True)
    p.add_argument("--n-cells", type=int, required=True)
    p.add_argument("--n-genes", type=int, default=2000)
    p.add_argument("--n-landmarks", type=int, default=N_LANDMARKS)
    p.add_argument("--ls-factor", type=float, default=None, help="default: kompot.tl's")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.ls_factor is None:
        a.ls_factor = DA_LS_FACTOR if a.what == "da" else DE_LS_FACTOR

    adata = kompot.datasets.toy(n_cells=a.n_cells, n_genes=a.n_genes, seed=a.seed)
    treated = (adata.obs["condition"] == "treated").to_numpy()
    X = adata.obsm["DM_EigenVectors"]
    rec = {"what": a.what, "n_cells": a.n_cells, "n_genes": a.n_genes,
           "n_landmarks": a.n_landmarks, "ls_factor": a.ls_factor}
    t0 = time.perf_counter()
    if a.what == "da":
        model = kompot.DifferentialAbundance(n_landmarks=a.n_landmarks, random_state=0)
        model.fit(X[~treated], X[treated], ls_factor=a.ls_factor)
        t1 = time.perf_counter()
        out = model.predict(X, progress=False)
        t2 = time.perf_counter()
        rec.update(fit_s=t1 - t0, predict_s=t2 - t1, total_s=t2 - t0)
        rec["auroc_region"] = roc_auc_score(adata.obs["da_region"],
                                            np.abs(out["log_fold_change_zscore"]))
    else:
        Y = adata.X
        model = kompot.DifferentialExpression(n_landmarks=a.n_landmarks, random_state=0)
        model.fit(X[~treated], Y[~treated], X[treated], Y[treated], ls_factor=a.ls_factor)
        t1 = time.perf_counter()
        model.predict(X, progress=False)
        t2 = time.perf_counter()
        D = model.compute_mahalanobis_distances(X, progress=False)
        t3 = time.perf_counter()
        rec.update(fit_s=t1 - t0, predict_s=t2 - t1, mahalanobis_s=t3 - t2, total_s=t3 - t0)
        rec["auroc_genes"] = roc_auc_score(adata.var["is_de"], D)
    rec["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
