"""Scaling of DA + DE with FDR through kompot.tl: wall time and peak RSS from 10k to 1M cells.

    python benchmarks/scale.py                 # 10k and 100k x 2,000 genes, 200k x 1,000
    python benchmarks/scale.py --huge          # and 1M x 2,000 genes
    python benchmarks/scale.py --sizes 10000x2000 --repeats 1
    python benchmarks/scale.py --sizes 100000x2000 --layers-on-disk /scratch/kompot
    python benchmarks/scale.py --sizes 200000x1000 --compute-backend jax:gpu   # on a GPU
    python benchmarks/scale.py --sizes 200000x1000 --precision double   # variance passes in
                                               # float64 (default "auto": mixed from 50k cells)
    python benchmarks/scale.py --report        # RESULTS.md section and figure from the cache
    nox -s bench -- --scale                    # the default sizes

Data, generated in the child from a seed (no files): a 1-D latent curve
(``t`` uniform on [0, 1]) embedded into 10-D cell states by a random linear
map plus noise (as in ``speed_da.py``); condition C1 makes up 85 % of the
cells on t in [0.20, 0.35] and 15 % on t in [0.60, 0.75] (50 % elsewhere),
each condition split at random into 3 samples. Expression: sparse CSR,
float32, about 10 % nonzero, values shaped like log1p-normalised counts
(per-gene level plus noise); the first 5 % of the genes are higher in C2 on
t in [0.40, 0.70], in level and in detection rate.

Each size runs in a fresh process (``--child``): a warm-up of both calls on
2,000 other cells (the imports kompot does at call time), then
``compute_differential_abundance(adata, "condition", "C1", "C2",
sample_col="sample")`` and ``compute_differential_expression(...,
sample_col="sample", store_layers=False)``, FDR at the defaults; with
``--layers-on-disk DIR`` DE stores its layers instead, on disk under ``DIR``
(``kompot.settings.layers_on_disk = True``), and the time includes writing
them (``--layers-on-disk memory``: in memory, for comparison); the AnnData
with layers on disk is then written with ``write_h5ad`` into ``DIR`` (and
deleted), timed, with the peak RSS over the write. Peak RSS is
the process's ``VmHWM`` after the data are built (the mark is reset then,
where Linux allows it); the data's own RSS is reported beside it. The DE time
is split into its stages (fit, prediction, null) by timing the calls of
``kompot.models.gene_blocks`` and ``DifferentialExpression``. The load average (``os.getloadavg``)
is recorded before and after each child: other work on the machine makes the
times upper bounds. Results are cached as JSON under
``benchmarks/_runs/scale/``; the RESULTS.md section and ``benchmarks/scale.png``
are rewritten from the cache; rows of earlier runs (other commits) already
in the section are kept. Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from _results import write_section

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "scale"
RESULTS = HERE / "RESULTS.md"
FIGURE = HERE / "scale.png"
TITLE = "## Scaling: DA + DE with FDR from 10k to 1M cells (kompot.tl, sparse X)"
SIZES = ((10_000, 2_000), (100_000, 2_000), (200_000, 1_000))
HUGE = (1_000_000, 2_000)
WARMUP = (2_000, 200)
DENSITY = 0.10
DE_FRACTION = 0.05
BLOCK = 50_000  # cells generated at once
# Calls of the DE analysis timed as its stages: (stage, module or class, attribute);
# a call nested in another one counts in the outer one only.
DE_STAGES = (("fit", "DifferentialExpression", "fit"),  # runs before the pooled refits' fit
             ("fit", "gene_blocks", "_pooled_refits"),
             ("fit", "gene_blocks", "_fitted_model"),
             ("predict", "gene_blocks", "predict_in_chunks"),
             ("mahalanobis", "DifferentialExpression", "compute_mahalanobis_distances"),
             ("null", "gene_blocks", "_block_null"))


# ----------------------------------------------------------------- data
def simulate(n_cells: int, n_genes: int, seed: int = 0):
    """AnnData with 10-D states, conditions, samples and sparse log-normalised expression."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng([seed, n_cells, n_genes])
    t = rng.uniform(0, 1, n_cells)
    latent = np.c_[2 * t, 0.5 * np.sin(np.pi * t), 0.3 * np.cos(2 * np.pi * t)]
    A = rng.normal(size=(3, 10)) / np.sqrt(3)
    states = latent @ A + 0.05 * rng.normal(size=(n_cells, 10))

    def plateau(lo, hi, w=0.01):
        return 1 / (1 + np.exp(-(t - lo) / w)) / (1 + np.exp(-(hi - t) / w))

    p1 = 0.5 + 0.35 * (plateau(0.20, 0.35) - plateau(0.60, 0.75))
    condition = np.where(rng.uniform(size=n_cells) < p1, "C1", "C2")
    sample = np.char.add(np.char.add(condition, "_r"), rng.integers(3, size=n_cells).astype(str))
    X = _expression(rng, t, condition == "C2", n_genes)
    adata = ad.AnnData(X, obs=pd.DataFrame({"condition": condition, "sample": sample}))
    adata.obs_names = adata.obs_names.astype(str)
    adata.obsm["X_state"] = states
    return adata


