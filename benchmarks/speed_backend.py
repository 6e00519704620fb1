"""numpy against JAX (``kompot.settings.compute_backend``) on the same data, in one process.

    python benchmarks/speed_backend.py                      # numpy vs jax, 3 repeats, full size
    python benchmarks/speed_backend.py --jax jax:gpu        # on a GPU machine
    python benchmarks/speed_backend.py --quick              # small sizes, a smoke run
    python benchmarks/speed_backend.py --write              # also write the RESULTS.md section

Three workloads, each timed on both backends with the same inputs:

- **Mahalanobis, per-gene Cholesky (path 3)**: ``mahalanobis_distances`` of
  ``--genes`` genes at ``--landmarks`` landmarks with a per-gene empirical
  diagonal and replicate factors (``K = 6``: 3 + 3 samples). The shared
  covariance is a Matérn-5/2 kernel matrix of the landmarks plus ``1e-3 I``.
- **Expression fit**: ``fit_function`` (weights and empirical variance) of
  ``--genes`` genes to ``--fit-cells`` cells on ``--landmarks`` landmarks,
  in blocks of 10,000 cells; the result compared is the fitted mean at the
  landmarks.
- **Prediction at cells**: ``DifferentialExpression.predict`` (both
  conditions' mean and std, fold change, z-scores; no replicate samples, so
  the fused kernel block is used) at ``--cells`` cells in chunks of
  ``--chunk``, from a fit to 10,000 cells (5,000 per condition) with
  ``--landmarks`` landmarks and ``--genes`` genes, fitted once with numpy.
  Per chunk only the mean fold change is kept, as the tl functions do
  without layers, so memory stays within one chunk.

numpy runs twice: as it is, and with BLAS limited to one thread (on a
loaded machine OpenBLAS's threads can collapse; JAX on the CPU runs its
LAPACK calls on one thread). Each workload runs once untimed per backend (JAX compiles on its first call
of each shape), then ``--repeats`` times; wall and CPU time
(``time.process_time``, all threads) are reported as medians, with the
largest difference between the backends' results relative to the largest
result (the mean fold change of a gene can be near 0). Not a test.
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
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import kompot  # noqa: E402
from kompot.core.function_gp import fit_function  # noqa: E402
from kompot.core.kernel import kernel_matrix, matern52  # noqa: E402
from kompot.core.mahalanobis import mahalanobis_distances  # noqa: E402

N_FIT_CELLS, N_DIMS, N_FACTORS = 10_000, 10, 6
TITLE = "## Compute backend: numpy against JAX (issue 15)"


def mahalanobis_inputs(m: int, G: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(m, N_DIMS))
    A = kernel_matrix(matern52(3.0), U, U) + 1e-3 * np.eye(m)
    delta = rng.normal(size=(m, G))
    v = rng.uniform(0.0, 0.2, size=(m, G))
    B = 0.3 * rng.normal(size=(G, m, N_FACTORS))
    return dict(delta=delta, shared_cov=A, diag=v, low_rank=B)


def fit_inputs(n: int, m: int, G: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_DIMS))
    Y = np.sin(X[:, :1] + rng.normal(size=(1, G))) + 0.3 * rng.normal(size=(n, G))
    return X, Y, X[rng.choice(n, m, replace=False)]


def fitted_model(m: int, G: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_FIT_CELLS, N_DIMS))
    Y = np.sin(X[:, :1] + rng.normal(size=(1, G))) + 0.3 * rng.normal(size=(N_FIT_CELLS, G))
    half = N_FIT_CELLS // 2
    de = kompot.DifferentialExpression(n_landmarks=m, random_state=0)
    de.fit(X[:half], Y[:half], X[half:], Y[half:] + 0.2 * X[half:, 1:2])
    return de


def predict_cells(de, X: np.ndarray, chunk: int) -> np.ndarray:
    """Mean fold change over all cells, predicted chunk by chunk."""
    total = 0.0
    for start in range(0, len(X), chunk):
        total = total + de.predict(X[start:start + chunk], progress=False)["fold_change"].sum(0)
    return total / len(X)


def timed(fn, backend: str, repeats: int, blas_threads: int | None = None) -> dict:
    kompot.settings.compute_backend = backend
    try:
        with threadpool_limits(blas_threads, user_api="blas"):
            result = fn()  # warm-up: imports, JAX compilation
            wall, cpu = [], []
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                result = fn()
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
    finally:
        kompot.settings.compute_backend = "numpy"
    return dict(result=result, wall=statistics.median(wall), cpu=statistics.median(cpu),
                walls=wall)


def device_name(backend: str) -> str:
    if backend == "numpy":
        return "numpy (CPU)"
    import jax

    platform_name = backend.partition(":")[2]
    device = jax.devices(platform_name)[0] if platform_name else jax.devices()[0]
    return f"{backend} on {device.device_kind} ({device.platform}), jax {jax.__version__}"


def run(args) -> list[dict]:
    rows = []
    inputs = mahalanobis_inputs(args.landmarks, args.genes)
    workloads = [(f"Mahalanobis path 3, {args.landmarks} landmarks x {args.genes:,} genes, "
                  f"K={N_FACTORS}", lambda: mahalanobis_distances(**inputs))]
    if args.fit_cells:
        X_fit, Y_fit, U = fit_inputs(args.fit_cells, args.landmarks, args.genes)
        workloads.append((f"expression fit, {args.fit_cells:,} cells x {args.genes:,} genes on "
                          f"{args.landmarks} landmarks",
                          lambda: fit_function(X_fit, Y_fit, U, matern52(3.0)).mean(U)))
    if args.cells:
        de = fitted_model(args.landmarks, args.genes)
        X_new = np.random.default_rng(1).normal(size=(args.cells, N_DIMS))
        workloads.append((f"prediction, {args.cells:,} cells x {args.genes:,} genes from "
                          f"{args.landmarks} landmarks",
                          lambda: predict_cells(de, X_new, args.chunk)))
    for name, fn in workloads:
        ref = timed(fn, "numpy", args.repeats)
        runs = {"numpy": ref, "numpy, 1 BLAS thread": timed(fn, "numpy", args.repeats, 1),
                args.jax: timed(fn, args.jax, args.repeats)}
        diff = {k: float(np.max(np.abs(r["result"] - ref["result"])) /
                         np.max(np.abs(ref["result"]))) for k, r in runs.items()}
        rows.append(dict(name=name, runs=runs, diff=diff[args.jax]))
        print(name + ": " + ", ".join(f"{k} {r['wall']:.2f} s wall ({r['cpu']:.1f} s CPU, "
                                      f"diff {diff[k]:.1e})" for k, r in runs.items()), flush=True)
    return rows


def section(args, rows, loads) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        TITLE, "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python "
        f"{platform.python_version()}; {device_name(args.jax)}; date {date.today()}. "
        f"1-minute load average {loads[0]:.1f} before and {loads[1]:.1f} after.",
        f"Command: `python benchmarks/speed_backend.py --jax {args.jax} --repeats {args.repeats} "
        f"--landmarks {args.landmarks} --genes {args.genes} --fit-cells {args.fit_cells} "
        f"--cells {args.cells} --chunk {args.chunk}`. Medians of {args.repeats} runs after one untimed warm-up run "
        "per backend; CPU time counts all threads.", "",
        "Wall (CPU) seconds; numpy with one BLAS thread is numpy under "
        "`threadpoolctl.threadpool_limits(1, 'blas')` (the same code).", "",
        f"| workload | numpy | numpy, 1 BLAS thread | {args.jax} | speed-up of {args.jax} over "
        "numpy (over 1 thread) | max rel. diff |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = r["runs"]
        cells = " | ".join(f"{t['wall']:.2f} ({t['cpu']:.1f})" for t in runs.values())
        single = runs["numpy, 1 BLAS thread"]["wall"]
        lines.append(f"| {r['name']} | {cells} | {runs['numpy']['wall'] / runs[args.jax]['wall']:.2f}x "
                     f"({single / runs[args.jax]['wall']:.2f}x) | {r['diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax", default="jax", help="the JAX backend: jax, jax:cpu or jax:gpu")
    parser.add_argument("--landmarks", type=int, default=500)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=100_000, help="0: skip the prediction")
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--fit-cells", type=int, default=50_000, help="0: skip the fit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="100 landmarks, 200 genes, 5,000 cells to fit and to predict")
    parser.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    args = parser.parse_args()
    if args.quick:
        args.landmarks, args.genes, args.cells, args.fit_cells = 100, 200, 5000, 5000
    before = os.getloadavg()[0]
    rows = run(args)
    text = section(args, rows, (before, os.getloadavg()[0]))
    print(text)
    if args.write:
        from _results import write_section

        write_section(TITLE, text)


if __name__ == "__main__":
    main()
