"""kompot 0.8.0 (the peer) at its defaults on datasets written by ``accuracy_da.py``.

Runs only inside the peer's virtual environment, from a directory outside the
source tree (so that ``import kompot`` is the published package):

    cd /tmp && /work/main/benchmarks/.peer-venv/bin/python \
        /work/main/benchmarks/accuracy_peer_child.py DATASET.npz ...

For each ``X.npz`` writes ``X.peer.npz`` beside it: a per-cell score signed so
that positive means more condition-C1 cells (``-lfc``), the per-cell calls
(+1 more C1, -1 fewer, 0) from the peer's own direction column, and the
runtime. What a user of the peer gets: only the data, the conditions, the
representation and the replicate samples are passed. A failure leaves
``error`` instead of the results.
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings

import anndata as ad
import numpy as np
import pandas as pd

import kompot


def run(path: str) -> dict:
    d = np.load(path)
    adata = ad.AnnData(obs=pd.DataFrame({"condition": d["condition"], "sample": d["sample"]}))
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.obsm["X"] = np.asarray(d["X"], np.float64)
    before = set(adata.obs.columns)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kompot.compute_differential_abundance(
            adata, "condition", "C1", "C2", obsm_key="X", sample_col="sample", random_state=0,
        )
    runtime = time.perf_counter() - t0
    new = [c for c in adata.obs.columns if c not in before]
    lfc_col = next(c for c in new if c.endswith("_lfc"))
    dir_col = next((c for c in new if "direction" in c), None)
    lfc = adata.obs[lfc_col].to_numpy(np.float64)  # log density(C2) - log density(C1)
    calls = np.zeros(adata.n_obs, dtype=int)
    if dir_col is not None:
        direction = adata.obs[dir_col].astype(str).to_numpy()
        calls = np.select([direction == "down", direction == "up"], [1, -1], 0)
    return dict(score=-lfc, calls=calls, runtime=runtime, columns=np.array(new))


def main() -> None:
    if getattr(kompot, "__version__", "?") != "0.8.0" or "site-packages" not in kompot.__file__:
        raise SystemExit(f"expected the published kompot 0.8.0, got {kompot.__file__}")
    for path in sys.argv[1:]:
        out = path[: -len(".npz")] + ".peer.npz"
        try:
            np.savez(out, **run(path))
            print(f"peer {path}: ok", flush=True)
        except Exception:  # noqa: BLE001 - record any failure of the peer, keep going
            np.savez(out, error=np.array(traceback.format_exc()[-2000:]))
            print(f"peer {path}: error", flush=True)


if __name__ == "__main__":
    main()
