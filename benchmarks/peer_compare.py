"""Speed and agreement of our kompot.tl against the published kompot 0.8.0 ("the peer").

    python benchmarks/peer_compare.py            # 2k (3 repeats, also with samples), 10k, 50k (ours only)
    python benchmarks/peer_compare.py --quick    # 2k cells, 1 repeat
    python benchmarks/peer_compare.py --sizes 1000 --n-genes 200 --repeats 1 --no-write   # smoke

The peer lives in its own virtual environment (``benchmarks/.peer-venv``,
``pip install kompot==0.8.0``) and runs only in subprocesses
(``peer_child.py``) started from a temporary directory outside the source
tree; our side runs in ``peer_ours_child.py``. Every stage (DA; DE with
Mahalanobis distances; DE with its FDR) is one ``tl``-level call timed end to
end in a fresh process, so the peak RSS is that stage's alone. Our DA run
chooses the landmarks and the length scale; the peer is given the same ones.
Appends (or replaces) the section "Speed and agreement against kompot 0.8.0"
of ``benchmarks/RESULTS.md``; raw runs go to ``benchmarks/_runs/``.
Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import side_envs
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

import kompot

HERE = Path(__file__).resolve().parent
SECTION = "## Speed and agreement against kompot 0.8.0"
READING = "### Reading"
RUNNING: list[subprocess.Popen] = []  # the child in flight, killed if we are stopped
STAGES = ("da", "de", "de_fdr")
STAGE_NAMES = {"da": "DA (fit + predict)", "de": "DE (fit + predict + Mahalanobis)",
               "de_fdr": "DE with FDR", "total": "end to end (DA + DE with FDR)"}


# ----------------------------------------------------------------- running children
def run_child(side, stage, cfg, work, repeat, timeout):
    """One stage in a fresh process; returns the child's JSON record (or the failure)."""
    tag = f"{side}_{stage}_r{repeat}"
    out = work / f"{tag}.npz"
    if side == "ours":
        cmd = [sys.executable, str(HERE / "peer_ours_child.py"), "--stage", stage,
               "--data", str(cfg["data"]), "--out", str(out)]
        cmd += ["--hyper", str(work / f"hyper_{stage}_r{repeat}")]
        cwd, env = HERE.parent, dict(os.environ)
    else:
        # The landmarks and length scale of our first call of this stage (DA and
        # DE use different ls_factor defaults), else of any stage.
        params = next(work / f"hyper_{st}_r0.json" for st in (stage, *STAGES)
                      if (work / f"hyper_{st}_r0.json").exists())
        cmd = [str(cfg["peer_python"]), str(HERE / "peer_child.py"), "--stage", stage,
               "--data", str(cfg["data"]), "--params", str(params), "--out", str(out)]
        cmd += [f"--own-{x}" for x in cfg.get("peer_own", ())]
        if cfg.get("peer_defaults"):
            cmd.append("--defaults")
        # Outside the source tree, so that `import kompot` is the published package.
        cwd, env = work, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if cfg.get("sample_col"):
        cmd += ["--sample-col", cfg["sample_col"]]
    if cfg.get("no_empirical_variance") and stage != "da":
        cmd.append("--no-empirical-variance")
    t0 = time.perf_counter()
    # Output to files, not pipes: a child that logs a lot must never block on a full pipe.
    with open(work / f"{tag}.stdout", "w") as fo, open(work / f"{tag}.stderr", "w") as fe:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe,
                                start_new_session=True)
        RUNNING[:] = [proc]
        stopped = watch(proc, timeout, cfg["mem_limit_gb"])
        RUNNING.clear()
    process_s = time.perf_counter() - t0
    stdout = (work / f"{tag}.stdout").read_text()
    stderr = (work / f"{tag}.stderr").read_text()
    both = stdout + "\n" + stderr  # the peer logs to either stream
    logged = sorted({line.split("]", 2)[-1].strip()[:160] for line in both.splitlines()
                     if "[WARNING" in line or "[ERROR" in line})
    if stopped:
        rec = {"side": side, "stage": stage, "status": stopped, "process_s": process_s}
    elif proc.returncode != 0:
        rec = {"side": side, "stage": stage, "status": "error", "process_s": process_s,
               "error": stderr.strip().splitlines()[-5:]}
    else:
        rec = {**json.loads(stdout.strip().splitlines()[-1]), "status": "ok",
               "process_s": process_s, "logged_warnings": logged, "npz": str(out)}
    print(json.dumps({k: v for k, v in rec.items() if k != "npz"}), flush=True)
    return rec


