"""Mixed against double precision of DE's empirical-variance passes: do the calls change?

    python benchmarks/precision.py                      # seeds 0-4, 2,000 cells x 2,000 genes
    python benchmarks/precision.py --seeds 0 1 --n-genes 500 --no-write
    python benchmarks/precision.py --reading bullets.md    # the section with its reading

``kompot.settings.precision = "mixed"`` computes the expression fits'
empirical-variance passes in float32 products summed in float64; ``"auto"``
(the default) does so from 50,000 cells, so the accuracy benchmarks (2,000
cells) never see it. Here each seed's data (``kompot.datasets.toy``, 3 vs 3
samples, abundance change, 20 planted genes) go through
``kompot.tl.compute_differential_expression`` (``store_layers=False``), with
``sample_col="sample"`` and without, once with ``precision="double"`` and
once with ``"mixed"``, in one process. Per configuration: the largest
relative difference over genes and seeds of the Mahalanobis distance and of
the tail FDR, the genes whose call (``is_de``, q <= 0.05) differs, the mean
calls and true positives, and the median DE time of each precision (at
2,000 cells the passes over cells are a small part of it; the time at scale
is in ``scale.py --precision``). Writes the section "Mixed precision: the
same calls" of ``benchmarks/RESULTS.md``. Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from _results import write_section

HERE = Path(__file__).resolve().parent
TITLE = "## Mixed precision: the same calls"
CONFIGS = (("with `sample_col='sample'`", "sample"), ("without samples", None))


def run_seed(seed: int, n_cells: int, n_genes: int) -> dict:
    """Both precisions on one seed's data, for each configuration."""
    import kompot

    adata = kompot.datasets.toy(n_cells=n_cells, n_genes=n_genes, seed=seed)
    planted = adata.var["is_de"].to_numpy(bool)
    c1, c2 = adata.obs["condition"].cat.categories[:2]
    out = {}
    for label, sample_col in CONFIGS:
        per = {}
        for precision in ("double", "mixed"):
            kompot.settings.precision = precision
            a = adata.copy()
            t0 = time.perf_counter()
            kompot.tl.compute_differential_expression(a, "condition", c1, c2,
                                                      sample_col=sample_col,
                                                      store_layers=False, progress=False)
            seconds = time.perf_counter() - t0
            prefix = f"kompot_de_{c1}_to_{c2}_"
            per[precision] = dict(seconds=seconds, **{
                name: a.var[prefix + name].to_numpy() for name in
                ("mahalanobis", "tail_fdr", "is_de")})
        kompot.settings.precision = "auto"
        d, m = per["double"], per["mixed"]
        out[label] = dict(
            mahalanobis=float(np.max(np.abs(m["mahalanobis"] - d["mahalanobis"])
                                     / np.abs(d["mahalanobis"]))),
            tail_fdr=float(np.max(np.abs(m["tail_fdr"] - d["tail_fdr"]) / d["tail_fdr"])),
            differ=int(np.sum(m["is_de"] != d["is_de"])),
            calls=int(d["is_de"].sum()), true=int((d["is_de"] & planted).sum()),
            double_s=d["seconds"], mixed_s=m["seconds"])
    return out


def section(results: dict, seeds, n_cells, n_genes, wall: float) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    lines = [
        TITLE, "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{mem / 1024**3:.0f} GiB, Python {platform.python_version()}; date: {date.today()}; "
        f"wall time {wall / 60:.1f} min (shared with other work).", "",
        f"Command: `python benchmarks/precision.py --seeds {' '.join(map(str, seeds))} "
        f"--n-cells {n_cells} --n-genes {n_genes}`", "",
        f"Data: `kompot.datasets.toy(n_cells={n_cells}, n_genes={n_genes})` (3 vs 3 samples, "
        "abundance change, 20 planted genes); `kompot.tl.compute_differential_expression`, "
        "`store_layers=False`, with `kompot.settings.precision` `\"double\"` and `\"mixed\"` "
        "on the same data in one process. Differences: the largest over genes and seeds, "
        "relative to double precision.", "",
        "| configuration | seeds | max rel. diff. Mahalanobis | max rel. diff. tail FDR "
        "| calls differing (all seeds) | calls per seed (true) | DE time double / mixed (s, median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, _ in CONFIGS:
        runs = [results[s][label] for s in seeds]
        lines.append(
            f"| {label} | {len(runs)} | {max(r['mahalanobis'] for r in runs):.1e} "
            f"| {max(r['tail_fdr'] for r in runs):.1e} | {sum(r['differ'] for r in runs)} "
            f"| {np.mean([r['calls'] for r in runs]):.1f} "
            f"({np.mean([r['true'] for r in runs]):.1f}) "
            f"| {statistics.median(r['double_s'] for r in runs):.1f} / "
            f"{statistics.median(r['mixed_s'] for r in runs):.1f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--n-cells", type=int, default=2000)
    p.add_argument("--n-genes", type=int, default=2000)
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--reading", default=None, help="file with the reading bullets (markdown)")
    a = p.parse_args()
    sys.path.insert(0, str(HERE.parent))  # this checkout's kompot
    t0 = time.perf_counter()
    results = {}
    for seed in a.seeds:
        results[seed] = run_seed(seed, a.n_cells, a.n_genes)
        print(seed, results[seed], flush=True)
    text = section(results, a.seeds, a.n_cells, a.n_genes, time.perf_counter() - t0)
    reading = Path(a.reading).read_text() if a.reading else previous_reading()
    text += "\n### Reading (mixed precision)\n\n" + reading.strip() + "\n"
    print(text)
    if not a.no_write:
        write_section(TITLE, text, HERE / "RESULTS.md")


def previous_reading() -> str:
    """The reading of the section already in RESULTS.md, flagged for a re-check."""
    current = (HERE / "RESULTS.md").read_text()
    own = current.split(TITLE, 1)[1].split("\n## ", 1)[0] if TITLE in current else ""
    if "### Reading (mixed precision)" not in own:
        return "- (no reading given)"
    return ("- (Re-run: check the reading below against the new table.)\n"
            + own.split("### Reading (mixed precision)", 1)[1].strip())


if __name__ == "__main__":
    main()