def _expression(rng, t, in_c2, n_genes):
    """CSR float32, ~DENSITY nonzero; the first DE_FRACTION of the genes rise in C2 on t in [0.4, 0.7]."""
    from scipy import sparse

    level = rng.normal(1.0, 0.3, n_genes).astype(np.float32)
    detect = np.clip(rng.beta(2, 18, n_genes), 0.01, 0.5).astype(np.float32)
    de_genes = np.arange(n_genes) < int(DE_FRACTION * n_genes)
    data, indices, counts = [], [], []
    for start in range(0, t.size, BLOCK):
        s = slice(start, min(start + BLOCK, t.size))
        changed = (in_c2[s] & (t[s] > 0.4) & (t[s] < 0.7))[:, None] & de_genes[None, :]
        p = np.where(changed, np.minimum(2 * detect, 0.9), detect)
        rows, cols = np.nonzero(rng.random(p.shape, dtype=np.float32) < p)
        values = level[cols] + 0.8 * changed[rows, cols] + 0.4 * rng.standard_normal(
            cols.size, dtype=np.float32)
        data.append(np.maximum(values, 0.05).astype(np.float32))
        indices.append(cols.astype(np.int32))
        counts.append(np.bincount(rows, minlength=s.stop - s.start))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr),
                             shape=(t.size, n_genes))


# ----------------------------------------------------------------- child
def _rss_gb(field: str) -> float:
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    return kb / 1024**2


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _timed_stages(stages: dict):
    """Time the DE analysis' stages by name (nested calls count in their parent)."""
    from kompot.models import gene_blocks

    owners = {"gene_blocks": gene_blocks,
              "DifferentialExpression": gene_blocks.DifferentialExpression}
    depth = [0]

    def wrap(stage, owner, name):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)

    for stage, owner, name in DE_STAGES:
        wrap(stage, owners[owner], name)


