"""Planted effects: the calls a user reads keep their false-discovery proportion.

Ten seeds of ``kompot.datasets.toy`` (2,000 cells, 200 genes, 20 planted DE
genes, a planted enriched and a planted depleted region), analysed with the
``kompot.tl`` defaults (fewer landmarks, for time). For each nominal level q
the observed false-discovery proportion, averaged over the seeds, must stay
within the Monte Carlo allowance of q, and the planted effects must still be
found.

Allowance (``tests/_allowance.py``): a procedure at its nominal level has
an expected FDP of at most q, but ten seeds scatter around it, so "mean FDP
<= q" would fail such a procedure about half of the time. The seeds are
independent, the calls within a seed are not (the DA calls come in regions),
so the test takes a one-sided t bound (99 %) on the seeds' mean FDP. It must
also be able to fail: a procedure at 2q with the observed seed-to-seed
spread must fail with probability >= 0.5. Measured (cells / replicates):
mean FDP 0.030 / 0.005 (DE; the replicates with moderation, 0.024 without)
and 0.017 / 0.018 (DA) at q = 0.05, allowances 0.082 / 0.065 and 0.065 /
0.071, power against 2q 0.92 / 0.79 (replicates: measured before
moderation) and 1.0 / 1.0.

"Without replicates" uses ``toy(replicate_effects=False)``: samples of a
condition are exchangeable, which is what an analysis without ``sample_col``
assumes. "With replicates" passes ``sample_col`` on the default toy data,
whose samples differ in abundance, expression and depth.
"""

import numpy as np
import pytest
from _allowance import mean_allowance, mean_power
from tl_testing import C1, C2

import kompot
from kompot._keys import DAKeys, DEKeys

SEEDS = range(10)
LEVELS = (0.05, 0.10)
DATA = {"n_cells": 2000, "n_genes": 200}
RUN = {"n_landmarks": 300, "progress": False}


def _auroc(score, truth):
    """Probability that a planted gene outranks a null gene (ties count half)."""
    pos, neg = score[truth], score[~truth]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return greater + 0.5 * ties


def _de_runs(replicates):
    runs = []
    for seed in SEEDS:
        adata = kompot.datasets.toy(**DATA, seed=seed, replicate_effects=replicates)
        kompot.tl.compute_differential_expression(
            adata, "condition", C1, C2, store_layers=False,
            sample_col="sample" if replicates else None, **RUN,
        )
        keys = DEKeys("kompot_de", C1, C2)
        runs.append({
            "truth": adata.var["is_de"].to_numpy(),
            "tail_fdr": adata.var[keys.tail_fdr].to_numpy(),
            "is_de": adata.var[keys.is_de].to_numpy(),  # the call at the default q = 0.05
            "mahalanobis": adata.var[keys.mahalanobis].to_numpy(),
        })
    return runs


def _da_runs(replicates):
    runs = []
    for seed in SEEDS:
        adata = kompot.datasets.toy(**DATA, seed=seed, replicate_effects=replicates)
        runs.append({"replicates": replicates,
                     # the normalised densities' log ratio: planted + background
                     "truth": adata.obs["true_log_density_ratio"].to_numpy()
                     + adata.uns["toy_truth"]["background_log_density_ratio"]})
        for q in LEVELS:  # the defaults, at each level: the direction column is what users read
            kompot.tl.compute_differential_abundance(
                adata, "condition", C1, C2, fdr_threshold=q,
                sample_col="sample" if replicates else None, **RUN,
            )
            keys = DAKeys("kompot_da", C1, C2)
            runs[-1][q] = adata.obs[keys.direction].astype(str).to_numpy()
        runs[-1]["lfc"] = adata.obs[keys.lfc].to_numpy()
    return runs


@pytest.fixture(scope="module", params=[False, True], ids=["cells", "replicates"])
def de_runs(request):
    return _de_runs(request.param)


@pytest.fixture(scope="module", params=[False, True], ids=["cells", "replicates"])
def da_runs(request):
    return _da_runs(request.param)


def _assert_within_allowance(fdp, q):
    bound = mean_allowance(fdp, q)
    assert np.mean(fdp) <= bound, f"mean FDP {np.mean(fdp):.3f} above {bound:.3f} (q = {q})"
    # A procedure at twice the nominal level would fail more often than not.
    assert mean_power(fdp, q, 2 * q) >= 0.5


def test_de_calls_keep_the_fdr(de_runs):
    for q in LEVELS:
        fdp = []
        for run in de_runs:
            # The stored call at the default level, the stored tail FDR at the other.
            called = run["is_de"] if q == 0.05 else run["tail_fdr"] <= q
            fdp.append((called & ~run["truth"]).sum() / max(called.sum(), 1))
        _assert_within_allowance(fdp, q)


def test_de_finds_the_planted_genes(de_runs):
    # Measured: AUROC 0.998 / 0.990 and TPR at q = 0.10 0.93 / 0.83 (cells / replicates).
    auroc = [_auroc(r["mahalanobis"], r["truth"]) for r in de_runs]
    assert np.mean(auroc) >= 0.95
    tpr = [((r["tail_fdr"] <= 0.10) & r["truth"]).sum() / r["truth"].sum() for r in de_runs]
    assert np.mean(tpr) >= 0.7


def test_da_direction_calls_keep_the_fdr(da_runs):
    # A call is false where the true log ratio has the other sign (or is 0).
    for q in LEVELS:
        fdp = []
        for run in da_runs:
            direction = run[q]
            called = direction != "neutral"
            sign = np.where(direction == "up", 1.0, -1.0)
            false = called & (sign != np.sign(run["truth"]))
            fdp.append(false.sum() / max(called.sum(), 1))
        _assert_within_allowance(fdp, q)


def test_da_finds_the_planted_regions(da_runs):
    # Cells with at least half of the full planted effect (|log ratio| >= 1)
    # outrank cells with none by |lfc|, and most of them are called at q = 0.10.
    auroc, tpr = [], []
    for run in da_runs:
        planted = np.abs(run["truth"]) >= 1.0
        keep = planted | (np.abs(run["truth"]) < 0.5)
        auroc.append(_auroc(np.abs(run["lfc"])[keep], planted[keep]))
        tpr.append(((run[0.10] != "neutral") & planted).sum() / planted.sum())
    assert np.mean(auroc) >= 0.9
    assert np.mean(tpr) >= (0.5 if da_runs[0]["replicates"] else 0.8)
