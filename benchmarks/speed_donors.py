"""Many donors: DA + DE with FDR at 20,000 cells, 50 vs 50 samples, through ``kompot.tl``.

    python benchmarks/speed_donors.py                       # 3 repeats, this checkout
    python benchmarks/speed_donors.py --label baseline --kompot-dir /tmp/kompot-base
    python benchmarks/speed_donors.py --label no-layers --no-layers   # DE with store_layers=False
    python benchmarks/speed_donors.py --report              # the table from the cached results

Data: ``kompot.datasets.toy(n_cells=20000, n_genes=1000, n_samples=50)``
(50 replicate samples per condition, about 200 cells each; planted DA and
DE, replicate effects on). Calls, at the ``kompot.tl`` defaults:
``compute_differential_abundance(adata, "condition", "control", "treated",
sample_col="sample", progress=False)``, then
``compute_differential_expression(...)`` with the same arguments (layers
stored, FDR on, 5 permutations, 1,000 null genes; ``--no-layers``:
``store_layers=False``, only the per-gene results).

One fresh process per repeat (``--child``), importing kompot from
``--kompot-dir`` (default: this checkout), so that a baseline checkout can be
measured with the same script. Before the timed calls a warm-up DA + DE on
2,000 other cells (3 vs 3 samples, 50 genes) pays the imports done at call time.
DE is broken into stages by timing (inclusive wall time) the functions that
do them: the replicate-sample fits (``SampleVarianceEstimator.fit``) of the
observed fit and of the null's refits, the whole null
(``gene_blocks._block_null``: refits, replicate fits, distances), the
per-cell prediction (``gene_blocks.predict_in_chunks``) and the Mahalanobis
distances (``core.mahalanobis.mahalanobis_distances``, observed and null).

Wall and CPU time (``time.process_time``, all threads) are both recorded:
on a shared machine the CPU time moves less with the other load.

Results are cached as JSON under ``benchmarks/_runs/speed_donors/`` (one file
per ``--label``). The table reports medians over the repeats. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNS = HERE / "_runs" / "speed_donors"
N_CELLS, N_GENES, N_SAMPLES = 20_000, 1_000, 50
STAGES = ("sample_fits_observed", "sample_fits_null", "null", "prediction",
          "mahalanobis_observed", "mahalanobis_null")


# ----------------------------------------------------------------- child
class StageClock:
    """Inclusive wall time of wrapped functions, split by whether the null is running."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.in_null = False

    @contextmanager
    def _timed(self, stage):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0

    def wrap(self, owner, name, stage, split=False, marks_null=False):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            key = f"{stage}_{'null' if self.in_null else 'observed'}" if split else stage
            if marks_null:
                self.in_null = True
            try:
                with self._timed(key):
                    return original(*args, **kwargs)
            finally:
                if marks_null:
                    self.in_null = False

        setattr(owner, name, timed)


def instrument() -> StageClock:
    from kompot.models import differential_expression, gene_blocks
    from kompot.models.sample_variance import SampleVarianceEstimator

    clock = StageClock()
    clock.wrap(SampleVarianceEstimator, "fit", "sample_fits", split=True)
    clock.wrap(gene_blocks, "_block_null", "null", marks_null=True)
    clock.wrap(gene_blocks, "predict_in_chunks", "prediction")
    clock.wrap(differential_expression, "mahalanobis_distances", "mahalanobis", split=True)
    return clock


def child(store_layers: bool = True):
    """One DA + DE run in this (fresh) process; prints one JSON line."""
    from _proc import peak_rss_gb

    import kompot

    def run(adata, clock=None):
        kw = dict(sample_col="sample", progress=False)
        t0, c0 = time.perf_counter(), time.process_time()
        kompot.tl.compute_differential_abundance(adata, "condition", "control", "treated", **kw)
        t1, c1 = time.perf_counter(), time.process_time()
        if clock is not None:
            clock.seconds = dict.fromkeys(STAGES, 0.0)
        kompot.tl.compute_differential_expression(adata, "condition", "control", "treated",
                                                  store_layers=store_layers, **kw)
        t2, c2 = time.perf_counter(), time.process_time()
        return t1 - t0, t2 - t1, c1 - c0, c2 - c1

    run(kompot.datasets.toy(n_cells=2000, n_genes=50, n_samples=3, seed=1))
    clock = instrument()
    adata = kompot.datasets.toy(n_cells=N_CELLS, n_genes=N_GENES, n_samples=N_SAMPLES)
    da_s, de_s, da_cpu_s, de_cpu_s = run(adata, clock)
    de = adata.var
    called = de["kompot_de_control_to_treated_is_de"].to_numpy(bool)
    rec = dict(da_s=da_s, de_s=de_s, total_s=da_s + de_s, da_cpu_s=da_cpu_s, de_cpu_s=de_cpu_s,
               **clock.seconds,
               peak_rss_gb=peak_rss_gb(), n_de_called=int(called.sum()),
               n_de_called_true=int((called & de["is_de"].to_numpy(bool)).sum()),
               n_da_cells_called=int((adata.obs["kompot_da_control_to_treated_lfc_direction"]
                                      .astype(str) != "neutral").sum()),
               store_layers=store_layers, kompot_file=kompot.__file__)
    print(json.dumps(rec), flush=True)


