"""One DE method on one toy data set, for ``accuracy_de.py``; prints one JSON line.

Runs in whichever environment the method needs, always in a fresh process:

    # ours (the dev venv)
    .venv/bin/python benchmarks/accuracy_de_child.py --method ours --data d.h5ad --out r.npz [--sample-col sample]
    # kompot 0.8.0 (from a directory outside the source tree, PYTHONPATH unset)
    cd /tmp && /work/main/benchmarks/.peer-venv/bin/python \
        /work/main/benchmarks/accuracy_de_child.py --method peer --data d.h5ad --out r.npz
    # pseudobulk DESeq2 per cluster (pydeseq2, in benchmarks/.milo-venv)
    cd /tmp && /work/main/benchmarks/.milo-venv/bin/python \
        /work/main/benchmarks/accuracy_de_child.py --method deseq2 --data d.h5ad --out r.npz

Writes per gene: ``score`` (larger = more evidence of a change), ``q``
(q-value-like number, NaN where the method has none), ``local_fdr`` (peer and
ours, else NaN) and ``is_de`` (the method's own call at its default threshold);
and the runtime of the method's call in seconds (data loading excluded).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

C1, C2 = "control", "treated"
MIN_CELLS = 10  # pseudobulk: a sample enters a cluster's test with at least this many cells


def run_ours(adata, sample_col, covariates=None, obsm_key="DM_EigenVectors", moderate=True):
    import kompot
    from kompot._keys import DEKeys

    t0 = time.perf_counter()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, sample_col=sample_col,
                                              covariates=covariates, obsm_key=obsm_key,
                                              moderate_replicates=moderate, progress=False,
                                              store_layers=False)
    runtime = time.perf_counter() - t0
    k = DEKeys("kompot_de", C1, C2)
    var = adata.var
    return dict(score=var[k.mahalanobis].to_numpy(float), q=var[k.tail_fdr].to_numpy(float),
                local_fdr=var[k.local_fdr].to_numpy(float), is_de=var[k.is_de].to_numpy(bool),
                runtime=runtime), {"version": kompot.__version__, "var_columns": list(var.columns)}


def run_peer(adata, sample_col, covariates=None, obsm_key="DM_EigenVectors"):
    if covariates:
        raise SystemExit("kompot 0.8.0 takes no covariates")
    import kompot

    version = getattr(kompot, "__version__", "?")
    if "site-packages" not in kompot.__file__ or version != "0.8.0":
        raise SystemExit(f"expected the published kompot 0.8.0, got {version} at {kompot.__file__}")
    t0 = time.perf_counter()
    # The peer's defaults (null_genes="auto", random_state as a user would set it);
    # store_additional_stats only makes it also store the tail FDR it computes anyway.
    kompot.compute_differential_expression(
        adata, "condition", C1, C2, obsm_key=obsm_key, sample_col=sample_col,
        random_state=0, null_genes="auto", progress=False, compute_mahalanobis=True,
        store_additional_stats=True,
    )
    runtime = time.perf_counter() - t0
    var = adata.var
    base = f"kompot_de_{C1}_to_{C2}"
    sv = "_sample_var" if sample_col else ""  # with samples the peer renames its statistics

    def col(name, dtype=float, fill=np.nan):
        for c in (f"{base}_{name}{sv}", f"{base}_{name}"):
            if c in var:
                return var[c].to_numpy(dtype)
        return np.full(adata.n_vars, fill, dtype=dtype)

    return dict(score=col("mahalanobis"), q=col("mahalanobis_tail_fdr"),
                local_fdr=col("mahalanobis_local_fdr"), is_de=col("is_de", bool, False),
                runtime=runtime), {"version": version, "var_columns": list(var.columns)}


def run_deseq2(adata, sample_col, covariates=None, obsm_key=None):
    import logging

    import pandas as pd
    import pydeseq2
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    logging.getLogger("pydeseq2").setLevel(logging.ERROR)
    counts = adata.layers["counts"]
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    obs = adata.obs
    t0 = time.perf_counter()
    pvals, tested, skipped, n_nan = [], [], [], 0
    cond_of = obs.groupby(sample_col, observed=True)["condition"].first()
    cov_of = obs.groupby(sample_col, observed=True)[covariates].first() if covariates else None
    for ct in obs["cell_type"].cat.categories:
        in_ct = (obs["cell_type"] == ct).to_numpy()
        n_per_sample = obs.loc[in_ct, sample_col].value_counts()
        keep = n_per_sample.index[n_per_sample >= MIN_CELLS]
        n_cond = cond_of.loc[keep].value_counts()
        if n_cond.get(C1, 0) < 2 or n_cond.get(C2, 0) < 2:
            skipped.append(str(ct))
            continue
        keep = list(keep)
        pb = np.stack([counts[in_ct & (obs[sample_col] == s).to_numpy()].sum(0) for s in keep])
        cdf = pd.DataFrame(pb.astype(int), index=[str(s) for s in keep],
                           columns=adata.var_names.astype(str))
        meta = pd.DataFrame({"condition": pd.Categorical(cond_of.loc[keep].astype(str).to_numpy(),
                                                         categories=[C1, C2])},
                            index=cdf.index)
        design = "~condition"
        if covariates and cov_of.loc[keep].astype(str).nunique() > 1:
            meta[covariates] = cov_of.loc[keep].astype(str).to_numpy()
            design = f"~{covariates} + condition"
        dds = DeseqDataSet(counts=cdf, metadata=meta, design=design, quiet=True)
        dds.deseq2()
        st = DeseqStats(dds, contrast=["condition", C2, C1], quiet=True)
        st.summary()
        p = st.results_df["pvalue"].reindex(cdf.columns).to_numpy(float)
        n_nan += int(np.isnan(p).sum())
        pvals.append(np.where(np.isnan(p), 1.0, p))  # untestable (all-zero, outlier) -> 1
        tested.append(str(ct))
    if pvals:
        p_gene = np.minimum(np.min(pvals, axis=0) * len(pvals), 1.0)  # Bonferroni over clusters
    else:
        p_gene = np.ones(adata.n_vars)
    q = _bh(p_gene)
    runtime = time.perf_counter() - t0
    score = -np.log10(np.maximum(p_gene, 1e-300))
    return dict(score=score, q=q, local_fdr=np.full(adata.n_vars, np.nan), is_de=q <= 0.05,
                runtime=runtime), {"version": pydeseq2.__version__, "clusters_tested": tested,
                                   "clusters_skipped": skipped, "nan_pvalues": n_nan}


def _bh(p):
    p = np.asarray(p, float)
    n = len(p)
    order = np.argsort(p)
    adj = p[order] * n / np.arange(1, n + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    q = np.empty(n)
    q[order] = np.minimum(adj, 1.0)
    return q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--method", choices=["ours", "peer", "deseq2"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sample-col", default=None)
    p.add_argument("--covariates", default=None, help="one obs column to adjust for")
    p.add_argument("--obsm-key", default="DM_EigenVectors", help="kompot's representation")
    p.add_argument("--no-moderation", action="store_true",
                   help="ours: moderate_replicates=False (the method before 2026-12-04)")
    a = p.parse_args()

    import anndata as ad

    adata = ad.read_h5ad(a.data)
    if a.obsm_key == "X_pca" and "X_pca" not in adata.obsm:
        # A representation the user makes: 20 principal components of the expression.
        import scanpy as sc

        sc.pp.pca(adata, n_comps=20, random_state=0)
    run = {"ours": run_ours, "peer": run_peer, "deseq2": run_deseq2}[a.method]
    sample_col = a.sample_col if a.method != "deseq2" else (a.sample_col or "sample")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extra = {"moderate": False} if a.no_moderation else {}
        res, meta = run(adata, sample_col, a.covariates, a.obsm_key, **extra)
    np.savez(a.out, **res)
    meta["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    meta["runtime"] = res["runtime"]
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
