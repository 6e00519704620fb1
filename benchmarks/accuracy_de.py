"""Differential-expression accuracy on planted genes: ours, kompot 0.8.0, pseudobulk DESeq2.

    python benchmarks/accuracy_de.py --smoke               # 1 seed, 1,000 cells x 200 genes, no write
    python benchmarks/accuracy_de.py                       # 5 seeds, 2,000 cells x 500 genes
    python benchmarks/accuracy_de.py --seeds 0 1 2 --report  # table from cached runs only
    python benchmarks/accuracy_de.py --report --reading bullets.md  # section with its reading
    python benchmarks/accuracy_de.py --n-samples 2 --da-strength 0 --seeds 0 1 2 3 4 5 6 7 8 9
                                                           # another design: its own section
    python benchmarks/accuracy_de.py --batch-strength 0.7 --seeds 0 1 2 3 4 5 6 7 8 9
                                                           # a planted batch, with and without
                                                           # covariates=["batch"] (and ~batch in DESeq2)

A design is the data's size, the replicate samples per condition and the
abundance change (``toy``'s ``n_samples`` and ``da_strength``); each design
has its own cache names and its own section of RESULTS.md (the default
design's names are those of earlier runs).

Data: ``kompot.datasets.toy`` (branching trajectory, 3 replicate samples per
condition, 6 cell types); ``n_de_genes=20`` genes shift their mean by
``de_strength`` (natural log) in treated cells of one region (the late
trunk), ``var["is_de"]`` is the truth. Rows that use the samples run on
``toy()`` (per-sample abundance, expression and depth effects); rows that
ignore them run on ``toy(replicate_effects=False)`` (exchangeable samples,
same cells, genes and planted change), where ignoring samples is valid.

Methods, each (method, seed) in a fresh process (``accuracy_de_child.py``):

- ours: ``kompot.tl.compute_differential_expression`` at its defaults, with
  and without ``sample_col``; score = Mahalanobis distance, q = tail FDR.
- kompot 0.8.0 (the published package, ``benchmarks/.peer-venv``, run from a
  temporary directory outside the source tree) at its defaults: without
  samples its shuffled-gene null (``null_genes="auto"``) gives a tail FDR
  (stored with ``store_additional_stats=True``) and ``is_de`` (local fdr <
  0.05); with ``sample_col`` it switches its FDR off (Mahalanobis only).
- pseudobulk DESeq2 per cell type (pydeseq2 in ``benchmarks/.milo-venv``): raw
  counts summed per sample within each cell type (samples with >= 10 cells;
  a cell type needs >= 2 such samples per condition), ``~condition`` Wald
  test; per gene the smallest cell-type p-value times the number of tested
  cell types (Bonferroni, clipped at 1), then Benjamini-Hochberg over genes;
  score = -log10 of the corrected p-value.

Metrics per run: gene AUROC of the score for ``is_de``; number of calls,
observed false-discovery proportion (false calls / max(calls, 1)) and TPR at
q <= 0.05 and 0.10. Runs are cached under ``benchmarks/_runs/accuracy_de/``.
Appends (or replaces) the section "DE accuracy: planted genes against kompot
0.8.0 and pseudobulk DESeq2" of ``benchmarks/RESULTS.md``.
Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import side_envs
from _results import write_section

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "accuracy_de"
CHILD = HERE / "accuracy_de_child.py"
RESULTS = HERE / "RESULTS.md"
SECTION = "## DE accuracy: planted genes against kompot 0.8.0 and pseudobulk DESeq2"
QS = (0.05, 0.10)
N_BATCH_GENES = 50  # genes given the planted batch effect in batch designs
PEER_TIMEOUT = 900  # s; a peer run past this is recorded as a timeout

# key -> (environment, child method, data uses replicate effects, sample_col)
METHODS = {
    "ours_samples": ("ours", "ours", True, "sample"),
    "ours_samples_plain": ("ours", "ours", True, "sample"),
    "ours_nosamples": ("ours", "ours", False, None),
    "peer_nosamples": ("peer", "peer", False, None),
    "peer_samples": ("peer", "peer", True, "sample"),
    "deseq2_samples": ("deseq2", "deseq2", True, "sample"),
    "deseq2_nosamples": ("deseq2", "deseq2", False, "sample"),
    "ours_samples_cov": ("ours", "ours", True, "sample"),
    "ours_nosamples_cov": ("ours", "ours", False, None),
    "deseq2_samples_cov": ("deseq2", "deseq2", True, "sample"),
}
# Methods that adjust for the planted batch (designs with --batch-strength only).
COVARIATES = {"ours_samples_cov": "batch", "ours_nosamples_cov": "batch",
              "deseq2_samples_cov": "batch"}
# Run with moderate_replicates=False: the replicate statistic before 2026-12-04.
UNMODERATED = {"ours_samples_plain"}
# table rows: (label, method key, which q: "q" | "local_fdr" | None)
ROWS = (
    ("ours, `sample_col='sample'` (tail FDR)", "ours_samples", "q"),
    ("ours, `sample_col='sample'`, `moderate_replicates=False`", "ours_samples_plain", "q"),
    ("ours, no samples (tail FDR)", "ours_nosamples", "q"),
    ("kompot 0.8.0, no samples (tail FDR)", "peer_nosamples", "q"),
    ("kompot 0.8.0, no samples (local fdr; its `is_de` at 0.05)", "peer_nosamples", "local_fdr"),
    ("kompot 0.8.0, `sample_col='sample'` (no FDR with samples)", "peer_samples", None),
    ("pseudobulk DESeq2 per cell type", "deseq2_samples", "q"),
    ("pseudobulk DESeq2 per cell type", "deseq2_nosamples", "q"),
    ("ours, `sample_col='sample', covariates=['batch']`", "ours_samples_cov", "q"),
    ("ours, no samples, `covariates=['batch']`", "ours_nosamples_cov", "q"),
    ("pseudobulk DESeq2 per cell type, `~batch + condition`", "deseq2_samples_cov", "q"),
)


# ----------------------------------------------------------------- data
@dataclass(frozen=True)
class Design:
    """The simulated study: size, replicate samples per condition, abundance change."""

    n_cells: int = 2000
    n_genes: int = 500
    n_samples: int = 3  # per condition (toy's default)
    da_strength: float = 2.0  # log abundance change of the planted regions (toy's default)
    batch_strength: float = 0.0  # datasets.with_batch_effect's strength (0: no batch)
    # kompot's representation; "X_umap": toy's noise-free plane; "X_pca": 20 PCs of X
    obsm_key: str = "DM_EigenVectors"
    replicate_spread: float = 0.0  # toy's spread of the genes' replicate-effect sizes

    @property
    def tag(self) -> str:
        """Part of every cache name; the defaults keep the names of earlier runs."""
        tag = f"c{self.n_cells}_g{self.n_genes}"
        if self.n_samples != 3:
            tag += f"_n{self.n_samples}"
        if self.da_strength != 2.0:
            tag += f"_da{self.da_strength:g}"
        if self.batch_strength:
            tag += f"_batch{self.batch_strength:g}"
        if self.replicate_spread:
            tag += f"_spread{self.replicate_spread:g}"
        return tag.replace(".", "p")  # a dot would start the cache files' suffix

    @property
    def title(self) -> str:
        """The RESULTS.md section of this design (one section per design)."""
        extra = []
        if (self.n_cells, self.n_genes) != (2000, 500):
            extra.append(f"{self.n_cells:,} cells x {self.n_genes:,} genes")
        if self.n_samples != 3:
            extra.append(f"{self.n_samples} vs {self.n_samples} samples")
        if self.da_strength != 2.0:
            extra.append(f"da_strength {self.da_strength:g}")
        if self.batch_strength:
            extra.append(f"planted batch effect {self.batch_strength:g}")
        if self.obsm_key != "DM_EigenVectors":
            extra.append(f"kompot on obsm[{self.obsm_key!r}]")
        if self.replicate_spread:
            extra.append(f"replicate spread {self.replicate_spread:g}")
        return SECTION + (f" ({', '.join(extra)})" if extra else "")

    def options(self) -> str:
        """The command-line options that select this design."""
        out = ""
        if (self.n_cells, self.n_genes) != (2000, 500):
            out += f" --n-cells {self.n_cells} --n-genes {self.n_genes}"
        if self.n_samples != 3:
            out += f" --n-samples {self.n_samples}"
        if self.da_strength != 2.0:
            out += f" --da-strength {self.da_strength:g}"
        if self.batch_strength:
            out += f" --batch-strength {self.batch_strength:g}"
        if self.obsm_key != "DM_EigenVectors":
            out += f" --obsm-key {self.obsm_key}"
        if self.replicate_spread:
            out += f" --replicate-spread {self.replicate_spread:g}"
        return out

    def methods(self) -> list[str]:
        """The method keys run by default: the batch-adjusting ones only with a batch."""
        return [k for k in METHODS if (k in COVARIATES) <= bool(self.batch_strength)]


def data_path(design, seed, rep):
    return RUNS / f"toy_{design.tag}_s{seed}_{'rep' if rep else 'norep'}.h5ad"


def make_data(design, seed, rep):
    path = data_path(design, seed, rep)
    if not path.exists():
        import kompot

        a = kompot.datasets.toy(n_cells=design.n_cells, n_genes=design.n_genes,
                                n_samples=design.n_samples, da_strength=design.da_strength,
                                seed=seed, replicate_effects=rep,
                                replicate_spread=design.replicate_spread if rep else 0.0)
        if design.batch_strength:
            a = kompot.datasets.with_batch_effect(a, n_genes=N_BATCH_GENES,
                                                  strength=design.batch_strength, seed=seed)
        a.write_h5ad(path)
    return path


def run_path(key, design, seed):
    # The representation changes only kompot's runs; the data stay those of the design.
    own = f"_{design.obsm_key}" if design.obsm_key != "DM_EigenVectors" and \
        METHODS[key][0] != "deseq2" else ""
    return RUNS / f"{key}_{design.tag}{own}_s{seed}"


# ----------------------------------------------------------------- running children
def run_one(key, design, seed):
    """One (method, seed) in a fresh process; caches ``.npz`` + ``.json`` (or the error)."""
    env_name, method, rep, sample_col = METHODS[key]
    base = run_path(key, design, seed)
    if base.with_suffix(".json").exists():
        return json.loads(base.with_suffix(".json").read_text())
    data = make_data(design, seed, rep)
    try:
        py = Path(sys.executable) if env_name == "ours" else side_envs.python(
            {"peer": "peer", "deseq2": "field"}[env_name])
    except subprocess.CalledProcessError as err:
        meta = {"error": f"could not create the {env_name} environment: {err}"}
        base.with_suffix(".json").write_text(json.dumps(meta))
        return meta
    work = Path(tempfile.mkdtemp(prefix=f"acc_de_{key}_"))
    out = work / "res.npz"
    cmd = [str(py), str(CHILD), "--method", method, "--data", str(data), "--out", str(out)]
    if sample_col:
        cmd += ["--sample-col", sample_col]
    if key in COVARIATES:
        cmd += ["--covariates", COVARIATES[key]]
    if key in UNMODERATED:
        cmd += ["--no-moderation"]
    if design.obsm_key != "DM_EigenVectors":
        cmd += ["--obsm-key", design.obsm_key]
    if env_name == "ours":
        cwd, env = HERE.parent, dict(os.environ)
    else:  # outside the source tree, so that `import kompot` is the published package
        cwd, env = work, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    timeout = PEER_TIMEOUT if env_name == "peer" else 3600
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        meta = {"error": f"timeout (> {timeout} s)"}
    else:
        if proc.returncode != 0 or not out.exists():
            base.with_suffix(".stderr").write_text(proc.stderr)
            if proc.returncode == -9:  # SIGKILL: on this machine, the kernel's OOM killer
                meta = {"error": f"killed (SIGKILL, out of memory?) after "
                                 f"{time.perf_counter() - t0:.0f} s"}
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-4:]
                meta = {"error": f"exit {proc.returncode}: " + " | ".join(tail)[:400]}
        else:
            meta = json.loads(proc.stdout.strip().splitlines()[-1])
            shutil.copy(out, base.with_suffix(".npz"))
    meta["wall_s"] = time.perf_counter() - t0
    base.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return meta


# ----------------------------------------------------------------- metrics
def auroc(score, truth):
    from scipy.stats import rankdata

    s = np.where(np.isfinite(score), score, -np.inf)
    r = rankdata(s)  # ties get mid-ranks
    n1, n0 = truth.sum(), (~truth).sum()
    return (r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def metrics(res, truth, qkey):
    out = dict(auroc=auroc(res["score"], truth))
    for qt in QS:
        if qkey is None or not np.isfinite(res[qkey]).any():
            out.update({f"calls_{qt}": np.nan, f"fdp_{qt}": np.nan, f"tpr_{qt}": np.nan})
            continue
        called = np.nan_to_num(res[qkey], nan=np.inf) <= qt
        out[f"calls_{qt}"] = int(called.sum())
        out[f"fdp_{qt}"] = (called & ~truth).sum() / max(called.sum(), 1)
        out[f"tpr_{qt}"] = (called & truth).sum() / truth.sum()
    return out


def collect(design, seeds):
    import anndata as ad

    rows, errors = [], {}
    for seed in seeds:
        truths = {}
        for rep in (True, False):
            p = data_path(design, seed, rep)
            if p.exists():
                truths[rep] = ad.read_h5ad(p, backed="r").var["is_de"].to_numpy(bool)
        for label, key, qkey in ROWS:
            base = run_path(key, design, seed)
            if not base.with_suffix(".json").exists():
                continue
            meta = json.loads(base.with_suffix(".json").read_text())
            if "error" in meta:
                errors.setdefault((label, key), []).append(f"seed {seed}: {meta['error']}")
                continue
            res = dict(np.load(base.with_suffix(".npz")))
            truth = truths[METHODS[key][2]]
            rows.append(dict(label=label, key=key, qkey=qkey, seed=seed,
                             runtime=float(meta["runtime"]), **metrics(res, truth, qkey)))
    return pd.DataFrame(rows), errors


def describe_data(design, seeds):
    """Share of cells in the DE region and how it falls on the cell types (first seed)."""
    import anndata as ad

    a = ad.read_h5ad(data_path(design, seeds[0], True))
    reg = a.obs["de_region"].to_numpy(bool)
    by_ct = a.obs.groupby("cell_type", observed=True)["de_region"].mean()
    parts = ", ".join(f"{ct} {v:.0%}" for ct, v in by_ct.items() if v > 0.01)
    sizes = a.obs["cell_type"].value_counts(normalize=True)
    batch = ""
    if design.batch_strength:
        batch = (f"; `datasets.with_batch_effect`: batches A/B partly confounded with the "
                 f"condition (control {_batch_split(a, 'control')}, treated "
                 f"{_batch_split(a, 'treated')} samples in A/B), {N_BATCH_GENES} null genes' "
                 f"counts scaled by exp(±{design.batch_strength:g}) in batch B; batch genes "
                 "count as false calls")
    if design.replicate_spread:
        batch += (f"; genes differ in how much their samples vary (`replicate_spread="
                  f"{design.replicate_spread:g}`: each gene's sample shifts scaled by "
                  f"exp({design.replicate_spread:g} z), z standard normal)")
    return (f"{design.n_samples} vs {design.n_samples} samples, abundance change "
            f"da_strength={design.da_strength:g}{batch}; "
            f"{int(a.var['is_de'].sum())} of {a.n_vars} genes planted, the change confined to "
            f"{reg.mean():.0%} of the cells (seed {seeds[0]}; share of each cell type inside "
            f"the region: {parts}; cell types hold "
            f"{sizes.min():.0%}-{sizes.max():.0%} of the cells)")


def _batch_split(a, condition):
    obs = a.obs[a.obs["condition"] == condition]
    per = obs.groupby("sample", observed=True)["batch"].first().value_counts()
    return f"{per.get('A', 0)}+{per.get('B', 0)}"


# ----------------------------------------------------------------- report
def machine():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def table(df, errors, n_seeds):
    head = ("| method | data | seeds | gene AUROC | calls q≤0.05 | FDP q≤0.05 | TPR q≤0.05 "
            "| calls q≤0.10 | FDP q≤0.10 | TPR q≤0.10 | median runtime (s) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    f2 = lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}"  # noqa: E731
    f1 = lambda v: "n/a" if not np.isfinite(v) else f"{v:.1f}"  # noqa: E731
    for label, key, qkey in ROWS:
        data = "toy()" if METHODS[key][2] else "toy(replicate_effects=False)"
        sub = df[(df.key == key) & (df.qkey.astype(str) == str(qkey))] if len(df) else df
        err = errors.get((label, key), [])
        if sub is None or len(sub) == 0:
            if err:
                lines.append(f"| {label} | {data} | 0 ({len(err)} tried) | failed, {err[0]} "
                             "| | | | | | | |")
            continue
        m = sub.mean(numeric_only=True)
        se = sub.std(numeric_only=True, ddof=1) / np.sqrt(len(sub))
        cells = [f2(m.auroc)]
        for qt in QS:
            if qkey is None:
                cells += ["not available with samples", "–", "–"]
            else:
                fdp = f2(m[f"fdp_{qt}"]) + (f" ± {se[f'fdp_{qt}']:.2f}" if len(sub) > 1 else "")
                cells += [f1(m[f"calls_{qt}"]), fdp, f2(m[f"tpr_{qt}"])]
        seeds = f"{sub.seed.nunique()}" + (f" ({len(err)} failed)" if err else "")
        lines.append(f"| {label} | {data} | {seeds} | " + " | ".join(cells)
                     + f" | {sub.runtime.median():.1f} |")
    return "\n".join(lines)


def previous_reading(title):
    """The reading of the section already in RESULTS.md, flagged for a re-check."""
    cur = RESULTS.read_text() if RESULTS.exists() else ""
    head = "### Reading (DE accuracy)"
    start = next((i for i, ln in enumerate(cur.splitlines()) if ln.strip() == title), None)
    if start is None:
        return "- (no reading given)"
    own = "\n".join(cur.splitlines()[start + 1:]).split("\n## ", 1)[0]
    if head not in own:
        return "- (no reading given)"
    body = own.split(head, 1)[1].strip()
    note = "- (Reading written for the previous run; check it against the table above.)"
    return body if body.startswith(note) else note + "\n" + body


def section(title, tab, cmd, desc, total_s, reading):
    return "\n".join([
        title, "",
        f"Machine: {machine()}; date: {date.today()}; wall time of all runs {total_s / 60:.1f} min "
        "(one fresh process per method and seed, run one at a time on a shared machine).", "",
        f"Command: `{cmd}`", "",
        f"Data: `kompot.datasets.toy` at its defaults otherwise; {desc}. Rows that use the "
        "samples run on `toy()` (per-sample abundance, expression and depth effects), rows "
        "that ignore them on `toy(replicate_effects=False)` (exchangeable samples; same cells, "
        "genes and planted change). Score: Mahalanobis distance (kompot), -log10 of the "
        "Bonferroni-over-cell-types p-value (pseudobulk). FDP = false calls / max(calls, 1); "
        "every number except the runtime is a mean over seeds (FDP ± its standard error over "
        "seeds; a calibrated method's mean FDP lies within about 2 standard errors of q or "
        "below). Every run is a fresh process; "
        "the runtime is the method's call alone (data loading excluded).", "",
        tab, "",
        "### Reading (DE accuracy)", "",
        reading.strip(), "",
    ])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="1 seed, 1,000 cells x 200 genes, no write")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--n-cells", type=int, default=2000)
    p.add_argument("--n-genes", type=int, default=500)
    p.add_argument("--n-samples", type=int, default=3, help="replicate samples per condition")
    p.add_argument("--da-strength", type=float, default=2.0,
                   help="log abundance change of toy's planted regions (0: none)")
    p.add_argument("--batch-strength", type=float, default=0.0,
                   help="plant a batch effect of this strength on 50 genes (0: none)")
    p.add_argument("--obsm-key", default="DM_EigenVectors",
                   help="kompot's representation (X_umap: toy's noise-free latent plane; "
                        "X_pca: 20 PCs of X)")
    p.add_argument("--replicate-spread", type=float, default=0.0,
                   help="toy's replicate_spread: genes differ in how much their samples vary")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                   help="default: all that apply to the design")
    p.add_argument("--report", action="store_true", help="only aggregate cached runs")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--reading", default=None, help="file with the reading bullets (markdown)")
    a = p.parse_args()
    if a.smoke:
        a.seeds, a.n_cells, a.n_genes, a.no_write = [0], 1000, 200, True
    design = Design(a.n_cells, a.n_genes, a.n_samples, a.da_strength, a.batch_strength,
                    a.obsm_key, a.replicate_spread)
    a.methods = a.methods or design.methods()
    RUNS.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if not a.report:
        for seed in a.seeds:
            for key in a.methods:
                meta = run_one(key, design, seed)
                msg = meta.get("error") or f"{meta['runtime']:.1f} s (wall {meta['wall_s']:.1f} s)"
                print(f"{key} seed {seed}: {msg}", flush=True)
    print(f"this invocation: {time.perf_counter() - t_start:.0f} s")
    df, errors = collect(design, a.seeds)
    total = sum(  # every cached run of these seeds, however many invocations it took
        json.loads(run_path(k, design, s).with_suffix(".json").read_text())
        .get("wall_s", 0.0)
        for k in METHODS for s in a.seeds
        if run_path(k, design, s).with_suffix(".json").exists())
    if df.empty and not errors:
        print("no cached runs")
        return
    df.to_csv(RUNS / f"rows_{design.tag}.csv", index=False)
    n_seeds = len(a.seeds)
    tab = table(df, errors, n_seeds)
    print(tab)
    for (label, key), errs in errors.items():
        print(label, key, *errs, sep="\n  ")
    for key in a.methods:
        f = run_path(key, design, a.seeds[0]).with_suffix(".json")
        if f.exists():
            meta = json.loads(f.read_text())
            extra = {k: v for k, v in meta.items() if k not in ("var_columns",)}
            print(key, json.dumps(extra)[:600])
    print(f"machine: {machine()}; date: {date.today()}; wall time of all runs {total:.0f} s")
    if a.no_write:
        return
    cmd = "python benchmarks/accuracy_de.py"
    if a.seeds != [0, 1, 2, 3, 4]:
        cmd += " --seeds " + " ".join(map(str, a.seeds))
    cmd += design.options()
    reading = Path(a.reading).read_text() if a.reading else previous_reading(design.title)
    write_section(design.title, section(design.title, tab, cmd, describe_data(design, a.seeds),
                                        total, reading))
    print(f"wrote {design.title!r} to {RESULTS}")


if __name__ == "__main__":
    main()