# ----------------------------------------------------------------- parent
def _git(*args):
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def measure(label, kompot_dir, repeats, store_layers=True):
    sys.path.insert(0, str(HERE))
    from speed_da import machine

    env = {**os.environ, "PYTHONPATH": str(kompot_dir)}
    runs = []
    for r in range(repeats):
        load = os.getloadavg()
        command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        if not store_layers:
            command.append("--no-layers")
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(HERE))
        if proc.returncode != 0:
            print(f"{label}: run failed\n{proc.stderr[-3000:]}", flush=True)
            break
        runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "load_before": load})
        x = runs[-1]
        print(f"{label} run {r + 1}/{repeats}: DA {x['da_s']:.1f} s, DE {x['de_s']:.1f} s "
              f"(null {x['null']:.1f}, sample fits {x['sample_fits_observed']:.1f} + "
              f"{x['sample_fits_null']:.1f}, prediction {x['prediction']:.1f}, Mahalanobis "
              f"{x['mahalanobis_observed']:.1f} + {x['mahalanobis_null']:.1f}), load "
              f"{load[0]:.1f}", flush=True)
    if not runs:
        return
    keys = ("da_s", "de_s", "total_s", "da_cpu_s", "de_cpu_s", *STAGES, "peak_rss_gb",
            "n_de_called")
    summary = {k: statistics.median(x[k] for x in runs) for k in keys}
    RUNS.mkdir(parents=True, exist_ok=True)
    out = dict(label=label, repeats=len(runs), runs=runs, **summary,
               kompot_dir=str(kompot_dir), git_commit=_git("rev-parse", "--short", "HEAD"),
               date=str(date.today()), machine=machine(),
               command=" ".join(["python", "benchmarks/speed_donors.py", *sys.argv[1:]]))
    (RUNS / f"{label}.json").write_text(json.dumps(out, indent=1))


def report():
    results = [json.loads(f.read_text()) for f in sorted(RUNS.glob("*.json"))]
    if not results:
        print("no cached results under", RUNS)
        return
    lines = ["| run | DA (s) | DE (s) | DA + DE (s) | CPU DA / DE (s) | DE: null | sample fits (observed + null) "
             "| prediction | Mahalanobis (observed + null) | peak RSS (GB) | DE genes called "
             "| load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        loads = "–".join(f"{x['load_before'][0]:.1f}" for x in r["runs"])
        lines.append(
            f"| {r['label']} | {r['da_s']:.1f} | {r['de_s']:.1f} | {r['total_s']:.1f} "
            f"| {r.get('da_cpu_s', float('nan')):.0f} / {r.get('de_cpu_s', float('nan')):.0f} "
            f"| {r['null']:.1f} | {r['sample_fits_observed']:.1f} + {r['sample_fits_null']:.1f} "
            f"| {r['prediction']:.1f} | {r['mahalanobis_observed']:.1f} + "
            f"{r['mahalanobis_null']:.1f} | {r['peak_rss_gb']:.2f} | {r['n_de_called']:.0f} "
            f"| {loads} |")
    lines.append("")
    for r in results:
        layers = "layers stored" if r["runs"][0].get("store_layers", True) else "no layers"
        lines.append(f"- {r['label']}: {r['repeats']} repeat(s), {layers}, {r['date']}, {r['machine']}; "
                     f"kompot from {r['kompot_dir']} (branch at {r['git_commit']}); "
                     f"`{r['command']}`")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--label", default="current")
    p.add_argument("--kompot-dir", default=str(ROOT), help="folder holding the kompot package")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--report", action="store_true", help="only print the cached results")
    p.add_argument("--no-layers", action="store_true",
                   help="DE with store_layers=False (per-gene results only)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(store_layers=not a.no_layers)
        return
    if not a.report:
        measure(a.label, Path(a.kompot_dir).resolve(), a.repeats, store_layers=not a.no_layers)
    report()


if __name__ == "__main__":
    main()
