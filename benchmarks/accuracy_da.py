"""Differential-abundance accuracy against Milo (pertpy) and MELD (Milo benchmark protocol).

    python benchmarks/accuracy_da.py --smoke               # one tiny configuration
    python benchmarks/accuracy_da.py                       # the grid
    python benchmarks/accuracy_da.py --seeds 0 1 --report  # table + figure from cached runs

Simulation as in Dann et al. (2022): cell states on generated manifolds
(linear, branching, clustered) embedded into 10-D by a random linear map plus
small isotropic noise, and semi-synthetic labels on scanpy's bundled
``pbmc68k_reduced`` (``louvain`` populations) in three representations handed
to the methods: ``pbmc68k`` (``X_pca``, 50-D), ``pbmc68k_pca30`` (its first 30
columns) and ``pbmc68k_diffmap`` (15 diffusion components, see :func:`_pbmc`).
The three share one truth, one set of labels and one set of samples per seed
and pop_enr (memberships on the 50-D ``X_pca``, same random draws). The condition
probability P(C1) of each cell comes from fuzzy (c-means, m=2) memberships to
the population centroids through a logistic; it peaks at ``pop_enr`` in one
population and at ``1 - pop_enr`` in a second one (0.5 elsewhere), so that
both "up" (C1-enriched) and "down" cells exist and the modified AUROC is
defined. Labels are drawn from P(C1); each condition's cells are split at
random into 3 replicate samples. True DA cells: P(C1) above the quantile that
matches the up population's size (up), below the quantile that matches the
down population's size (down).

Milo and MELD run in their own virtual environment
(``benchmarks/.milo-venv``, see ``accuracy_milo_child.py``), from /tmp.
Every score is signed so that positive means "more C1 cells".
Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import side_envs

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "accuracy_da"
CHILD = HERE / "accuracy_milo_child.py"
PEER_CHILD = HERE / "accuracy_peer_child.py"
PEER = "kompot 0.8.0 (its defaults)"
FRACTAL = "kompot (density, dimensionality='fractal')"
MANIFOLDS = ("linear", "branching", "clustered", "pbmc68k", "pbmc68k_pca30", "pbmc68k_diffmap")
PBMC = ("pbmc68k", "pbmc68k_pca30", "pbmc68k_diffmap")
POP_ENRS = (0.75, 0.85, 0.95)
FDR = 0.1


# ----------------------------------------------------------------- simulation
def _embed(latent, rng, dim=10, noise=0.05):
    A = rng.normal(size=(latent.shape[1], dim)) / np.sqrt(latent.shape[1])
    return latent @ A + noise * rng.normal(size=(latent.shape[0], dim))


def _linear(n, rng):
    t = rng.uniform(0, 1, n)
    latent = np.c_[2 * t, 0.5 * np.sin(np.pi * t), 0.3 * np.cos(2 * np.pi * t)]
    latent += 0.03 * rng.normal(size=latent.shape)
    pops = np.minimum((t * 5).astype(int), 4)  # five equal segments
    return _embed(latent, rng), pops


def _branching(n, rng, ldim=5):
    # root, three branches from its end, and a sub-branch of the first branch
    dirs = rng.normal(size=(5, ldim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    starts = np.zeros((5, ldim))
    starts[1:4] = dirs[0]
    starts[4] = dirs[0] + dirs[1]
    pops = rng.integers(0, 5, n)
    t = rng.uniform(0, 1, n)
    latent = starts[pops] + t[:, None] * dirs[pops] + 0.03 * rng.normal(size=(n, ldim))
    return _embed(latent, rng), pops


def _clustered(n, rng, k=6, ldim=5):
    centers = rng.normal(scale=1.5, size=(k, ldim))
    sizes = rng.dirichlet(np.full(k, 5.0))
    pops = rng.choice(k, size=n, p=sizes)
    sd = rng.uniform(0.25, 0.45, k)
    latent = centers[pops] + sd[pops, None] * rng.normal(size=(n, ldim))
    return _embed(latent, rng), pops


def _pbmc(manifold="pbmc68k"):
    """(50-D ``X_pca`` for the memberships, the representation the methods see, populations).

    ``pbmc68k``: ``X_pca`` (50-D); ``pbmc68k_pca30``: its first 30 columns;
    ``pbmc68k_diffmap``: ``sc.pp.neighbors(use_rep="X_pca", n_neighbors=15)``,
    ``sc.tl.diffmap(n_comps=16)`` (scanpy's fixed random_state=0) without the
    first, constant, component: 15 columns.
    """
    import scanpy as sc

    ad = sc.datasets.pbmc68k_reduced()
    pca = np.asarray(ad.obsm["X_pca"], dtype=float)
    pops = ad.obs["louvain"].cat.codes.to_numpy()
    if manifold == "pbmc68k":
        return pca, pca, pops
    if manifold == "pbmc68k_pca30":
        return pca, np.ascontiguousarray(pca[:, :30]), pops
    if manifold == "pbmc68k_diffmap":
        sc.pp.neighbors(ad, use_rep="X_pca", n_neighbors=15, random_state=0)
        sc.tl.diffmap(ad, n_comps=16, random_state=0)
        return pca, np.asarray(ad.obsm["X_diffmap"][:, 1:], dtype=float), pops
    raise ValueError(manifold)


def _fuzzy_memberships(X, pops, m=2.0):
    labels = np.unique(pops)
    centroids = np.stack([X[pops == p].mean(0) for p in labels])
    d = np.linalg.norm(X[:, None, :] - centroids[None], axis=2) + 1e-12
    w = 1.0 / ((d[:, :, None] / d[:, None, :]) ** (2 / (m - 1))).sum(2)
    return labels, w


def _logistic_scaled(w, slope=10.0):
    s = 1 / (1 + np.exp(-slope * (w - 0.5)))
    return (s - s.min()) / (s.max() - s.min())


def simulate(manifold, pop_enr, seed, n_cells=3000):
    # the pbmc68k representations share the seed, hence every draw below, and the
    # memberships (on the 50-D X_pca): one truth, one labelling; only X differs
    rng = np.random.default_rng(
        1000 * seed + MANIFOLDS.index("pbmc68k" if manifold in PBMC else manifold))
    if manifold in PBMC:
        X_truth, X, pops = _pbmc(manifold)
    else:
        X, pops = {"linear": _linear, "branching": _branching, "clustered": _clustered}[manifold](
            n_cells, rng
        )
        X_truth = X
    labels, w = _fuzzy_memberships(X_truth, pops)
    sizes = np.array([(pops == p).sum() for p in labels])
    # populations with 5-40% of the cells, two distinct, chosen by the seed
    ok = np.flatnonzero((sizes >= 0.05 * len(X)) & (sizes <= 0.4 * len(X)))
    up, down = rng.choice(ok, size=2, replace=False)
    p1 = 0.5 + (pop_enr - 0.5) * (_logistic_scaled(w[:, up]) - _logistic_scaled(w[:, down]))
    n = len(X)
    truth = np.zeros(n, dtype=int)
    truth[(p1 > np.quantile(p1, 1 - sizes[up] / n)) & (p1 > 0.5)] = 1
    truth[(p1 < np.quantile(p1, sizes[down] / n)) & (p1 < 0.5)] = -1
    cond = np.where(rng.uniform(size=n) < p1, "C1", "C2")
    sample = np.array([f"{c}_r{rng.integers(3)}" for c in cond])
    return dict(X=X, pops=pops, p1=p1, truth=truth, condition=cond, sample=sample,
                up_pop=int(labels[up]), down_pop=int(labels[down]))


# ----------------------------------------------------------------- metrics
def metrics(score, calls, truth, p1):
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(score)
    s = np.where(ok, score, 0.0)
    auc_up = roc_auc_score(truth == 1, s)
    auc_down = roc_auc_score(truth == -1, -s)
    true_log_ratio = np.log(p1 / (1 - p1))  # up to a constant: log(n1/n2) leaves slopes alone
    out = dict(auroc=0.5 * (auc_up + auc_down), auroc_up=auc_up, auroc_down=auc_down,
               spearman=spearmanr(s, true_log_ratio).statistic,
               slope=np.polyfit(true_log_ratio, s, 1)[0],
               frac_scored=ok.mean())
    if calls is None:
        out.update(tpr=np.nan, fdr=np.nan, n_called=np.nan)
    else:
        called = calls != 0
        out.update(tpr=((calls == truth) & called).sum() / max((truth != 0).sum(), 1),
                   fdr=((calls != truth) & called).sum() / max(called.sum(), 1),
                   n_called=int(called.sum()))
    return out


# ----------------------------------------------------------------- methods
def run_ours(d, variant=None):
    import anndata as ad

    import kompot

    a = ad.AnnData(obs=pd.DataFrame({"condition": d["condition"], "sample": d["sample"]}))
    a.obs_names = a.obs_names.astype(str)
    a.obsm["X"] = d["X"]
    kw = _ours_variant(variant)[2]
    t0 = time.perf_counter()
    kompot.tl.compute_differential_abundance(
        a, "condition", "C1", "C2", obsm_key="X", sample_col="sample",
        direction_by="fdr", fdr_threshold=FDR, progress=False, **kw,
    )
    runtime = time.perf_counter() - t0
    p = "kompot_da_C1_to_C2"
    lfc = a.obs[f"{p}_lfc"].to_numpy()  # log density(C2) - log density(C1)
    direction = a.obs[f"{p}_lfc_direction"].astype(str).to_numpy()
    calls = np.select([direction == "down", direction == "up"], [1, -1], 0)
    fdr = a.obs[f"{p}_lfc_fdr"].to_numpy()
    calls_fdr_only = np.where(fdr < FDR, -np.sign(lfc), 0).astype(int)
    return dict(score=-lfc, calls=calls, calls_fdr_only=calls_fdr_only, runtime=runtime,
                ls=float(a.uns["kompot_da"]["ls"]))


def run_field(paths):
    """Milo and MELD on every dataset, in the side venv, one process, from /tmp."""
    try:
        milo_py = side_envs.python("field")
    except subprocess.CalledProcessError as err:
        return {p: {"error": f"could not create the Milo/MELD environment: {err}"} for p in paths}
    proc = subprocess.run([str(milo_py), str(CHILD), *map(str, paths)], cwd="/tmp",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-5:]
        return {p: {"error": " | ".join(err)} for p in paths}
    return {p: None for p in paths}


def run_peer(paths):
    """kompot 0.8.0 at its defaults on every dataset, in its own venv, from /tmp."""
    peer_py = side_envs.python("peer")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(peer_py), str(PEER_CHILD), *map(str, paths)], cwd="/tmp", env=env,
                   check=False)


# ----------------------------------------------------------------- driver
def dataset_path(manifold, pop_enr, seed):
    return RUNS / f"{manifold}_enr{pop_enr}_s{seed}.npz"


# Our variants: None (the tl defaults: the label ratio model), "density" (the
# density-difference method at its tl settings, the default before the ratio
# model), "fractal" (that with dimensionality="fractal") or a float (the
# density method at that ls_factor). A new variant: one branch in
# _ours_variant and its key in OURS_VARIANTS (the order of the tables).
OURS_VARIANTS = (None, "density", "fractal", 10.0, 0.5, 0.1)
DENSITY = "kompot (method='density')"


def _ours_variant(variant):
    """(method name, cache-file suffix, kompot.tl keyword arguments) of a variant."""
    if variant is None:
        return "kompot (tl defaults)", ".ours_ratio.npz", {}
    if variant == "density":
        return DENSITY, ".ours.npz", {"method": "density"}
    if variant == "fractal":
        return FRACTAL, ".ours_fractal.npz", {"method": "density", "dimensionality": "fractal"}
    return (f"kompot (density, ls_factor={variant:g})", f".ours_ls{variant:g}.npz",
            {"method": "density", "ls_factor": variant})


def run_grid(configs, skip_ours=False, skip_field=False, ls_factors=(None, 10.0)):
    RUNS.mkdir(parents=True, exist_ok=True)
    paths = []
    for m, e, s in configs:
        path = dataset_path(m, e, s)
        if not path.exists():
            d = simulate(m, e, s)
            np.savez(path, **d)
        paths.append(path)
    todo = [p for p in paths if not p.with_suffix(".field.npz").exists()]
    if todo and not skip_field:
        print(f"field methods on {len(todo)} datasets ...", flush=True)
        for p, err in run_field(todo).items():
            if err:
                print(p.name, err, flush=True)
                (p.with_suffix(".field.json")).write_text(json.dumps(err))
    if skip_ours:
        return
    for (m, e, s), path in zip(configs, paths, strict=True):
        for lsf in ls_factors:
            name, suffix, _ = _ours_variant(lsf)
            out = path.with_suffix(suffix)
            if out.exists():
                continue
            d = dict(np.load(path))
            r = run_ours(d, lsf)
            np.savez(out, **r)
            print(f"{name} {m} {e} {s}: {r['runtime']:.1f}s", flush=True)


def collect(configs):
    rows = []
    for m, e, s in configs:
        path = dataset_path(m, e, s)
        if not path.exists():
            continue
        needed = (".ours_ratio.npz", ".field.npz")
        if not all(path.with_suffix(x).exists() for x in needed):
            continue  # only datasets every main method finished on
        d = dict(np.load(path))
        base = dict(manifold=m, pop_enr=e, seed=s, n_cells=len(d["X"]))
        for lsf in OURS_VARIANTS:
            name, suffix, _ = _ours_variant(lsf)
            f = path.with_suffix(suffix)
            if f.exists():
                r = dict(np.load(f))
                rows.append(dict(base, method=name, runtime=float(r["runtime"]),
                                 **metrics(r["score"], r["calls"], d["truth"], d["p1"])))
                rows.append(dict(base, method=name.replace(")", ", FDR only)"),
                                 runtime=float(r["runtime"]),
                                 **metrics(r["score"], r["calls_fdr_only"], d["truth"], d["p1"])))
        f = path.with_suffix(".peer.npz")
        if f.exists():
            r = dict(np.load(f))
            if "score" in r:
                rows.append(dict(base, method=PEER, runtime=float(r["runtime"]),
                                 **metrics(r["score"], r["calls"], d["truth"], d["p1"])))
        f = path.with_suffix(".field.npz")
        if f.exists():
            r = dict(np.load(f))
            if "milo_score" in r:
                rows.append(dict(base, method="Milo (pertpy)", runtime=float(r["milo_runtime"]),
                                 **metrics(r["milo_score"], r["milo_calls"], d["truth"], d["p1"])))
            if "meld_score" in r:
                rows.append(dict(base, method="MELD", runtime=float(r["meld_runtime"]),
                                 **metrics(r["meld_score"], None, d["truth"], d["p1"])))
    return pd.DataFrame(rows)


def figure(df, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("kompot (tl defaults)", DENSITY, FRACTAL,
                           "kompot (density, ls_factor=0.5)", "kompot (density, ls_factor=10)",
                           "kompot (density, ls_factor=0.1)", PEER, "Milo (pertpy)", "MELD")
               if m in set(df.method)]
    manifolds = [m for m in MANIFOLDS if m in set(df.manifold)]
    fig, axes = plt.subplots(1, len(manifolds), figsize=(4 * len(manifolds), 3.6), sharey=True,
                             squeeze=False)
    axes = axes[0]
    palette = {"kompot (tl defaults)": "C0", DENSITY: "C1", FRACTAL: "C5",
               "kompot (density, ls_factor=0.5)": "C8",
               "kompot (density, ls_factor=10)": "C9", "kompot (density, ls_factor=0.1)": "C4",
               PEER: "C7",
               "Milo (pertpy)": "C3", "MELD": "C2"}
    ours = [_ours_variant(v)[0] for v in OURS_VARIANTS]
    methods += [m for m in ours if m in set(df.method) and m not in methods]  # later variants
    spare = iter(("C6", "C8"))
    colors = {m: palette.get(m) or next(spare, "k") for m in methods}
    for ax, man in zip(axes, manifolds, strict=True):
        sub = df[df.manifold == man]
        width = 0.8 / max(len(methods), 1)
        for j, meth in enumerate(methods):
            g = sub[sub.method == meth].groupby("pop_enr").auroc
            mean = g.mean().reindex(list(POP_ENRS))
            sd = g.std().reindex(list(POP_ENRS)).fillna(0)
            x = np.arange(len(POP_ENRS)) + (j - (len(methods) - 1) / 2) * width
            ax.bar(x, mean.values, width, yerr=sd.values, color=colors[meth],
                   label=meth if man == manifolds[0] else None, capsize=2)
        ax.set_xticks(range(len(POP_ENRS)), [str(e) for e in POP_ENRS])
        ax.set_xlabel("pop_enr")
        ax.set_title(man)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0.3, 1.0)
    axes[0].set_ylabel("modified AUROC (mean of up, down)")
    fig.legend(loc="lower center", ncol=len(methods), fontsize=8, frameon=False)
    n_seeds = df.seed.nunique()
    fig.suptitle(f"Differential abundance accuracy ({n_seeds} seed{'s' if n_seeds > 1 else ''}; "
                 "bars: mean, whiskers: sd over seeds)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)


def machine():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def table(df):
    g = df.groupby(["manifold", "method"], sort=False)
    agg = g[["auroc", "tpr", "fdr", "spearman", "slope"]].mean()
    agg["runtime"] = g.runtime.median()  # median: robust to a shared, busy machine
    agg = agg.reset_index()
    order = {m: i for i, m in enumerate(MANIFOLDS)}
    agg = agg.sort_values("manifold", key=lambda s: s.map(order), kind="stable")
    lines = ["| manifold | method | AUROC | TPR | obs. FDR | Spearman | slope | median runtime (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in agg.itertuples():
        f = lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {r.manifold} | {r.method} | {f(r.auroc)} | {f(r.tpr)} | {f(r.fdr)} "
                     f"| {f(r.spearman)} | {f(r.slope)} | {r.runtime:.1f} |")
    return "\n".join(lines)


def grid_summary(df):
    """Means over the datasets of the original grid (36) and of all manifolds, per method."""
    lines = ["| method | datasets | AUROC | TPR | obs. FDR | slope | AUROC, all manifolds | datasets |",
             "|---|---|---|---|---|---|---|---|"]
    original = df[df.manifold.isin(("linear", "branching", "clustered", "pbmc68k"))]
    for method in df.method.unique():
        a, b = original[original.method == method], df[df.method == method]
        f = lambda v: "n/a" if not np.isfinite(v) else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {method} | {len(a)} | {f(a.auroc.mean())} | {f(a.tpr.mean())} | "
                     f"{f(a.fdr.mean())} | {f(a.slope.mean())} | {f(b.auroc.mean())} | {len(b)} |")
    return "\n".join(lines)


def auroc_table(df):
    methods = [m for m in df.method.unique() if "FDR only" not in m]
    piv = df.pivot_table(index=["manifold", "pop_enr"], columns="method", values="auroc",
                         aggfunc="mean")
    nseed = df.groupby(["manifold", "pop_enr"]).seed.nunique()
    lines = ["| manifold | pop_enr | seeds | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for man in MANIFOLDS:
        for e in POP_ENRS:
            if (man, e) not in piv.index:
                continue
            vals = [piv.loc[(man, e)].get(m, np.nan) for m in methods]
            cells = ["" if not np.isfinite(v) else f"{v:.3f}" for v in vals]
            lines.append(f"| {man} | {e} | {nseed[(man, e)]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pop-enr", type=float, nargs="+", default=list(POP_ENRS))
    p.add_argument("--manifolds", nargs="+", default=list(MANIFOLDS))
    p.add_argument("--report", action="store_true", help="only aggregate cached runs")
    p.add_argument("--field-only", action="store_true", help="only Milo and MELD")
    p.add_argument("--ours-only", action="store_true", help="only kompot")
    p.add_argument("--ls-factors", type=float, nargs="*", default=None,
                   help="kompot ls_factor values to run (default: tl default and 10)")
    p.add_argument("--fractal", action="store_true",
                   help="only kompot at the tl defaults with dimensionality='fractal'")
    p.add_argument("--peer", action="store_true",
                   help="only kompot 0.8.0 at its defaults (benchmarks/.peer-venv)")
    a = p.parse_args()
    if a.smoke:
        configs = [("branching", 0.95, 0)]
    else:
        configs = [(m, e, s) for s in a.seeds for m in a.manifolds for e in a.pop_enr]
    if a.peer and not a.report:
        todo = [dataset_path(*c) for c in configs
                if dataset_path(*c).exists() and not dataset_path(*c).with_suffix(".peer.npz").exists()]
        run_peer(todo)
    elif not a.report:
        lsf = (None, "density", 10.0) if a.ls_factors is None else tuple(a.ls_factors)
        if a.fractal:
            lsf, a.ours_only = ("fractal",), True
        run_grid(configs, skip_ours=a.field_only, skip_field=a.ours_only, ls_factors=lsf)
    df = collect(configs)
    if df.empty:
        print("no dataset has every method's results yet")
        return
    df.to_csv(RUNS / "accuracy_da_rows.csv", index=False)
    print(df.groupby(["manifold", "pop_enr", "method"])[["auroc", "tpr", "fdr", "spearman",
                                                          "runtime"]].mean().round(3)
          .to_string())
    print(table(df))
    print()
    print(grid_summary(df))
    print()
    print(auroc_table(df))
    if not a.smoke:
        figure(df, HERE / "accuracy_da.png")
    print(f"machine: {machine()}; date: {date.today()}; python: {sys.executable}")


if __name__ == "__main__":
    main()
