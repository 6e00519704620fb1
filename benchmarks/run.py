"""Speed benchmark of the model classes at kompot.tl's defaults; writes benchmarks/RESULTS.md.

    python benchmarks/run.py            # 10k and 50k cells, 3 repeats each
    python benchmarks/run.py --quick    # 10k cells only

Each measurement runs in a fresh process (peak RSS is that run's alone);
the table reports medians over the repeats. Not a test: nothing here runs in CI.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent


def measure(what, n_cells, n_genes, repeats):
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, str(HERE / "speed_child.py"), "--what", what, "--n-cells",
             str(n_cells), "--n-genes", str(n_genes)],
            check=True, capture_output=True, text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    summary = {k: statistics.median(r[k] for r in runs) for k in keys}
    return {**runs[0], **summary, "repeats": repeats}


def machine():
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-genes", type=int, default=2000)
    a = p.parse_args()
    sizes = [10_000] if a.quick else [10_000, 50_000]
    rows = [measure(w, n, a.n_genes, a.repeats) for n in sizes for w in ("da", "de")]
    lines = [
        "## Speed of the model classes (kompot.tl defaults)",
        "",
        f"Machine: {machine()}. Date: {date.today()}. Command: `python benchmarks/run.py"
        f"{' --quick' if a.quick else ''}` (median of {a.repeats} runs, each in a fresh process).",
        f"Data: `kompot.datasets.toy(n_cells, n_genes={a.n_genes})`, 10-D cell states; "
        f"n_landmarks={rows[0]['n_landmarks']}, ls_factor "
        + ", ".join(f"{r['ls_factor']:g} ({r['what'].upper()})" for r in rows[:2]) + ".",
        "",
        "| analysis | cells | fit (s) | predict (s) | Mahalanobis (s) | total (s) | peak RSS (GB) | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = (f"AUROC region {r['auroc_region']:.3f}" if r["what"] == "da"
               else f"AUROC genes {r['auroc_genes']:.3f}")
        mahalanobis = f"{r['mahalanobis_s']:.1f}" if "mahalanobis_s" in r else "–"
        lines.append(
            f"| {r['what'].upper()} | {r['n_cells']:,} | {r['fit_s']:.1f} | {r['predict_s']:.1f} | "
            f"{mahalanobis} | {r['total_s']:.1f} | "
            f"{r['peak_rss_gb']:.1f} | {acc} |"
        )
    text = "\n".join(lines) + "\n"
    target = HERE / "RESULTS.md"
    previous = target.read_text() if target.exists() else "# Benchmark results\n"
    marker = "## Speed of the model classes"
    head = previous.split(marker)[0].rstrip() + "\n\n"
    rest = ""
    if marker in previous:
        after = previous.split(marker, 1)[1]
        nxt = after.find("\n## ")
        rest = after[nxt:] if nxt >= 0 else ""
    target.write_text(head + text + rest)
    print(text)


if __name__ == "__main__":
    main()
