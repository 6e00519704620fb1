"""``kompot demo``: DA and DE on the toy data set, scored against its planted truth."""

from __future__ import annotations

import time
from pathlib import Path

# toy() puts 3 replicate samples in each condition and needs 20 cells per
# sample on average.
MIN_CELLS = 2 * 3 * 20


def _auroc(truth, score) -> float:
    """Area under the ROC curve, NaN when the truth has only one class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score)) if len(set(truth)) == 2 else float("nan")


def run_demo(outdir: Path, n_cells: int, seed: int) -> None:
    """DA and DE on ``toy(n_cells, seed=seed)``, scored against the planted truth, into ``outdir``."""
    import kompot

    outdir.mkdir(parents=True, exist_ok=True)
    adata = kompot.datasets.toy(n_cells=n_cells, seed=seed)
    print(f"toy data: {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{adata.obs['sample'].nunique()} replicate samples, planted DA region and "
          f"{int(adata.var['is_de'].sum())} planted DE genes")
    # 300 landmarks resolve the toy manifold; kompot.tl's default (500) would
    # only make this small demo slower.
    fast = {"n_landmarks": 300, "progress": False}
    _demo_da(adata, fast)
    table = _demo_de(adata, fast)
    adata.write_h5ad(outdir / "toy_results.h5ad")
    table.to_csv(outdir / "differential_expression.csv")
    adata.obs.filter(like="kompot_da").to_csv(outdir / "differential_abundance.csv")
    n_figures = _demo_figures(adata, table, outdir)
    print(f"wrote {outdir}/toy_results.h5ad, two CSV tables and {n_figures} figures")


def _demo_da(adata, fast: dict) -> None:
    import kompot
    from kompot._keys import DAKeys

    start = time.perf_counter()
    kompot.tl.compute_differential_abundance(
        adata, "condition", "control", "treated", sample_col="sample", **fast
    )
    da = DAKeys("kompot_da", "control", "treated")
    auroc = _auroc(adata.obs["da_region"], adata.obs[da.zscore].abs())
    calls = adata.obs[da.direction].value_counts()
    in_region = (adata.obs[da.direction] != "neutral") & adata.obs["da_region"]
    print(f"DA ({time.perf_counter() - start:.1f} s): AUROC of |z| for the planted region "
          f"{auroc:.3f}; cells up {calls['up']}, down {calls['down']} at FDR 0.05, "
          f"{in_region.sum()} of them in the planted region")


def _demo_de(adata, fast: dict):
    import kompot
    from kompot._keys import DEKeys

    start = time.perf_counter()
    kompot.tl.compute_differential_expression(
        adata, "condition", "control", "treated", sample_col="sample", **fast
    )
    de = DEKeys("kompot_de", "control", "treated")
    called = adata.var[de.is_de].to_numpy()
    planted = adata.var["is_de"].to_numpy()
    auroc = _auroc(planted, adata.var[de.mahalanobis])
    print(f"DE ({time.perf_counter() - start:.1f} s): AUROC of the Mahalanobis distance for the "
          f"planted genes {auroc:.3f}; {called.sum()} genes at FDR 0.05, "
          f"{(called & planted).sum()} of them planted")
    table = adata.var[[de.mean_lfc, de.mahalanobis, de.tail_fdr, de.is_de, "is_de"]]
    print("top genes:\n" + table.sort_values(de.mahalanobis, ascending=False).head(8).to_string())
    return table


def _demo_figures(adata, table, outdir: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import kompot
    from kompot._keys import DEKeys

    top_gene = table[DEKeys("kompot_de", "control", "treated").mahalanobis].idxmax()
    figures = {
        "volcano_de.png": lambda: kompot.pl.volcano_de(adata, return_fig=True),
        "volcano_da.png": lambda: kompot.pl.volcano_da(adata, return_fig=True),
        "embedding_da.png": lambda: kompot.pl.embedding(
            adata, "X_umap", color=["lfc", "direction"], return_fig=True),
        "direction_barplot.png": lambda: kompot.pl.direction_barplot(
            adata, "cell_type", return_fig=True),
        "heatmap_de.png": lambda: kompot.pl.heatmap(adata, groupby="cell_type", return_fig=True),
        f"expression_{top_gene}.png": lambda: kompot.pl.expression(
            adata, top_gene, return_fig=True),
    }
    for name, draw in figures.items():
        fig = draw()
        fig.savefig(outdir / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return len(figures)
