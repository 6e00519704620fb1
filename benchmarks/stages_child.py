"""Time each stage of the model classes; prints one JSON line.

Uses only the model-class API that ours and kompot 0.8.0 share (the seed's
``DifferentialAbundance`` and ``DifferentialExpression``), so the same script
runs in either environment: ``benchmarks/stages.py`` starts it with our
Python from the source tree and with the peer's Python from a folder outside
it (where ``import kompot`` is the published package). Imports nothing but
kompot, numpy and the standard library.

    python benchmarks/stages_child.py --analysis de --data d.npz --out r.npz
"""

import argparse
import json
import time

import numpy as np
from _proc import peak_rss_gb

import kompot


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--analysis", choices=["da", "de"], required=True)
    p.add_argument("--data", required=True,
                   help=".npz with X, treated, landmarks, ls_da, ls_de (and Y for DE)")
    p.add_argument("--out", required=True, help=".npz for the results (LFC or distances)")
    a = p.parse_args()

    d = np.load(a.data)
    X, treated, landmarks = d["X"], d["treated"], d["landmarks"]
    rec = {"version": getattr(kompot, "__version__", "?"), "file": kompot.__file__}
    t0 = time.perf_counter()
    if a.analysis == "da":
        model = kompot.DifferentialAbundance(random_state=0)
        # `ls` and `d` pin the length scale and the dimensionality (the peer
        # forwards them to mellon; its default d would be estimated).
        model.fit(X[~treated], X[treated], landmarks=landmarks, ls=float(d["ls_da"]),
                  d=X.shape[1])
        t1 = time.perf_counter()
        out = model.predict(X, progress=False)
        t2 = time.perf_counter()
        rec.update(fit_s=t1 - t0, predict_s=t2 - t1)
        np.savez(a.out, lfc=out["log_fold_change"], z=out["log_fold_change_zscore"])
    else:
        Y = d["Y"]
        model = kompot.DifferentialExpression(use_empirical_variance=True, random_state=0)
        model.fit(X[~treated], Y[~treated], X[treated], Y[treated], sigma=1.0,
                  landmarks=landmarks, ls=float(d["ls_de"]))
        t1 = time.perf_counter()
        model.predict(X, compute_mahalanobis=False, progress=False)
        t2 = time.perf_counter()
        D = model.compute_mahalanobis_distances(X, progress=False)
        t3 = time.perf_counter()
        rec.update(fit_s=t1 - t0, predict_s=t2 - t1, mahalanobis_s=t3 - t2)
        np.savez(a.out, mahalanobis=np.asarray(D))
    rec["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
