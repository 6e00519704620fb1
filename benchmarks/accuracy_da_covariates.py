"""Differential abundance with a batch that shifts composition: with and without covariates.

    python benchmarks/accuracy_da_covariates.py              # 10 seeds, cached runs
    python benchmarks/accuracy_da_covariates.py --seeds 0 1  # fewer

Data: :func:`kompot.datasets.toy` (3,000 cells before thinning, replicate
effects on) passed through :func:`kompot.datasets.with_batch_abundance`
(strength 3): batch ``B`` holds 1 of 3 (or 1 of 4) control samples and 2 of
3 (3 of 4) treated samples and is relatively richer at the start of the
trunk, where no abundance change is planted. Truth: ``obs["da_region"]``.
For each seed, kompot's ratio model runs with and without
``covariates="batch"`` and with and without ``sample_col="sample"``; the
table gives the false-discovery proportion and the true-positive rate over
cells at FDR 0.1, and the share of the batch region's cells called.
Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

import kompot
from kompot._keys import DAKeys

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "accuracy_da_covariates"
FDR = 0.1
N_LANDMARKS = 300
KEYS = DAKeys("kompot_da", "control", "treated")


def run_one(seed: int, n_samples: int, sample_col: str | None, covariates: str | None) -> dict:
    """One run's FDP, TPR and batch-region call rate (cached as JSON)."""
    name = f"s{seed}_k{n_samples}_{sample_col}_{covariates}.json"
    path = RUNS / name
    if path.exists():
        return json.loads(path.read_text())
    toy = kompot.datasets.toy(3000, 10, n_de_genes=2, n_samples=n_samples, seed=seed)
    adata = kompot.datasets.with_batch_abundance(toy, strength=3.0, seed=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kompot.tl.compute_differential_abundance(
            adata, "condition", "control", "treated", sample_col=sample_col,
            covariates=covariates, fdr_threshold=FDR, n_landmarks=N_LANDMARKS, progress=False)
    seconds = time.perf_counter() - start
    called = (adata.obs[KEYS.direction] != "neutral").to_numpy()
    truth = adata.obs["da_region"].to_numpy()
    region = adata.obs["batch_region"].to_numpy()
    out = dict(seed=seed, n_samples=n_samples, sample_col=str(sample_col),
               covariates=str(covariates), seconds=seconds,
               fdp=float((called & ~truth).sum() / max(called.sum(), 1)),
               tpr=float(called[truth].mean()), batch_region_called=float(called[region].mean()),
               n_cells=int(adata.n_obs))
    RUNS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def table(df: pd.DataFrame) -> str:
    """Markdown: mean (sd) over seeds per design, samples and covariates."""
    rows = ["| samples per condition (batch B: control + treated) | sample_col | covariates "
            "| FDP | TPR | batch-region cells called | seeds |", "|---|---|---|---|---|---|---|"]
    for (k, sc, cov), g in df.groupby(["n_samples", "sample_col", "covariates"], sort=True):
        design = f"{k} (1 + {k - 1 if k > 3 else 2})"
        cells = [f"{g[c].mean():.3f} ({g[c].std(ddof=1):.3f})" for c in
                 ("fdp", "tpr", "batch_region_called")]
        rows.append(f"| {design} | {sc} | {cov} | " + " | ".join(cells) + f" | {len(g)} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--n-samples", type=int, nargs="+", default=[3, 4])
    args = p.parse_args()
    runs = [run_one(seed, k, sc, cov) for k in args.n_samples for seed in args.seeds
            for sc in (None, "sample") for cov in (None, "batch")]
    df = pd.DataFrame(runs)
    print(f"{date.today()}, {platform.machine()} {platform.processor() or ''}, "
          f"kompot {kompot.__version__}, n_landmarks={N_LANDMARKS}, FDR {FDR}, "
          f"median run {np.median(df['seconds']):.1f} s")
    print(table(df))


if __name__ == "__main__":
    main()
