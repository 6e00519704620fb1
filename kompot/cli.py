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
    from sklearn.metrics import roc_auc_score

    import kompot
    from kompot._keys import DAKeys, DEKeys

    outdir.mkdir(parents=True, exist_ok=True)
    adata = kompot.datasets.toy(n_cells=n_cells, seed=seed)
    print(f"toy data: {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{adata.obs['sample'].nunique()} replicate samples, planted DA region and "
          f"{int(adata.var['is_de'].sum())} planted DE genes")
    c1, c2 = "control", "treated"
    # 300 landmarks resolve the toy manifold; kompot.tl's default (500) would
    # only make this small demo slower.
    fast = {"n_landmarks": 300, "progress": False}

    start = time.perf_counter()
    kompot.tl.compute_differential_abundance(
        adata, "condition", c1, c2, sample_col="sample", **fast
    )
    da = DAKeys("kompot_da", c1, c2)
    auroc = roc_auc_score(adata.obs["da_region"], adata.obs[da.zscore].abs())
    calls = adata.obs[da.direction].value_counts()
    in_region = (adata.obs[da.direction] != "neutral") & adata.obs["da_region"]
    print(f"DA ({time.perf_counter() - start:.1f} s): AUROC of |z| for the planted region "
          f"{auroc:.3f}; cells up {calls['up']}, down {calls['down']} at FDR 0.05, "
          f"{in_region.sum()} of them in the planted region")

    start = time.perf_counter()
    kompot.tl.compute_differential_expression(
        adata, "condition", c1, c2, sample_col="sample", **fast
    )
    de = DEKeys("kompot_de", c1, c2)
    called = adata.var[de.is_de].to_numpy()
    planted = adata.var["is_de"].to_numpy()
    auroc = roc_auc_score(planted, adata.var[de.mahalanobis])
    print(f"DE ({time.perf_counter() - start:.1f} s): AUROC of the Mahalanobis distance for the "
          f"planted genes {auroc:.3f}; {called.sum()} genes at FDR 0.05, "
          f"{(called & planted).sum()} of them planted")
    table = adata.var[[de.mean_lfc, de.mahalanobis, de.tail_fdr, de.is_de, "is_de"]]
    print("top genes:\n" + table.sort_values(de.mahalanobis, ascending=False).head(8).to_string())

    adata.write_h5ad(outdir / "toy_results.h5ad")
    table.to_csv(outdir / "differential_expression.csv")
    adata.obs.filter(like="kompot_da").to_csv(outdir / "differential_abundance.csv")

    top_gene = table[de.mahalanobis].idxmax()
    figures = {
        "volcano_de.png": lambda: kompot.pl.volcano_de(adata, return_fig=True),
        "volcano_da.png": lambda: kompot.pl.volcano_da(adata, return_fig=True),
        "embedding_da.png": lambda: kompot.pl.embedding(
            adata, "X_umap", color=["lfc", "direction"], return_fig=True),
        "direction_barplot.png": lambda: kompot.pl.direction_barplot(
            adata, "cell_type", return_fig=True),
        "heatmap_de.png": lambda: kompot.pl.heatmap(adata, groupby="cell_type", return_fig=True),
        f"expression_{top_gene}.png": lambda: kompot.pl.expression(adata, top_gene, return_fig=True),
    }
    for name, draw in figures.items():
        fig = draw()
        fig.savefig(outdir / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    print(f"wrote {outdir}/toy_results.h5ad, two CSV tables and {len(figures)} figures")
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