def child(n_cells: int, n_genes: int, layers_dir: str | None = None,
          compute_backend: str | None = None, precision: str | None = None):
    """One size in this (fresh) process; prints one JSON line.

    ``layers_dir``: store the layers, on disk there; ``"memory"``: in memory.
    ``compute_backend``: ``kompot.settings.compute_backend`` (default: numpy);
    ``precision``: ``kompot.settings.precision`` (default: its default).
    """
    sys.path.insert(0, str(HERE.parent))  # this checkout's kompot
    import kompot

    if compute_backend:
        kompot.settings.compute_backend = compute_backend
    if precision:
        kompot.settings.precision = precision

    in_memory = layers_dir == "memory"
    if layers_dir:
        kompot.settings.layers_on_disk = not in_memory
        kompot.settings.layers_dir = None if in_memory else layers_dir

    def run(adata, stages=None):
        t0 = time.perf_counter()
        kompot.tl.compute_differential_abundance(adata, "condition", "C1", "C2",
                                                 obsm_key="X_state", sample_col="sample",
                                                 progress=False)
        t1 = time.perf_counter()
        kompot.tl.compute_differential_expression(adata, "condition", "C1", "C2",
                                                  obsm_key="X_state", sample_col="sample",
                                                  store_layers=bool(layers_dir), progress=False)
        return t1 - t0, time.perf_counter() - t1

    run(simulate(*WARMUP, seed=1))
    t0 = time.perf_counter()
    adata = simulate(n_cells, n_genes)
    data_s, data_gb = time.perf_counter() - t0, _rss_gb("VmRSS")
    reset = _reset_peak()
    stages: dict = {}
    _timed_stages(stages)
    da_s, de_s = run(adata)
    var = adata.var
    planted = np.arange(n_genes) < int(DE_FRACTION * n_genes)
    called = var["kompot_de_C1_to_C2_is_de"].to_numpy(bool)
    rec = dict(n_cells=n_cells, n_genes=n_genes, nnz=int(adata.X.nnz), da_s=da_s, de_s=de_s,
               total_s=da_s + de_s, data_s=data_s, data_rss_gb=data_gb,
               peak_rss_gb=_rss_gb("VmHWM"), peak_reset=reset, de_stages_s=stages,
               de_called=int(called.sum()), de_called_planted=int((called & planted).sum()),
               n_planted=int(planted.sum()),
               layers=("in memory" if in_memory else "on disk") if layers_dir else "none",
               budget_gb=kompot.settings.memory_budget / 1024**3,
               da_called=int((adata.obs["kompot_da_C1_to_C2_lfc_direction"].astype(str)
                              != "neutral").sum()),
               kompot_version=kompot.__version__,
               compute_backend=kompot.settings.compute_backend,
               precision=kompot.settings.precision)
    if layers_dir and not in_memory:
        rec.update(_timed_write(adata, Path(layers_dir) / "scale_benchmark.h5ad"))
    print(json.dumps(rec), flush=True)


def _timed_write(adata, path: Path) -> dict:
    """``write_h5ad`` of the result (layers read from their stores): seconds, peak RSS over it."""
    reset, before = _reset_peak(), _rss_gb("VmRSS")
    t0 = time.perf_counter()
    adata.write_h5ad(path)
    out = dict(write_h5ad_s=time.perf_counter() - t0, write_rss_before_gb=before,
               write_peak_rss_gb=_rss_gb("VmHWM"), write_peak_reset=reset,
               h5ad_gb=path.stat().st_size / 1e9)
    path.unlink()
    return out


# ----------------------------------------------------------------- parent
def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def _git(*args) -> str:
    try:
        return subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _label(rec) -> str:
    backend = rec.get("compute_backend", "numpy")
    # Runs before kompot.settings.precision existed computed in double precision.
    precision = rec.get("runs", [rec])[0].get("precision", "auto")
    return {"none": "", "on disk": ", layers on disk",
            "in memory": ", layers in memory"}[rec.get("layers", "none")] + (
        f", {backend}" if backend != "numpy" else "") + (
        f", precision {precision}" if precision != "auto" else "")


def measure(sizes, repeats, blas_threads=None, layers_dir=None, compute_backend=None,
            precision=None):
    RUNS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if blas_threads:
        # OpenBLAS's threads wait for each other: on cores shared with other
        # work a single thread can be several times faster.
        env.update(OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads))
    for n_cells, n_genes in sizes:
        runs = []
        for r in range(repeats):
            load_before = os.getloadavg()[0]
            command = [sys.executable, str(Path(__file__).resolve()), "--child",
                       str(n_cells), str(n_genes)]
            if layers_dir:
                command += ["--layers-on-disk", layers_dir]
            if compute_backend:
                command += ["--compute-backend", compute_backend]
            if precision:
                command += ["--precision", precision]
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{n_cells:,} x {n_genes:,}: failed\n{proc.stderr[-3000:]}", flush=True)
                break
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec.update(load_before=load_before, load_after=os.getloadavg()[0],
                       blas_threads=blas_threads or "default")
            runs.append(rec)
            print(f"{n_cells:,} x {n_genes:,}, run {r + 1}/{repeats}: DA {rec['da_s']:.1f} s, "
                  f"DE {rec['de_s']:.1f} s, peak {rec['peak_rss_gb']:.2f} GB "
                  f"(data {rec['data_rss_gb']:.2f} GB), load {load_before:.1f}", flush=True)
        if not runs:
            continue
        summary = {k: statistics.median(x[k] for x in runs)
                   for k in ("da_s", "de_s", "total_s", "peak_rss_gb", "data_rss_gb")}
        out = dict(n_cells=n_cells, n_genes=n_genes, repeats=len(runs), runs=runs, **summary,
                   git_commit=_git("rev-parse", "--short", "HEAD"),
                   kompot_dir_dirty=bool(_git("status", "--porcelain", "--", "kompot")),
                   date=str(date.today()), machine=machine(),
                   command=" ".join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
                   layers=runs[0]["layers"])
        suffix = {None: "", "memory": "_layers-memory"}.get(layers_dir, "_layers-disk")
        suffix += f"_{precision}" if precision else ""
        (RUNS / f"n{n_cells}_g{n_genes}{suffix}.json").write_text(json.dumps(out, indent=1))


