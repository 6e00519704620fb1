"""Per-stage speed of the model classes, ours against kompot 0.8.0, shared hyper-parameters.

    python benchmarks/stages.py                      # 10k and 50k cells, 3 repeats
    python benchmarks/stages.py --sizes 2000 --repeats 1 --no-write   # plumbing check

``benchmarks/peer_compare.py`` times what a user calls (``kompot.tl``); this
splits the model classes' work into DA fit / predict and DE fit / predict /
Mahalanobis, on the same ``toy`` data, landmarks and length scales for both
sides (``stages_child.py`` runs the same code in either environment). The
DE null (FDR) exists only at the tl level; its cost is the difference of the
two tl stages in the section above. Writes its own table into
``benchmarks/RESULTS.md``. Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import side_envs
from peer_compare import machine, versions, watch
from scipy.stats import spearmanr

import kompot
from kompot.core.landmarks import length_scale, nearest_neighbor_distances, select_landmarks
from kompot.tl._defaults import DA_LS_FACTOR, DE_LS_FACTOR, N_LANDMARKS, OBSM_KEY

HERE = Path(__file__).resolve().parent
SECTION = "## Per-stage speed against kompot 0.8.0 (model classes)"
STAGES = {"da": ("fit_s", "predict_s"), "de": ("fit_s", "predict_s", "mahalanobis_s")}
READING = "Reading (per stage)."
NAMES = {"fit_s": "fit", "predict_s": "predict", "mahalanobis_s": "Mahalanobis"}


def make_data(n_cells, n_genes, path):
    adata = kompot.datasets.toy(n_cells=n_cells, n_genes=n_genes, seed=0)
    X = np.asarray(adata.obsm[OBSM_KEY], np.float64)
    r = nearest_neighbor_distances(X)
    np.savez(path, X=X, Y=np.asarray(adata.X, np.float64),
             treated=(adata.obs["condition"] == "treated").to_numpy(),
             landmarks=select_landmarks(X, N_LANDMARKS, random_state=0),
             ls_da=length_scale(r, DA_LS_FACTOR), ls_de=length_scale(r, DE_LS_FACTOR))


def run(side, analysis, data, out, peer_python, timeout, mem_limit_gb, work):
    child = str(HERE / "stages_child.py")
    if side == "ours":
        cmd, cwd, env = [sys.executable, child], HERE.parent, dict(os.environ)
    else:
        # From outside the source tree, so that `import kompot` is the published package.
        cmd, cwd = [str(peer_python), child], work
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
               "PYTHONPATH": str(HERE)}  # for _proc only
    cmd += ["--analysis", analysis, "--data", str(data), "--out", str(out)]
    tag = out.with_suffix("")
    t0 = time.perf_counter()
    with open(f"{tag}.stdout", "w") as fo, open(f"{tag}.stderr", "w") as fe:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe,
                                start_new_session=True)
        stopped = watch(proc, timeout, mem_limit_gb)
    if stopped:
        return {"status": stopped}
    if proc.returncode != 0:
        return {"status": "error", "error": Path(f"{tag}.stderr").read_text().splitlines()[-3:]}
    rec = json.loads(Path(f"{tag}.stdout").read_text().strip().splitlines()[-1])
    expected = "0.8.0" if side == "peer" else kompot.__version__
    if rec["version"] != expected or (side == "peer") != ("site-packages" in rec["file"]):
        raise SystemExit(f"{side}: imported kompot {rec['version']} from {rec['file']}")
    return {**rec, "status": "ok", "process_s": time.perf_counter() - t0}


def agreement(analysis, work, n):
    a = np.load(work / f"ours_{analysis}_{n}_r0.npz")
    b = np.load(work / f"peer_{analysis}_{n}_r0.npz")
    key = "lfc" if analysis == "da" else "mahalanobis"
    return float(spearmanr(a[key], b[key]).statistic)


def table(results):
    lines = ["| cells | analysis | stage | ours (s) | peer (s) | peer/ours | ours peak RSS (GB) | "
             "peer peak RSS (GB) | Spearman ours vs peer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (n, analysis), sides in results.items():
        ok = {s: [r for r in sides[s] if r["status"] == "ok"] for s in ("ours", "peer")}
        med = {s: {k: statistics.median(r[k] for r in ok[s]) for k in STAGES[analysis]}
               for s in ok if ok[s]}
        rss = {s: max(r["peak_rss_gb"] for r in ok[s]) for s in ok if ok[s]}
        failed = {s: next((r["status"] for r in sides[s] if r["status"] != "ok"), None)
                  for s in ("ours", "peer")}
        rho = sides.get("rho")
        stages = [*STAGES[analysis], "total"]
        for st in stages:
            cells, raw = [], []
            for s in ("ours", "peer"):
                if s not in med:
                    cells.append(failed[s] or "–")
                    raw.append(None)
                    continue
                value = sum(med[s].values()) if st == "total" else med[s][st]
                cells.append(f"{value:.1f}")
                raw.append(value)
            ratio = "–"
            if None not in raw and raw[0] > 0:
                q = raw[1] / raw[0]  # from the unrounded medians
                ratio = f"{q:.0f}×" if q >= 10 else f"{q:.1f}×"
            name = "total" if st == "total" else NAMES[st]
            last = st == "total"
            lines.append(
                f"| {n:,} | {analysis.upper()} | {name} | {cells[0]} | {cells[1]} | {ratio} | "
                + (f"{rss['ours']:.2f} | " if last and "ours" in rss else " | ")
                + (f"{rss['peer']:.2f} | " if last and "peer" in rss else " | ")
                + (f"{rho:.4f} |" if last and rho is not None else " |"))
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-genes", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=20 * 60, help="seconds per run")
    p.add_argument("--mem-limit-gb", type=float, default=20.0)
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    a = p.parse_args()
    peer_python = side_envs.python("peer")
    vers = versions(peer_python)
    work = Path(tempfile.mkdtemp(prefix="kompot-stages-"))
    started = time.perf_counter()
    results = {}
    for n in a.sizes:
        data = work / f"data_{n}.npz"
        make_data(n, a.n_genes, data)
        for analysis in ("da", "de"):
            sides = {"ours": [], "peer": []}
            for r in range(a.repeats):
                for side in ("ours", "peer"):  # alternate, so both see the same load
                    out = work / f"{side}_{analysis}_{n}_r{r}.npz"
                    rec = run(side, analysis, data, out, peer_python, a.timeout,
                              a.mem_limit_gb, work)
                    print(n, analysis, side, r, json.dumps(rec), flush=True)
                    sides[side].append(rec)
            if all(sides[s] and sides[s][0]["status"] == "ok" for s in ("ours", "peer")):
                sides["rho"] = agreement(analysis, work, n)
            results[n, analysis] = sides
    minutes = (time.perf_counter() - started) / 60
    argv = " ".join(sys.argv[1:])
    lines = [
        SECTION, "",
        f"Machine: {machine()}. Date: {date.today()}. Command: `python benchmarks/stages.py"
        f"{' ' + argv if argv else ''}` ({minutes:.0f} min). Ours at {vers['git']}; peer "
        f"kompot {vers['peer']}. Medians of {a.repeats} runs, each in a fresh process, ours "
        "and the peer's alternating. Same `toy(n_cells, 2000 genes, seed=0)` data, the same "
        f"{N_LANDMARKS} landmarks and length scales (ls_factor {DA_LS_FACTOR} for DA, "
        f"{DE_LS_FACTOR} for DE, on the union of the conditions) and `d` = 10 for both; DE "
        "with `use_empirical_variance=True`, `sigma=1`; Mahalanobis at the landmarks. "
        "Spearman: DA log fold change, DE Mahalanobis distance. Our DE fit includes the pooled "
        "prior mean (one more fit over all cells), which the peer does not have.",
        "", *table(results), "",
    ]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        target = HERE / "RESULTS.md"
        old = target.read_text()
        if SECTION in old:
            head, rest = old.split(SECTION, 1)
            nxt = rest.find("\n## ")
            own, after = (rest[:nxt], rest[nxt:]) if nxt >= 0 else (rest, "\n")
            # Keep the hand-written reading of the numbers.
            reading = own[own.find(READING):].rstrip() + "\n" if READING in own else ""
            target.write_text(head + text + reading + after)
        else:
            # After the tl-level comparison with the peer, before the DE accuracy.
            anchor = "## DE accuracy"
            if anchor not in old:
                raise SystemExit(f"RESULTS.md has no {anchor!r} section to put the table before")
            target.write_text(old.replace(anchor, text + "\n" + anchor, 1))

if __name__ == "__main__":
    main()
