"""Command line: ``kompot demo OUTDIR`` runs DA and DE on the toy data set."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("kompot")


def _demo(outdir: Path, n_cells: int, seed: int) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    import kompot

    outdir.mkdir(parents=True, exist_ok=True)
    adata = kompot.datasets.toy(n_cells=n_cells, seed=seed)
    treated = (adata.obs["condition"] == "treated").to_numpy()
    X = adata.obsm["DM_EigenVectors"]
    Y = np.asarray(adata.X, dtype=np.float64)
    print(f"toy data: {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{adata.obs['sample'].nunique()} samples")

    start = time.perf_counter()
    da = kompot.DifferentialAbundance(n_landmarks=500, random_state=seed)
    da.fit(X[~treated], X[treated], ls_factor=0.5)
    da_out = da.predict(X, progress=False)
    da_time = time.perf_counter() - start
    region = adata.obs["da_region"].to_numpy()
    auroc_da = roc_auc_score(region, np.abs(da_out["log_fold_change_zscore"]))
    calls = pd.Series(da_out["log_fold_change_direction"]).value_counts().to_dict()
    print(f"DA  ({da_time:.1f} s): AUROC of |z| for the planted region = {auroc_da:.3f}; "
          f"cells up/down/neutral = {calls.get('up', 0)}/{calls.get('down', 0)}/"
          f"{calls.get('neutral', 0)}")

    start = time.perf_counter()
    de = kompot.DifferentialExpression(n_landmarks=300, random_state=seed)
    de.fit(X[~treated], Y[~treated], X[treated], Y[treated], ls_factor=0.5)
    de_out = de.predict(X, compute_mahalanobis=True, progress=False)
    de_time = time.perf_counter() - start
    is_de = adata.var["is_de"].to_numpy()
    auroc_de = roc_auc_score(is_de, de_out["mahalanobis_distances"])
    table = pd.DataFrame(
        {"mean_lfc": de_out["mean_log_fold_change"], "mahalanobis": de_out["mahalanobis_distances"],
         "planted": is_de},
        index=adata.var_names,
    ).sort_values("mahalanobis", ascending=False)
    print(f"DE  ({de_time:.1f} s): AUROC of Mahalanobis for the planted genes = {auroc_de:.3f}")
    print("top genes:\n" + table.head(8).to_string())

    pd.DataFrame(
        {k: v for k, v in da_out.items()}, index=adata.obs_names
    ).to_csv(outdir / "differential_abundance.csv")
    table.to_csv(outdir / "differential_expression.csv")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    umap = adata.obsm["X_umap"]
    lim = np.quantile(np.abs(da_out["log_fold_change"]), 0.99)
    sc = axes[0].scatter(umap[:, 0], umap[:, 1], c=da_out["log_fold_change"], cmap="RdBu_r",
                         vmin=-lim, vmax=lim, s=6, linewidths=0)
    fig.colorbar(sc, ax=axes[0], label="log fold change (treated vs control)")
    axes[0].set_title("Differential abundance")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[1].scatter(table["mean_lfc"], table["mahalanobis"], c=np.where(table["planted"], "#b2182b", "#9a9a9a"),
                    s=14, linewidths=0)
    axes[1].set_xlabel("mean log fold change")
    axes[1].set_ylabel("Mahalanobis distance")
    axes[1].set_title("Differential expression (red: planted genes)")
    fig.tight_layout()
    fig.savefig(outdir / "demo.png", dpi=110)
    plt.close(fig)
    print(f"wrote {outdir / 'differential_abundance.csv'}, {outdir / 'differential_expression.csv'}, "
          f"{outdir / 'demo.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kompot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="differential abundance and expression on the toy data")
    demo.add_argument("outdir", nargs="?", default="demo_output", type=Path)
    demo.add_argument("--n-cells", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args.outdir, args.n_cells, args.seed)
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