def load_cached() -> list[dict]:
    found = [json.loads(f.read_text()) for f in RUNS.glob("n*_g*.json")]
    return sorted(found, key=lambda r: (r["n_cells"], r["n_genes"]))


# ----------------------------------------------------------------- report
HEADER = ["| cells x genes | DA (s) | DE (s) | total (s) | peak RSS (GB) | data RSS (GB) "
          "| DE fit / predict / null (s) | DE called (planted) | load before / after "
          "| BLAS threads | commit, date |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]


def table_rows(results) -> list[str]:
    lines = []
    for r in results:
        first = r["runs"][0]
        st = first["de_stages_s"]
        # Stage names of runs before the gene blocks: "_predict_in_chunks", "expression_null_distances".
        stages = " / ".join(f"{st.get(k, st.get(old, float('nan'))):.0f}" for k, old in (
            ("fit", "fit"), ("predict", "_predict_in_chunks"),
            ("null", "expression_null_distances")))
        loads = ", ".join(f"{x['load_before']:.1f} / {x['load_after']:.1f}" for x in r["runs"])
        lines.append(
            f"| {r['n_cells']:,} x {r['n_genes']:,}{_label(r)} | {r['da_s']:.1f} | {r['de_s']:.1f} "
            f"| {r['total_s']:.1f} | {r['peak_rss_gb']:.2f} | {r['data_rss_gb']:.2f} | {stages} "
            f"| {first['de_called']} ({first['de_called_planted']} of {first['n_planted']}) "
            f"| {loads} | {first.get('blas_threads', 'default')} | {r['git_commit']}, {r['date']} |")
    return lines


def earlier_rows(new_rows: list[str]) -> list[str]:
    """Rows of the section's table from earlier runs that the cache does not replace.

    A row is replaced by a new one of the same size, layers and commit.
    """
    cur = RESULTS.read_text() if RESULTS.exists() else ""
    if TITLE not in cur:
        return []
    own = cur.split(TITLE, 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in own.splitlines() if ln.startswith("| ") and not ln.startswith("| cells")]

    def key(row):
        cells = [c.strip() for c in row.strip("|").split("|")]
        return cells[0], cells[-1].split(",")[0]

    replaced = {key(r) for r in new_rows}
    return [r for r in rows if key(r) not in replaced]


def writes(results) -> list[str]:
    """A line per run that also wrote its AnnData (layers on disk) with ``write_h5ad``."""
    return [f"Writing the {r['n_cells']:,} x {r['n_genes']:,} result with its layers on disk "
            f"(`adata.write_h5ad`, {r['runs'][0]['h5ad_gb']:.1f} GB file): "
            f"{r['runs'][0]['write_h5ad_s']:.0f} s, peak RSS over the write "
            f"{r['runs'][0]['write_peak_rss_gb']:.2f} GB (RSS before it "
            f"{r['runs'][0]['write_rss_before_gb']:.2f} GB).\n"
            for r in results if "write_h5ad_s" in r["runs"][0]]


def table(results) -> str:
    rows = table_rows(results)
    return "\n".join(HEADER + earlier_rows(rows) + rows)


def figure(results):
    results = [r for r in results if r.get("layers", "none") == "none"]
    if not results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    colours = {"da_s": "tab:blue", "de_s": "tab:orange", "total_s": "black"}
    for n_genes in sorted({r["n_genes"] for r in results}, reverse=True):
        rs = [r for r in results if r["n_genes"] == n_genes]
        cells = [r["n_cells"] for r in rs]
        style = "o-" if n_genes == max(r["n_genes"] for r in results) else "s--"
        for key, label in (("da_s", "DA"), ("de_s", "DE"), ("total_s", "DA + DE")):
            axes[0].plot(cells, [r[key] for r in rs], style, color=colours[key],
                         label=f"{label}, {n_genes:,} genes")
        axes[1].plot(cells, [r["peak_rss_gb"] for r in rs], style, color="black",
                     label=f"{n_genes:,} genes")
    first = min(results, key=lambda r: r["n_cells"])
    span = np.array([first["n_cells"], max(r["n_cells"] for r in results)])
    axes[0].plot(span, first["total_s"] * span / span[0], ":", color="grey",
                 label="proportional to cells")
    axes[0].set(xscale="log", yscale="log", xlabel="cells", ylabel="wall time (s)")
    axes[1].set(xscale="log", yscale="log", xlabel="cells", ylabel="peak RSS (GB)")
    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].yaxis.set_minor_formatter(ScalarFormatter())
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


