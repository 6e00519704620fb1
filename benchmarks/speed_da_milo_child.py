"""Milo (pertpy) timed warm on one dataset of ``speed_da.py``; runs in the side venv.

    cd /tmp && /work/main/benchmarks/.milo-venv/bin/python \
        /work/main/benchmarks/speed_da_milo_child.py WARMUP.npz DATASET.npz REPEATS

One process: the imports, a warm-up run on ``WARMUP.npz`` (numba compiles
``sc.pp.neighbors``' pynndescent and umap kernels; its wall time is reported as
``warmup_s``), then ``REPEATS`` timed runs on ``DATASET.npz``. A run is
``sc.pp.neighbors(use_rep="X_rep", n_neighbors=30)``, ``make_nhoods(prop=0.1)``,
``count_nhoods(sample_col="sample")`` and ``da_nhoods(design="~condition",
solver="pydeseq2")``; ``total_s`` is their summed wall time. A cell's score is
minus the mean logFC (C2 vs C1) of the neighbourhoods containing it (positive:
more C1; NaN in none). Prints progress lines, then one JSON line; ``peak_rss_gb``
is this process's ``VmHWM`` (warm-up and repeats included).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import sys
import time
import warnings

import numpy as np
from _proc import peak_rss_gb
from speed_da import modified_auroc


def rss_gb():
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:")) / 1024**2


def run_milo(d):
    import anndata as ad
    import pandas as pd
    import pertpy as pt
    import scanpy as sc

    a = ad.AnnData(X=np.zeros((len(d["X"]), 1), dtype=np.float32),
                   obs=pd.DataFrame({"condition": d["condition"], "sample": d["sample"]}))
    a.obs_names = a.obs_names.astype(str)
    a.obsm["X_rep"] = d["X"]
    t = [time.perf_counter()]
    sc.pp.neighbors(a, use_rep="X_rep", n_neighbors=30)
    t.append(time.perf_counter())
    milo = pt.tl.Milo()
    mdata = milo.load(a)
    milo.make_nhoods(mdata["rna"], prop=0.1)
    t.append(time.perf_counter())
    mdata = milo.count_nhoods(mdata, sample_col="sample")
    t.append(time.perf_counter())
    cond = {s: s.split("_")[0] for s in mdata["milo"].obs_names}
    mdata["milo"].obs["condition"] = pd.Categorical([cond[s] for s in mdata["milo"].obs_names],
                                                    categories=["C1", "C2"])
    with contextlib.redirect_stdout(io.StringIO()):  # pydeseq2 prints its result table
        milo.da_nhoods(mdata, design="~condition", solver="pydeseq2")
    t.append(time.perf_counter())
    res = mdata["milo"].var
    lfc = np.nan_to_num(res["logFC"].to_numpy(dtype=float))
    M = mdata["rna"].obsm["nhoods"].tocsr().astype(float)
    n_in = np.asarray(M.sum(1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        score = -(M @ lfc) / n_in
    n_sig = int((res["SpatialFDR"].to_numpy(dtype=float) < 0.1).sum())
    stages = np.diff(t)
    return dict(total_s=t[-1] - t[0], neighbors_s=stages[0], make_nhoods_s=stages[1],
                count_nhoods_s=stages[2], da_nhoods_s=stages[3],
                auroc=modified_auroc(score, d["truth"]), frac_scored=float(np.isfinite(score).mean()),
                n_nhoods=int(M.shape[1]), n_sig=n_sig)


def main():
    warnings.filterwarnings("ignore")
    warm_path, path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    import importlib.metadata as md

    import pertpy  # noqa: F401
    import scanpy  # noqa: F401

    import_s = time.perf_counter() - t0
    warm = dict(np.load(warm_path))
    t0 = time.perf_counter()
    warm_run = run_milo(warm)
    warmup_s = time.perf_counter() - t0
    n_warm = len(warm["X"])
    print(f"warm-up ({n_warm:,} cells): {warmup_s:.1f} s", flush=True)
    del warm
    gc.collect()
    rss_warm = rss_gb()
    d = dict(np.load(path))
    runs = []
    for r in range(repeats):
        runs.append(run_milo(d))
        gc.collect()
        print(f"Milo {len(d['X']):,} cells, run {r + 1}/{repeats}: {runs[-1]['total_s']:.1f} s, "
              f"AUROC {runs[-1]['auroc']:.3f}", flush=True)
    versions = {p: md.version(p) for p in ("pertpy", "pydeseq2", "scanpy", "pynndescent",
                                           "numba", "numpy", "scipy")}
    print(json.dumps(dict(n_cells=len(d["X"]), repeats=repeats, runs=runs, import_s=import_s,
                          warmup_n=n_warm,
                          warmup_s=warmup_s, warmup_run=warm_run,
                          rss_after_warmup_gb=rss_warm, peak_rss_gb=peak_rss_gb(),
                          versions=versions)), flush=True)


if __name__ == "__main__":
    main()
