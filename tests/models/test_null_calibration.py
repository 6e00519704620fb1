"""The permutation nulls are calibrated: on data without any condition effect,
the share of runs with any discovery (the FDP under a complete null) and the
share of p-values at or below a level stay within the Monte Carlo allowance
of the nominal level over seeds (``tests/_allowance.py``)."""

import numpy as np
import pytest
from _allowance import binomial_allowance, binomial_power, mean_allowance

import kompot
from kompot.core.fdr import empirical_fdr, zscore_fdr
from kompot.models.null import (
    abundance_null_zscores,
    expression_null_distances,
    label_partitions,
    sample_splits,
    state_strata,
)

SEEDS = range(10)
LANDMARKS = 60


def _null_data(seed, by_sample):
    """toy() with the planted effects removed and conditions assigned at random."""
    adata = kompot.datasets.toy(n_cells=600, n_genes=30, n_de_genes=0, da_strength=0.0,
                                seed=seed)
    rng = np.random.default_rng(seed + 1000)
    samples = adata.obs["sample"].astype(str).to_numpy()
    if by_sample:  # whole samples to conditions, 3 vs 3
        names = np.unique(samples)
        first = rng.choice(names, size=len(names) // 2, replace=False)
        treated = ~np.isin(samples, first)
    else:
        treated = rng.permutation(adata.obs["condition"].to_numpy() == "treated")
    return adata, treated, samples


def _de_discoveries(seed, by_sample, q):
    adata, t, samples = _null_data(seed, by_sample)
    X, Y = adata.obsm["DM_EigenVectors"], np.asarray(adata.X, np.float64)
    reps = dict(condition1_sample_indices=samples[~t], condition2_sample_indices=samples[t]) \
        if by_sample else {}
    de = kompot.DifferentialExpression(n_landmarks=LANDMARKS, random_state=0)
    de.fit(X[~t], Y[~t], X[t], Y[t], ls_factor=0.5, **reps)
    observed = de.compute_mahalanobis_distances(X, progress=False)
    null = expression_null_distances(
        X[~t], Y[~t], X[t], Y[t], n_permutations=6, random_state=seed,
        de_kwargs=dict(n_landmarks=LANDMARKS, random_state=0),
        fit_kwargs=dict(ls=de.model1.ls, landmarks=de.landmarks),
        rescale_to=observed if by_sample else None, **reps)  # as kompot.tl does
    return _summary({level: empirical_fdr(observed, null, threshold=level)["is_de"]
                     for level in q}, empirical_fdr(observed, null)["pvalue"])


def _da_discoveries(seed, by_sample, q):
    adata, t, samples = _null_data(seed, by_sample)
    X = adata.obsm["DM_EigenVectors"]
    reps = dict(condition1_sample_indices=samples[~t], condition2_sample_indices=samples[t]) \
        if by_sample else {}
    da = kompot.DifferentialAbundance(n_landmarks=LANDMARKS, random_state=0)
    z = da.fit(X[~t], X[t], ls_factor=0.5, **reps).predict(X, progress=False)[
        "log_fold_change_zscore"]
    null = abundance_null_zscores(
        X[~t], X[t], X, n_permutations=6, random_state=seed,
        da_kwargs=dict(n_landmarks=LANDMARKS, random_state=0),
        fit_kwargs=dict(ls=da.ls, landmarks=da.landmarks), **reps)
    return _summary({level: zscore_fdr(z, null, threshold=level)["significant"] for level in q},
                    zscore_fdr(z, null)["pvalue"])


def _summary(calls, pvalue):
    """Per level: whether anything was called, and the share of p-values at or below it."""
    return {level: (bool(called.any()), float(np.mean(pvalue <= level)))
            for level, called in calls.items()}


@pytest.mark.parametrize("by_sample", [False, True], ids=["cells", "samples"])
@pytest.mark.parametrize("analysis", [_de_discoveries, _da_discoveries], ids=["DE", "DA"])
def test_complete_null_is_calibrated(analysis, by_sample):
    """Any call, and the p-values, over 10 seeds of data without a condition effect.

    Runs with any call: under the complete null every call is false, so the
    FDR is P(any call) <= q, and the number of such runs out of 10 is at most
    binomial(10, q). Allowance at 99 % for a procedure exactly at q: 3 runs
    (q = 0.05) and 4 runs (q = 0.10). Ten runs cannot tell a procedure at 2q
    from one at q (it fails with probability 0.01 / 0.03); the p-values can:

    Share of p-values <= a (a = 0.05, 0.10): valid p-values give a share of
    at most a in expectation. The genes or cells of one run share their null
    and are correlated, the runs are independent, so the allowance is a
    one-sided t bound (99 %) on the runs' mean share. Measured: shares 0.02-0.05
    at a = 0.05; a procedure at 2a with the observed spread fails with
    probability 0.96-1.00, except DA on single cells (0.37 / 0.59: neighbouring
    cells share their p-values).
    """
    levels = (0.05, 0.10)
    runs = [analysis(seed, by_sample, levels) for seed in SEEDS]
    for level in levels:
        any_call = sum(r[level][0] for r in runs)
        allowed = binomial_allowance(len(runs), level)
        assert binomial_power(len(runs), allowed, level) <= 0.01  # the allowance's own claim
        assert any_call <= allowed, f"{any_call} of {len(runs)} runs made calls at q = {level}"
        shares = [r[level][1] for r in runs]
        bound = mean_allowance(shares, level)
        assert np.mean(shares) <= bound, (
            f"mean share of p <= {level} is {np.mean(shares):.3f}, allowance {bound:.3f}")


def test_sample_splits_skip_the_observed_split_and_mirrors():
    rng = np.random.default_rng(0)
    splits = sample_splits(np.array(["a", "b", "c"]), np.array(["d", "e", "f"]), 100, rng)
    assert len(splits) == 9  # C(6,3)/2 - 1
    firsts = {frozenset(f) for f, _ in splits}
    assert frozenset("abc") not in firsts and frozenset("def") not in firsts
    assert all(len(f) == 3 and len(s) == 3 for f, s in splits)
    assert sample_splits(np.array(["a"]), np.array(["b"]), 5, rng) == []


def test_many_samples_get_distinct_seeded_random_splits():
    s1 = np.array([f"a{i}" for i in range(50)])
    s2 = np.array([f"b{i}" for i in range(50)])
    splits = sample_splits(s1, s2, 20, np.random.default_rng(0))
    assert len(splits) == 20
    firsts = [frozenset(f) for f, _ in splits]
    mirrors = [frozenset(s) for _, s in splits]
    assert len(set(firsts) | set(mirrors)) == 40  # distinct, no split twice as its mirror
    assert frozenset(s1) not in firsts and frozenset(s1) not in mirrors
    assert all(len(f) == 50 and len(s) == 50 for f, s in splits)
    again = sample_splits(s1, s2, 20, np.random.default_rng(0))
    assert [sorted(f) for f, _ in again] == [sorted(f) for f, _ in splits]


def test_stratified_partitions_keep_each_strata_composition():
    rng = np.random.default_rng(0)
    n, n1 = 400, 150
    strata = rng.integers(0, 30, n)
    observed = np.arange(n) < n1
    parts = label_partitions(n1, n, None, None, 20, rng, strata=strata)
    for mask, s1, s2 in parts:
        assert s1 is None and s2 is None
        for s in np.unique(strata):
            assert mask[strata == s].sum() == observed[strata == s].sum()
        assert (mask != observed).any()  # labels really move
    # Different permutations differ, and every cell in a mixed stratum moves sometimes.
    masks = np.array([m for m, _, _ in parts])
    assert len({m.tobytes() for m in masks}) == len(parts)
    mixed = np.array([0 < observed[strata == s].sum() < (strata == s).sum() for s in strata])
    assert (masks[:, mixed] != observed[mixed]).any(axis=0).all()


def test_state_strata_is_the_nearest_landmark():
    rng = np.random.default_rng(1)
    X, U = rng.normal(size=(200, 3)), rng.normal(size=(15, 3))
    dense = np.argmin(((X[:, None, :] - U[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(state_strata(X, U), dense)


def test_state_strata_merges_landmarks_when_cells_are_few():
    # As many landmarks as cells: one cell per landmark would make every
    # shuffle within groups the identity.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    strata = state_strata(X, X, min_cells=8)
    sizes = np.bincount(strata)
    assert 2 <= len(sizes) <= 120 // 8
    assert sizes.mean() >= 8
    # Groups are still local: each cell is nearer its own group's mean than
    # the average distance between cells.
    centers = np.array([X[strata == g].mean(axis=0) for g in range(len(sizes))])
    own = np.linalg.norm(X - centers[strata], axis=1)
    spread = np.linalg.norm(X[:, None] - X[None], axis=-1).mean()
    assert own.mean() < 0.6 * spread
    observed = np.arange(120) < 60
    masks = [m for m, _, _ in label_partitions(60, 120, None, None, 5, rng, strata=strata)]
    assert np.mean([(m != observed).mean() for m in masks]) > 0.3


def test_rescaling_moves_each_permutation_onto_the_observed_median():
    adata = kompot.datasets.toy(n_cells=400, n_genes=30, n_de_genes=0, seed=3)
    X, Y = adata.obsm["DM_EigenVectors"], np.asarray(adata.X, np.float64)
    t = (adata.obs["condition"] == "treated").to_numpy()
    observed = np.linspace(1.0, 5.0, Y.shape[1])  # any target with median 3
    kwargs = dict(n_permutations=3, random_state=0, de_kwargs=dict(n_landmarks=30, random_state=0),
                  fit_kwargs=dict(ls=1.0))
    raw = expression_null_distances(X[~t], Y[~t], X[t], Y[t], **kwargs).reshape(3, -1)
    scaled = expression_null_distances(X[~t], Y[~t], X[t], Y[t], rescale_to=observed,
                                       **kwargs).reshape(3, -1)
    np.testing.assert_allclose(np.median(scaled, axis=1), 3.0, rtol=1e-12)
    # One factor per permutation: the ranks within a permutation do not change.
    np.testing.assert_allclose(scaled / raw, (scaled / raw)[:, :1] * np.ones_like(raw), rtol=1e-12)
    # Too few genes per permutation: used as they are.
    few = expression_null_distances(X[~t], Y[~t], X[t], Y[t], rescale_to=observed,
                                    n_null_genes=10, **kwargs)
    np.testing.assert_array_equal(
        few, expression_null_distances(X[~t], Y[~t], X[t], Y[t], n_null_genes=10, **kwargs))
