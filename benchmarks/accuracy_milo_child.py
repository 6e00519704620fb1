"""Milo (pertpy) and MELD on datasets written by ``accuracy_da.py``; runs in the side venv.

    python -m venv benchmarks/.milo-venv
    benchmarks/.milo-venv/bin/pip install pertpy pydeseq2 scanpy
    benchmarks/.milo-venv/bin/pip install "statsmodels<0.15" filelock meld
    cd /tmp && /work/main/benchmarks/.milo-venv/bin/python \
        /work/main/benchmarks/accuracy_milo_child.py DATASET.npz ...

For each ``X.npz`` writes ``X.field.npz`` beside it with, per method, a
per-cell score signed so that positive means more condition-C1 cells, the
per-cell calls (+1, -1, 0; Milo only) and the runtime in seconds. A method
that fails leaves ``{method}_error`` instead.

Milo: kNN graph (k=30) on the 10-D states, neighbourhoods with prop=0.1,
counts per sample, ``~condition`` with the pydeseq2 solver. A cell's score is
the mean logFC of the neighbourhoods containing it; it is called in the sign
of the mean logFC of the *significant* (SpatialFDR < 0.1) neighbourhoods that
contain it. Cells in no neighbourhood get no score (NaN) and no call.

MELD: sample densities on the states, normalised across samples
(``meld.utils.normalize_densities``); the likelihood of C1 is the sum over
C1's samples; score = likelihood - 0.5. No calls (MELD has no test).
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings

import numpy as np

FDR = 0.1


def run_milo(d):
    import anndata as ad
    import pandas as pd
    import pertpy as pt
    import scanpy as sc

    a = ad.AnnData(X=np.zeros((len(d["X"]), 1), dtype=np.float32),
                   obs=pd.DataFrame({"condition": d["condition"], "sample": d["sample"]}))
    a.obs_names = a.obs_names.astype(str)
    a.obsm["X_rep"] = d["X"]
    t0 = time.perf_counter()
    sc.pp.neighbors(a, use_rep="X_rep", n_neighbors=30)
    milo = pt.tl.Milo()
    mdata = milo.load(a)
    milo.make_nhoods(mdata["rna"], prop=0.1)
    mdata = milo.count_nhoods(mdata, sample_col="sample")
    cond = {s: s.split("_")[0] for s in mdata["milo"].obs_names}
    mdata["milo"].obs["condition"] = pd.Categorical([cond[s] for s in mdata["milo"].obs_names],
                                                    categories=["C1", "C2"])
    milo.da_nhoods(mdata, design="~condition", solver="pydeseq2")
    runtime = time.perf_counter() - t0
    res = mdata["milo"].var
    lfc = res["logFC"].to_numpy(dtype=float)  # C2 vs C1 (C1 is the reference level)
    sig = (res["SpatialFDR"].to_numpy(dtype=float) < FDR) & np.isfinite(lfc)
    lfc0 = np.nan_to_num(lfc)
    M = mdata["rna"].obsm["nhoods"].tocsr().astype(float)
    n_in = np.asarray(M.sum(1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        score = -(M @ lfc0) / n_in
    n_sig = np.asarray(M @ sig.astype(float)).ravel()
    sig_sum = M @ (lfc0 * sig)
    calls = np.where(n_sig > 0, -np.sign(sig_sum), 0).astype(int)
    return dict(milo_score=score, milo_calls=calls, milo_runtime=runtime,
                milo_n_nhoods=M.shape[1], milo_n_sig=int(sig.sum()))


def run_meld(d):
    import meld

    samples = np.asarray(d["sample"])
    t0 = time.perf_counter()
    dens = meld.MELD(verbose=False).fit_transform(d["X"], sample_labels=samples)
    lik = meld.utils.normalize_densities(dens)
    c1 = [c for c in lik.columns if str(c).startswith("C1")]
    score = lik[c1].sum(axis=1).to_numpy() - 0.5
    return dict(meld_score=score, meld_runtime=time.perf_counter() - t0)


def main():
    warnings.filterwarnings("ignore")
    for path in sys.argv[1:]:
        d = dict(np.load(path))
        out = {}
        for name, fn in (("milo", run_milo), ("meld", run_meld)):
            try:
                out.update(fn(d))
            except Exception as exc:  # report, do not drop silently
                traceback.print_exc()
                out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        np.savez(path.replace(".npz", ".field.npz"), **out)
        msg = {k: v for k, v in out.items() if k.endswith(("runtime", "error", "n_sig"))}
        print(path, msg, flush=True)


if __name__ == "__main__":
    main()