def watch(proc, timeout, mem_limit_gb):
    """Wait for the child; kill its process group past the time or memory limit.

    The memory cap protects a shared machine: the child's resident memory is
    read from /proc twice a second. Returns None, "timeout" or "memory cap".
    """
    start = time.monotonic()
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        reason = None
        if time.monotonic() - start > timeout:
            reason = "timeout"
        else:
            try:
                rss_kb = next(int(line.split()[1]) for line in status_file.read_text().splitlines()
                              if line.startswith("VmRSS:"))
            except (OSError, StopIteration, ValueError):
                rss_kb = 0
            if rss_kb / 1024**2 > mem_limit_gb:
                reason = "memory cap"
        if reason:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return reason
        time.sleep(0.5)
    return None


def run_config(cfg, work, timeout):
    """All stages of one configuration; within a repeat each stage runs ours, then the peer's,
    so that the two sides of a ratio see the same load on the machine."""
    sides = ("ours", "peer") if cfg["peer"] else ("ours",)
    stages = cfg.get("stages", STAGES)
    runs = {(s, st): [] for s in sides for st in stages}
    for r in range(cfg["repeats"]):
        for stage in stages:
            for side in sides:
                if side == "peer" and stage == "de_fdr" and cfg.get("sample_col"):
                    # With sample_col the peer's default is no FDR (null_genes=0): its
                    # "DE with FDR" call would repeat the DE stage.
                    runs.pop((side, stage), None)
                    continue
                runs[side, stage].append(run_child(side, stage, cfg, work, r, timeout))
    return runs


# ----------------------------------------------------------------- summaries
def summarise(runs):
    """Median call time and peak RSS per (side, stage) over the successful repeats."""
    summary = {}
    for key, recs in runs.items():
        ok = [r for r in recs if r["status"] == "ok"]
        failed = [r["status"] for r in recs if r["status"] != "ok"]
        summary[key] = {
            "time_s": statistics.median(r["call_s"] for r in ok) if ok else None,
            "rss_gb": statistics.median(r["peak_rss_gb"] for r in ok) if ok else None,
            "n_ok": len(ok), "failed": failed,
            "warnings": sorted({w for r in ok for w in r["warnings"] + r["logged_warnings"]}),
        }
    for side in {k[0] for k in runs}:
        # End to end is DA + DE with FDR; where a side has no FDR stage (the peer
        # with samples), its DE without FDR stands in, and the table says so.
        da = summary.get((side, "da"))
        fdr = summary.get((side, "de_fdr"), summary.get((side, "de")) if side == "peer" else None)
        if da and fdr:
            both = da["time_s"] is not None and fdr["time_s"] is not None
            summary[side, "total"] = {
                "time_s": da["time_s"] + fdr["time_s"] if both else None,
                "rss_gb": max(da["rss_gb"], fdr["rss_gb"]) if both else None,
                "n_ok": min(da["n_ok"], fdr["n_ok"]), "failed": da["failed"] + fdr["failed"],
                "warnings": [],
            }
    return summary


def agreement(runs, adata):
    """Spearman ours vs peer (first successful repeat) and each side's accuracy on the truth."""
    def first(side, stage):
        ok = [r for r in runs.get((side, stage), []) if r["status"] == "ok"]
        return np.load(ok[0]["npz"]) if ok else None

    res = {}
    da_region = adata.obs["da_region"].to_numpy(bool)
    is_de = adata.var["is_de"].to_numpy(bool)
    o, p = first("ours", "da"), first("peer", "da")
    for side, f in (("ours", o), ("peer", p)):
        if f is not None:
            res[f"auroc_da_{side}"] = roc_auc_score(da_region, np.abs(f["zscore"]))
            res[f"auroc_da_lfc_{side}"] = roc_auc_score(da_region, np.abs(f["lfc"]))
    if o is not None and p is not None:
        res["rho_lfc"] = spearmanr(o["lfc"], p["lfc"])[0]
        res["rho_z"] = spearmanr(o["zscore"], p["zscore"])[0]
    o, p = first("ours", "de"), first("peer", "de")
    if o is not None:
        res["auroc_de_ours"] = roc_auc_score(is_de, o["mahalanobis"])
    if p is not None:
        res["auroc_de_peer"] = roc_auc_score(is_de, p["mahalanobis"])
    if o is not None and p is not None:
        res["rho_mahalanobis"] = spearmanr(o["mahalanobis"], p["mahalanobis"])[0]
        res["median_ratio_mahalanobis"] = float(np.median(o["mahalanobis"] / p["mahalanobis"]))
    for side in ("ours", "peer"):
        f = first(side, "de_fdr")
        if f is not None and f["is_de"].size:
            res[f"calls_{side}"] = int(f["is_de"].sum())
            res[f"true_calls_{side}"] = int((f["is_de"] & is_de).sum())
    res["n_true_de"] = int(is_de.sum())
    return res