def previous_reading() -> str:
    cur = RESULTS.read_text() if RESULTS.exists() else ""
    if TITLE not in cur:
        return "(no reading given)"
    own = cur.split(TITLE, 1)[1].split("\n## ", 1)[0]
    return own.split("### Reading (scaling)", 1)[1].strip() if "### Reading (scaling)" in own \
        else "(no reading given)"


def report():
    results = load_cached()
    if not results:
        print("no cached results under", RUNS)
        return
    figure(results)
    runs = "; ".join(f"{r['n_cells']:,} x {r['n_genes']:,}{_label(r)}: {r['date']}, commit "
                     f"{r['git_commit']}{' (kompot/ dirty)' if r['kompot_dir_dirty'] else ''}, "
                     f"`{r['command']}`" for r in results)
    text = "\n".join([
        TITLE, "",
        f"Machine: {results[0]['machine']}, shared with other work (load averages in the "
        "table; with load above the 2 cores the times are upper bounds). Latest runs: " + runs
        + ". Rows of earlier commits are kept in the table (their commands: the same, "
        "`--blas-threads 1`).",
        "",
        "Data and calls: see `benchmarks/scale.py` (synthetic sparse CSR, 10 % nonzero, 10-D "
        "states, 3 vs 3 samples; DA, then DE with `store_layers=False` (rows 'layers on disk' "
        "/ 'in memory': `store_layers=True` with `kompot.settings.layers_on_disk` True / "
        "False), FDR at the "
        "defaults, `kompot.settings.memory_budget` at its default of 4 GiB). "
        "Peak RSS includes the data (data RSS: the process after building them).", "",
        table(results), "", *writes(results), "![scaling](scale.png)", "",
        "### Reading (scaling)", "", previous_reading(), "",
    ])
    write_section(TITLE, text, RESULTS)
    print(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=None, help="CELLSxGENES, e.g. 10000x2000")
    p.add_argument("--huge", action="store_true", help=f"also {HUGE[0]:,} x {HUGE[1]:,}")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only rewrite the section and figure")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OPENBLAS_NUM_THREADS of the children (default: the library's)")
    p.add_argument("--layers-on-disk", metavar="DIR", default=None,
                   help="store the DE layers, on disk under DIR (zarr; default: no layers); "
                        "'memory': store them in memory")
    p.add_argument("--compute-backend", default=None,
                   help="kompot.settings.compute_backend of the runs, e.g. jax:gpu (default: numpy)")
    p.add_argument("--precision", default=None, choices=("auto", "double", "mixed"),
                   help="kompot.settings.precision of the runs (default: kompot's default)")
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(*a.child, layers_dir=a.layers_on_disk, compute_backend=a.compute_backend,
              precision=a.precision)
        return
    sizes = ([tuple(int(x) for x in s.split("x")) for s in a.sizes] if a.sizes
             else list(SIZES)) + ([HUGE] if a.huge else [])
    if not a.report:
        measure(sizes, a.repeats, a.blas_threads, a.layers_on_disk, a.compute_backend,
                a.precision)
    report()


if __name__ == "__main__":
    main()
