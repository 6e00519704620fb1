"""Many donors, model classes only: fit, prediction and Mahalanobis of one DifferentialExpression.

    PYTHONPATH=/path/to/kompot-checkout python benchmarks/speed_donors_stages.py LABEL \\
        [--n-cells 8000 --n-genes 1000 --n-samples 20 --n-predict 2000]

A smaller, quicker companion of ``speed_donors.py`` for comparing two
checkouts: start it twice at the same time (one per checkout), so both runs
share whatever else loads the machine. Data: ``kompot.datasets.toy`` with
``n_samples`` replicate samples per condition; 500 landmarks, ``ls_factor``
0.5 (kompot.tl's); the fit with both conditions' sample indices, the
prediction at the first ``n_predict`` cells, the Mahalanobis distances at the
landmarks. Prints wall and CPU seconds per stage and two checksums (sums of
the condition-1 std and of the distances), which must agree between checkouts.
"""

import argparse
import time

import numpy as np

import kompot


def main():
    p = argparse.ArgumentParser()
    p.add_argument("label")
    p.add_argument("--n-cells", type=int, default=8000)
    p.add_argument("--n-genes", type=int, default=1000)
    p.add_argument("--n-samples", type=int, default=20)
    p.add_argument("--n-predict", type=int, default=2000)
    a = p.parse_args()
    adata = kompot.datasets.toy(n_cells=a.n_cells, n_genes=a.n_genes, n_samples=a.n_samples)
    X = np.asarray(adata.obsm["DM_EigenVectors"])
    t = (adata.obs["condition"] == "treated").to_numpy()
    Y = np.asarray(adata.X)
    s = adata.obs["sample"].astype(str).to_numpy()
    de = kompot.DifferentialExpression(n_landmarks=500, random_state=0)
    clock = [(time.perf_counter(), time.process_time())]
    de.fit(X[~t], Y[~t], X[t], Y[t], condition1_sample_indices=s[~t],
           condition2_sample_indices=s[t], ls_factor=0.5)
    clock.append((time.perf_counter(), time.process_time()))
    out = de.predict(X[:a.n_predict], progress=False)
    clock.append((time.perf_counter(), time.process_time()))
    D = de.compute_mahalanobis_distances(X, progress=False)
    clock.append((time.perf_counter(), time.process_time()))
    stages = [f"{name} {b[0] - a_[0]:.1f} s (CPU {b[1] - a_[1]:.1f})" for name, a_, b in
              zip(("fit", "predict", "Mahalanobis"), clock, clock[1:], strict=False)]
    print(a.label, "; ".join(stages), "| checksums",
          float(out["condition1_std"].sum()), float(D.sum()))


if __name__ == "__main__":
    main()