def check_shared_hyper(work):
    """Every call of ours chose the same landmarks, and each analysis (DA; DE with or
    without FDR) the same length scale: those the peer got. Returns the DA and DE choices."""
    files = sorted(work.glob("hyper_*.json"))
    if not files:
        return None
    first = json.loads(files[0].read_text())
    lm = np.load(first["landmarks"])
    chosen = {}
    for f in files:
        other = json.loads(f.read_text())
        kind = "da" if f.name.startswith("hyper_da_") else "de"
        ref = chosen.setdefault(kind, other)
        assert math.isclose(other["ls"], ref["ls"], rel_tol=1e-12), f"length scale differs: {f}"
        assert np.array_equal(np.load(other["landmarks"]), lm), f"landmarks differ: {f}"
    ref = chosen.get("da", first)
    return {**ref, "ls_da": chosen.get("da", {}).get("ls"), "ls_de": chosen.get("de", {}).get("ls"),
            "ls_factor_da": chosen.get("da", {}).get("ls_factor"),
            "ls_factor_de": chosen.get("de", {}).get("ls_factor")}


# ----------------------------------------------------------------- report
def machine():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{mem:.0f} GiB, Python {platform.python_version()}")


def fmt(x, spec=".1f", missing="–"):
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def peer_cell(s, timeout, mem_limit_gb):
    if s is None:
        return "not run"
    if s["time_s"] is None:
        if "timeout" in s["failed"]:
            return f"timeout (> {timeout / 60:.0f} min)"
        if "memory cap" in s["failed"]:
            return f"stopped at the memory cap (> {mem_limit_gb:.0f} GB)"
        return "failed"
    return fmt(s["time_s"])


