"""Differential-abundance speed against Milo (pertpy) at scale, 3 vs 3 samples.

    python benchmarks/speed_da.py                    # 20k, 100k, 200k cells; both sides, 3 repeats
    python benchmarks/speed_da.py --large            # and 500k
    python benchmarks/speed_da.py --ours-only        # kompot only (Milo's cached results stay)
    python benchmarks/speed_da.py --milo-only --sizes 200000 --repeats 1
    python benchmarks/speed_da.py --report           # the table from the cached results

Data: a 1-D latent curve (as ``_linear`` in ``accuracy_da.py``) embedded into
10-D by a random linear map plus isotropic noise, ``n`` cells, with a planted
difference: P(C1) is 0.5 along the curve, raised to 0.85 on one stretch
(t in [0.20, 0.35]) and lowered to 0.15 on another (t in [0.60, 0.75]), with
smooth edges. Labels are drawn from P(C1); each condition's cells are split
at random into 3 samples. Truth: +1 (more C1) where P(C1) - 0.5 > 0.175,
-1 where it is < -0.175, 0 elsewhere. Accuracy: the modified AUROC of a
per-cell score signed as "more C1" (mean of the AUROCs of the up and of the
down cells), as in ``accuracy_da.py``.

kompot: ``kompot.tl.compute_differential_abundance(adata, "condition", "C1",
"C2", obsm_key="X", sample_col="sample", progress=False)`` at the tl defaults,
one fresh process per size and repeat (``--child-ours``): after a warm-up
call on 2,000 other cells (the imports kompot does at call time, timed and
reported separately, as Milo's warm-up is), the wall time of that call, the
process's peak RSS (``VmHWM``),
score ``-lfc``, and the cells called up or down in ``..._lfc_direction``.

Milo: ``benchmarks/speed_da_milo_child.py`` in the Milo/MELD side environment
(``benchmarks/.milo-venv``, see ``side_envs.py``), one fresh process per size:
a 10,000-cell warm-up run first (numba compilation; timed and reported
separately), then the repeats on the size, all warm. Time: the wall clock of
``sc.pp.neighbors`` (k=30) + ``make_nhoods`` (prop=0.1) + ``count_nhoods`` +
``da_nhoods`` (pydeseq2). Peak RSS: ``VmHWM`` of that per-size process, which
also ran the warm-up (pydeseq2's joblib workers, ~0.2 GB each, not counted). Score: minus the mean logFC of the neighbourhoods that
contain the cell.

Results are cached as JSON under ``benchmarks/_runs/speed_da/`` (datasets as
npz beside them); a side's run for a size replaces that size's JSON. Milo
sizes already cached are skipped unless ``--force``; kompot always reruns.
The table reports medians over the repeats. Not a test: nothing here runs in CI.
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

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "speed_da"
MILO_CHILD = HERE / "speed_da_milo_child.py"
SIZES = (20_000, 100_000, 200_000)
LARGE = 500_000
WARMUP_N = 10_000  # >= 8,192: sc.pp.neighbors takes the pynndescent path, as at every size
OURS_WARMUP_N = 2_000  # kompot's warm-up run (another seed): imports at call time only
UP, DOWN = (0.20, 0.35), (0.60, 0.75)
ENR = 0.85


# ----------------------------------------------------------------- data
def simulate(n, seed=0):
    rng = np.random.default_rng([seed, n])
    t = rng.uniform(0, 1, n)
    latent = np.c_[2 * t, 0.5 * np.sin(np.pi * t), 0.3 * np.cos(2 * np.pi * t)]
    latent += 0.03 * rng.normal(size=latent.shape)
    A = rng.normal(size=(3, 10)) / np.sqrt(3)
    X = latent @ A + 0.05 * rng.normal(size=(n, 10))

    def plateau(lo, hi, w=0.01):
        return 1 / (1 + np.exp(-(t - lo) / w)) / (1 + np.exp(-(hi - t) / w))

    p1 = 0.5 + (ENR - 0.5) * (plateau(*UP) - plateau(*DOWN))
    truth = np.select([p1 - 0.5 > (ENR - 0.5) / 2, 0.5 - p1 > (ENR - 0.5) / 2], [1, -1], 0)
    cond = np.where(rng.uniform(size=n) < p1, "C1", "C2")
    sample = np.char.add(np.char.add(cond, "_r"), rng.integers(3, size=n).astype(str))
    return dict(X=X, t=t, p1=p1, truth=truth, condition=cond, sample=sample)


def dataset(n):
    """Path of the ``n``-cell dataset, simulated and written on first use."""
    RUNS.mkdir(parents=True, exist_ok=True)
    path = RUNS / f"data_n{n}.npz"
    if not path.exists():
        np.savez(path, **simulate(n))
    return path


def modified_auroc(score, truth):
    """Mean of the AUROC of the up cells (by ``score``) and of the down cells (by ``-score``)."""
    from sklearn.metrics import roc_auc_score

    s = np.where(np.isfinite(score), score, 0.0)  # unscored cells rank in the middle
    return 0.5 * (roc_auc_score(truth == 1, s) + roc_auc_score(truth == -1, -s))


def machine():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def _git(*args):
    try:
        return subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ----------------------------------------------------------------- kompot
def child_ours(path):
    """One kompot run in this (fresh) process; prints one JSON line."""
    import anndata as ad
    import pandas as pd
    from _proc import peak_rss_gb

    t0 = time.perf_counter()
    import kompot

    import_s = time.perf_counter() - t0

    def run(d):
        a = ad.AnnData(obs=pd.DataFrame({"condition": d["condition"], "sample": d["sample"]}))
        a.obs_names = a.obs_names.astype(str)
        a.obsm["X"] = d["X"]
        t0 = time.perf_counter()
        kompot.tl.compute_differential_abundance(a, "condition", "C1", "C2", obsm_key="X",
                                                 sample_col="sample", progress=False)
        return a, time.perf_counter() - t0

    # Warm, as Milo is measured: a first small run pays the imports done at call time.
    _, warmup_s = run(simulate(OURS_WARMUP_N, seed=1))
    d = dict(np.load(path))
    a, wall_s = run(d)
    p = "kompot_da_C1_to_C2"
    lfc = a.obs[f"{p}_lfc"].to_numpy()  # log density(C2) - log density(C1)
    direction = a.obs[f"{p}_lfc_direction"].astype(str).to_numpy()
    calls = np.select([direction == "down", direction == "up"], [1, -1], 0)  # +1: more C1
    called = calls != 0
    uns = a.uns.get("kompot_da", {})
    rec = dict(n_cells=len(lfc), wall_s=wall_s, import_s=import_s, warmup_s=warmup_s,
               peak_rss_gb=peak_rss_gb(),
               auroc=modified_auroc(-lfc, d["truth"]), n_called=int(called.sum()),
               n_called_correct=int((called & (calls == d["truth"])).sum()),
               n_true=int((d["truth"] != 0).sum()),
               ls=float(uns["ls"]) if "ls" in uns else None,
               kompot_version=kompot.__version__)
    print(json.dumps(rec), flush=True)


def measure_ours(sizes, repeats):
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "kompot"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for n in sizes:
        path = dataset(n)
        runs = []
        for r in range(repeats):
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-ours",
                                   str(path)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"kompot {n}: failed\n{proc.stderr[-3000:]}", flush=True)
                break
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"kompot {n:,} cells, run {r + 1}/{repeats}: {runs[-1]['wall_s']:.1f} s, "
                  f"peak {runs[-1]['peak_rss_gb']:.2f} GB, AUROC {runs[-1]['auroc']:.3f}, "
                  f"{runs[-1]['n_called']} called", flush=True)
        if not runs:
            continue
        summary = {k: statistics.median(x[k] for x in runs)
                   for k in ("wall_s", "import_s", "peak_rss_gb", "auroc", "n_called")}
        out = dict(side="kompot", n_cells=n, repeats=len(runs), runs=runs, **summary,
                   kompot_version=runs[0]["kompot_version"], git_commit=commit,
                   kompot_dir_dirty=dirty, date=str(date.today()), machine=machine(),
                   command=" ".join(["python", "benchmarks/speed_da.py", *sys.argv[1:]]))
        (RUNS / f"ours_n{n}.json").write_text(json.dumps(out, indent=1))


# ----------------------------------------------------------------- Milo
def measure_milo(sizes, repeats, force=False):
    import side_envs

    milo_py = side_envs.python("field")
    warm = dataset(WARMUP_N)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for n in sizes:
        out_path = RUNS / f"milo_n{n}.json"
        if out_path.exists() and not force:
            print(f"Milo {n:,} cells: cached ({out_path.name}; --force to rerun)", flush=True)
            continue
        path = dataset(n)
        proc = subprocess.run([str(milo_py), str(MILO_CHILD), str(warm), str(path), str(repeats)],
                              cwd="/tmp", capture_output=True, text=True, env=env)
        for line in proc.stdout.splitlines()[:-1]:
            print(line, flush=True)
        if proc.returncode != 0:
            print(f"Milo {n:,} cells: failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        summary = {k: statistics.median(x[k] for x in rec["runs"])
                   for k in ("total_s", "neighbors_s", "make_nhoods_s", "count_nhoods_s",
                             "da_nhoods_s", "auroc", "n_nhoods", "n_sig")}
        out = dict(side="milo", **rec, **summary, date=str(date.today()), machine=machine(),
                   command=" ".join(["python", "benchmarks/speed_da.py", *sys.argv[1:]]))
        out_path.write_text(json.dumps(out, indent=1))
        print(f"Milo {n:,} cells: {summary['total_s']:.1f} s (median of {repeats}), warm-up "
              f"{rec['warmup_s']:.1f} s, peak {rec['peak_rss_gb']:.2f} GB, "
              f"AUROC {summary['auroc']:.3f}", flush=True)


# ----------------------------------------------------------------- report
def report():
    def load(side):
        out = {}
        for f in RUNS.glob(f"{side}_n*.json"):
            r = json.loads(f.read_text())
            out[r["n_cells"]] = r
        return out

    ours, milo = load("ours"), load("milo")
    if not ours and not milo:
        print("no cached results under", RUNS)
        return
    f = lambda r, k, fmt: format(r[k], fmt) if r and r.get(k) is not None else "–"  # noqa: E731
    lines = ["| cells | kompot (s) | Milo (s) | Milo / kompot | peak RSS kompot (GB) "
             "| peak RSS Milo (GB) | AUROC kompot | AUROC Milo | kompot cells called "
             "| Milo JIT warm-up (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in sorted(set(ours) | set(milo)):
        o, m = ours.get(n), milo.get(n)
        ratio = m["total_s"] / o["wall_s"] if o and m else None
        ratio = "–" if ratio is None else f"{ratio:.{1 if ratio >= 1 else 2}f}"
        lines.append(f"| {n:,} | {f(o, 'wall_s', '.1f')} | {f(m, 'total_s', '.1f')} | {ratio} "
                     f"| {f(o, 'peak_rss_gb', '.2f')} | {f(m, 'peak_rss_gb', '.2f')} "
                     f"| {f(o, 'auroc', '.3f')} | {f(m, 'auroc', '.3f')} "
                     f"| {f(o, 'n_called', ',.0f')} | {f(m, 'warmup_s', '.1f')} |")
    lines += ["", "Milo by stage (s, medians): "
              + "; ".join(f"{n:,}: neighbors {m['neighbors_s']:.1f}, make_nhoods "
                          f"{m['make_nhoods_s']:.1f}, count_nhoods {m['count_nhoods_s']:.1f}, "
                          f"da_nhoods {m['da_nhoods_s']:.1f} ({m['n_nhoods']:.0f} nhoods)"
                          for n, m in sorted(milo.items()))]
    lines.append("")
    for side, res in (("kompot", ours), ("Milo", milo)):
        for n, r in sorted(res.items()):
            extra = (f"kompot {r['kompot_version']} at commit {r['git_commit']}"
                     f"{' (kompot/ had uncommitted changes)' if r['kompot_dir_dirty'] else ''}"
                     if side == "kompot" else
                     ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
            lines.append(f"- {side} {n:,}: {r['repeats']} repeat(s), {r['date']}, {r['machine']}; "
                         f"{extra}; `{r['command']}`")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--large", action="store_true", help=f"also {LARGE:,} cells")
    p.add_argument("--repeats", type=int, default=3)
    side = p.add_mutually_exclusive_group()
    side.add_argument("--milo-only", action="store_true")
    side.add_argument("--ours-only", action="store_true")
    p.add_argument("--force", action="store_true", help="rerun Milo sizes already cached")
    p.add_argument("--report", action="store_true", help="only print the cached results")
    p.add_argument("--child-ours", metavar="NPZ", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_ours:
        child_ours(a.child_ours)
        return
    sizes = list(a.sizes or SIZES) + ([LARGE] if a.large else [])
    if not a.report:
        if not a.ours_only:
            measure_milo(sizes, a.repeats, force=a.force)
        if not a.milo_only:
            measure_ours(sizes, a.repeats)
    report()


if __name__ == "__main__":
    main()