def speedup(ratio):
    if ratio is None:
        return "–"
    x = 1 / ratio
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def speed_table(results, timeout, mem_limit_gb):
    lines = [
        "| cells | genes | configuration | stage | ours (s) | peer (s) | ours/peer | peer/ours | "
        "ours peak RSS (GB) | peer peak RSS (GB) | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        cfg, summ = res["config"], res["summary"]
        if not cfg["main"]:
            continue
        what = "defaults" if cfg.get("peer_defaults") else "shared"
        if cfg.get("sample_col"):
            what += f", sample_col={cfg['sample_col']!r}"
        for stage in (*cfg.get("stages", STAGES), "total"):
            o = summ.get(("ours", stage))
            if o is None:
                continue
            p = summ.get(("peer", stage)) if cfg["peer"] else None
            peer_text = peer_cell(p, timeout, mem_limit_gb)
            if cfg["peer"] and cfg.get("sample_col") and stage == "de_fdr":
                peer_text = "no FDR with samples (default)"
            elif cfg["peer"] and cfg.get("sample_col") and stage == "total" and p:
                peer_text += " (DA + DE, no FDR)"
            ratio = (o["time_s"] / p["time_s"] if p and p["time_s"] and o["time_s"] else None)
            lines.append(
                f"| {cfg['n_cells']:,} | {cfg['n_genes']:,} | {what} | "
                f"{STAGE_NAMES[stage]} | {fmt(o['time_s'])} | {peer_text} | "
                f"{fmt(ratio, '.2f')} | {speedup(ratio)} | "
                f"{fmt(o['rss_gb'], '.2f')} | {fmt(p['rss_gb'] if p else None, '.2f')} | "
                f"{cfg['repeats']} |"
            )
    return lines


def agreement_table(results):
    lines = [
        "| configuration | Spearman DA LFC | Spearman DA z | Spearman DE Mahalanobis | "
        "median D ours/peer | DA AUROC \\|z\\| ours / peer | DA AUROC \\|LFC\\| ours / peer | "
        "DE AUROC ours / peer | DE calls (true) ours / peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        cfg, a = res["config"], res["agreement"]
        if not cfg["peer"]:
            continue
        calls = " / ".join(
            f"{a[f'calls_{s}']} ({a[f'true_calls_{s}']})" if f"calls_{s}" in a else "–"
            for s in ("ours", "peer"))
        lines.append(
            f"| {cfg['label']} | {fmt(a.get('rho_lfc'), '.4f')} | {fmt(a.get('rho_z'), '.4f')} | "
            f"{fmt(a.get('rho_mahalanobis'), '.4f')} | {fmt(a.get('median_ratio_mahalanobis'), '.2f')} | "
            f"{fmt(a.get('auroc_da_ours'), '.3f')} / {fmt(a.get('auroc_da_peer'), '.3f')} | "
            f"{fmt(a.get('auroc_da_lfc_ours'), '.3f')} / {fmt(a.get('auroc_da_lfc_peer'), '.3f')} | "
            f"{fmt(a.get('auroc_de_ours'), '.3f')} / {fmt(a.get('auroc_de_peer'), '.3f')} | "
            f"{calls} |"
        )
    return lines


def projection(results):
    """The peer at 50k cells where it did not finish: time and memory from its 2k -> 10k growth."""
    def main_summary(n):
        return next((r["summary"] for r in results
                     if r["config"]["n_cells"] == n and r["config"]["peer"] and r["config"]["main"]
                     and not r["config"].get("sample_col") and not r["config"].get("peer_defaults")),
                    None)

    s2, s10, s50 = main_summary(2000), main_summary(10_000), main_summary(50_000)
    if not s2 or not s10:
        return {}
    out = {}
    for stage in (*STAGES, "total"):
        a2, a10 = s2.get(("peer", stage)), s10.get(("peer", stage))
        done = s50 and (s50.get(("peer", stage)) or {}).get("time_s") is not None
        if done or not a2 or not a10 or a2["time_s"] is None or a10["time_s"] is None:
            continue
        grow = {k: math.log(a10[k] / a2[k]) / math.log(5) for k in ("time_s", "rss_gb")}
        out[stage] = {"alpha": grow["time_s"], "t50_s": a10["time_s"] * 5 ** grow["time_s"],
                      "rss50_gb": a10["rss_gb"] * 5 ** grow["rss_gb"],
                      "tried": bool(s50 and ("peer", stage) in s50)}
    return out


def write_section(text):
    """Replace this benchmark's section (keeping its hand-written "### Reading"), or append it."""
    target = HERE / "RESULTS.md"
    previous = target.read_text() if target.exists() else "# Benchmark results\n"
    if SECTION in previous:
        head, after = previous.split(SECTION, 1)
        nxt = after.find("\n## ")
        rest = after[nxt:] if nxt >= 0 else ""
        own = after[:nxt] if nxt >= 0 else after
        reading = own[own.find(READING):].rstrip() + "\n" if READING in own else ""
        target.write_text(head + text + ("\n" + reading if reading else "") + rest)
    else:
        target.write_text(previous.rstrip() + "\n\n" + text)


def versions(peer_python):
    code = ("import importlib.metadata as m; print(' '.join(m.version(p) for p in "
            "('kompot', 'mellon', 'jax')))")
    peer = subprocess.run([str(peer_python), "-c", code], cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=True).stdout.split()
    import jax
    import mellon
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kompot"], cwd=HERE.parent,
                               capture_output=True, text=True, check=True).stdout.strip()
        git = f"commit {head}" + (" with uncommitted changes in kompot/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        git = "an unknown commit"
    return {"ours": kompot.__version__, "git": git, "peer": peer[0], "peer_mellon": peer[1],
            "peer_jax": peer[2], "mellon": mellon.__version__, "jax": jax.__version__}


# ----------------------------------------------------------------- main
def configurations(a):
    base = {"n_genes": a.n_genes, "peer_python": a.peer_python, "main": True,
            "mem_limit_gb": a.mem_limit_gb}
    if a.sizes:
        return [{**base, "n_cells": n, "repeats": a.repeats or 1, "peer": True} for n in a.sizes]
    if a.quick:
        return [{**base, "n_cells": 2000, "repeats": a.repeats or 1, "peer": True}]
    full = [
        {**base, "n_cells": 2000, "repeats": a.repeats or 3, "peer": True},
        {**base, "n_cells": 2000, "repeats": 1, "peer": True, "sample_col": "sample"},
        # The peer's replicate variance keeps a landmarks x landmarks matrix per gene;
        # with fewer genes it fits in memory.
        {**base, "n_cells": 2000, "n_genes": min(a.n_genes, 200), "repeats": 1, "peer": True,
         "sample_col": "sample"},
        {**base, "n_cells": 10_000, "repeats": a.repeats or 3, "peer": True},
        # Each side at its own defaults (the peer: 5,000 DE landmarks, ls_factor=10,
        # mellon's choices for DA, no empirical variance): what a user gets untuned.
        {**base, "n_cells": 2000, "repeats": 1, "peer": True, "peer_defaults": True},
        {**base, "n_cells": 10_000, "repeats": 1, "peer": True, "peer_defaults": True},
        # The peer at 50k only under the memory cap (its DE layers grow with cells x genes).
        {**base, "n_cells": 50_000, "repeats": 1, "peer": not a.no_peer_50k},
        # Agreement checks (timed too, but not part of the speed comparison):
        # the DE model without the empirical-variance term, where the peer
        # approximates and we solve exactly, and the peer with its own
        # length scale (and dimensionality) instead of ours.
        {**base, "n_cells": 2000, "repeats": 1, "peer": True, "main": False,
         "no_empirical_variance": True, "stages": ("de",)},
        {**base, "n_cells": 2000, "repeats": 1, "peer": True, "main": False,
         "peer_own": ("ls", "d"), "stages": ("da", "de")},
        {**base, "n_cells": 2000, "repeats": 1, "peer": True, "main": False,
         "peer_own": ("d",), "stages": ("da",)},
    ]
    if a.smoke:  # every code path on tiny data, to check the plumbing
        return [{**c, "n_cells": 1000, "repeats": 1} for c in full]
    return full


def truth_only(adata):
    """The planted truth, without the expression matrix."""
    import anndata as ad

    return ad.AnnData(obs=adata.obs[["da_region"]].copy(), var=adata.var[["is_de"]].copy())


def label(cfg):
    parts = [f"{cfg['n_cells']:,} cells × {cfg['n_genes']:,} genes"]
    if cfg.get("peer_defaults"):
        parts.append("each side at its own defaults")
    if cfg.get("sample_col"):
        parts.append(f"sample_col={cfg['sample_col']!r}")
    if cfg.get("no_empirical_variance"):
        parts.append("both with `use_empirical_variance=False`")
    own = {"ls": "length scale", "d": "density dimensionality d"}
    if cfg.get("peer_own"):
        parts.append("peer with its own " + " and ".join(own[x] for x in cfg["peer_own"]))
    return ", ".join(parts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2k cells, 1 repeat")
    p.add_argument("--sizes", type=int, nargs="+", help="only these cell counts (peer on)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--n-genes", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=25 * 60, help="seconds per stage and side")
    p.add_argument("--mem-limit-gb", type=float, default=12.0,
                   help="kill a stage whose resident memory passes this (shared machine)")
    p.add_argument("--peer-python", type=Path, default=None,
                   help="interpreter with kompot 0.8.0 (default: benchmarks/.peer-venv, "
                        "created on first use)")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--no-peer-50k", action="store_true", help="run only ours at 50k cells")
    p.add_argument("--smoke", action="store_true",
                   help="all configurations at 1,000 cells, 1 repeat (use with --n-genes 200 --no-write)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()
    if a.peer_python is None:
        a.peer_python = side_envs.python("peer")
    elif not a.peer_python.exists():
        raise SystemExit(f"{a.peer_python} not found; leave out --peer-python to create the default.")
    argv = " ".join(sys.argv[1:])
    command = f"python benchmarks/peer_compare.py{' ' + argv if argv else ''}"
    vers = versions(a.peer_python)
    print(vers, flush=True)
    root = Path(tempfile.mkdtemp(prefix="kompot-peer-compare-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` cleans up
    started = time.perf_counter()
    results = []
    try:
        for i, cfg in enumerate(configurations(a)):
            cfg["label"] = label(cfg)
            work = root / f"config{i}"
            work.mkdir()
            adata = kompot.datasets.toy(n_cells=cfg["n_cells"], n_genes=cfg["n_genes"], seed=0)
            cfg["data"] = work / "data.h5ad"
            adata.write_h5ad(cfg["data"])
            adata = truth_only(adata)  # keep the parent small while the children run
            print(f"== {cfg['label']}, {cfg['repeats']} repeat(s), peer {'on' if cfg['peer'] else 'off'}",
                  flush=True)
            t0 = time.perf_counter()
            runs = run_config(cfg, work, a.timeout)
            hyper = check_shared_hyper(work)
            results.append({
                "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()},
                "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()},
                "summary": summarise(runs), "agreement": agreement(runs, adata),
                "hyper": hyper, "wall_s": time.perf_counter() - t0,
            })
            print(json.dumps(results[-1]["agreement"]), flush=True)
    finally:
        for proc in RUNNING:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    total_min = (time.perf_counter() - started) / 60

    runs_dir = HERE / "_runs"
    runs_dir.mkdir(exist_ok=True)
    dump = [{**r, "summary": {f"{k[0]}/{k[1]}": v for k, v in r["summary"].items()}}
            for r in results]
    (runs_dir / "peer_compare.json").write_text(json.dumps(
        {"command": command, "date": str(date.today()), "machine": machine(),
         "versions": vers, "timeout_s": a.timeout, "total_min": total_min, "results": dump},
        indent=1, default=float))
    text = report(results, a, command, vers, total_min)
    print(text)
    if not a.no_write:
        write_section(text)


def _fmt_ls(ls):
    return "–" if ls is None else f"{ls:.3f}"


def report(results, a, command, vers, total_min):
    hyper = next(({**r["hyper"], "n_cells": r["config"]["n_cells"]} for r in results
                  if r["hyper"]), None)
    proj = projection(results)
    lines = [
        SECTION, "",
        f"Machine: {machine()}. Date: {date.today()}. Command: `{command}` "
        f"({total_min:.0f} min in all). Ours: kompot {vers['ours']} at {vers['git']} "
        f"(mellon {vers['mellon']}, "
        f"jax {vers['jax']}); peer: kompot {vers['peer']} from the package index in its own "
        f"virtual environment (mellon {vers['peer_mellon']}, jax {vers['peer_jax']}).",
        f"Data: `kompot.datasets.toy(n_cells, n_genes, seed=0)` (n_genes={a.n_genes} unless the "
        "table says otherwise), 10-D states in "
        "`obsm['DM_EigenVectors']`, 3 samples per condition. Each stage is one `tl`-level call "
        "timed end to end (JIT compilation included, reading the `.h5ad` and importing excluded) "
        "in a fresh process; peak RSS is that process's `ru_maxrss`; times are medians over the "
        "repeats and the ratio compares the two sides within this one invocation. Peer runs "
        f"stop after {a.timeout / 60:.0f} min.",
    ]
    if hyper:
        lines.append(
            f"Shared hyper-parameters: ours `kompot.tl` defaults (n_landmarks={hyper['n_landmarks']}, "
            f"ls_factor {hyper['ls_factor_da']} for DA and {hyper['ls_factor_de']} for DE); the "
            "landmarks and the length scales our calls chose (on the union of both conditions) "
            "are passed to the peer as `landmarks=` and `ls=` (at "
            f"{hyper['n_cells']:,} cells: DA ls = {_fmt_ls(hyper['ls_da'])}, DE ls = "
            f"{_fmt_ls(hyper['ls_de'])}), with `d={hyper['d']}` for its density "
            "(our default, the number of features). DE on both sides: `sigma=1`, "
            "`use_empirical_variance=True` (our default; the peer's default is `False`)."
        )
    lines += ["", "### Speed", "", *speed_table(results, a.timeout, a.mem_limit_gb), ""]
    if proj:
        bits = "; ".join(
            f"{STAGE_NAMES[s]}: ~{v['t50_s']:.0f} s and ~{v['rss50_gb']:.0f} GB "
            f"({'stopped' if v['tried'] else 'not run'})" for s, v in proj.items())
        lines += [
            "Where the peer did not finish at 50,000 cells, its 2k → 10k growth (time and peak "
            f"RSS ∝ cells^exponent) projects: {bits}.", "",
        ]
    checks = [r for r in results if not r["config"]["main"]]
    if checks:
        lines += ["Timings of the agreement checks below (one run each, seconds, ours / peer):", ""]
        for r in checks:
            bits = ", ".join(
                f"{STAGE_NAMES[st]} {fmt(r['summary'][('ours', st)]['time_s'])} / "
                f"{fmt(r['summary'].get(('peer', st), {}).get('time_s'))}"
                for st in r["config"].get("stages", STAGES))
            lines.append(f"- {r['config']['label']}: {bits}")
        lines.append("")
    lines += ["### Agreement (ours vs peer, same data)", "", *agreement_table(results), ""]
    warn = sorted({w for r in results for k, s in r["summary"].items()
                   if k[0] == "peer" for w in s["warnings"]})
    if warn:
        lines += ["Warnings the peer emitted (Python warnings and logged WARNING lines):", ""]
        lines += [f"- `{w}`" for w in warn] + [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
