"""DifferentialAbundanceRatio: the log ratio from the labels, on planted and null data."""

import numpy as np
import pytest
from _allowance import binomial_allowance
from scipy.stats import binom

import kompot
from kompot.models.abundance_ratio import MIN_CELLS_PER_CONDITION


def _split(X, cond, samples=None):
    out = dict(X_condition1=X[cond == 0], X_condition2=X[cond == 1])
    if samples is not None:
        out.update(condition1_sample_indices=samples[cond == 0],
                   condition2_sample_indices=samples[cond == 1])
    return out


def test_blobs_give_the_true_log_ratios(blobs):
    X1, X2 = blobs
    model = kompot.DifferentialAbundanceRatio(n_landmarks=150).fit(X1, X2)
    out = model.predict(np.vstack([X1, X2]))
    in_b = np.r_[np.zeros(600), np.ones(200), np.zeros(600), np.ones(600)].astype(bool)
    # blob A: (600/1200)/(600/800) = 2/3; blob B: (600/1200)/(200/800) = 2
    assert np.median(out["log_fold_change"][~in_b]) == pytest.approx(np.log(2 / 3), abs=0.15)
    assert np.median(out["log_fold_change"][in_b]) == pytest.approx(np.log(2.0), abs=0.15)


def test_swapping_conditions_negates_exactly(toy_split):
    t = toy_split
    kw = dict(n_landmarks=200)
    a = kompot.DifferentialAbundanceRatio(**kw).fit(
        t["X1"], t["X2"], condition1_sample_indices=t["s1"], condition2_sample_indices=t["s2"])
    b = kompot.DifferentialAbundanceRatio(**kw).fit(
        t["X2"], t["X1"], condition1_sample_indices=t["s2"], condition2_sample_indices=t["s1"])
    ra, rb = a.predict(t["X"]), b.predict(t["X"])
    assert (a.ls_, a.amplitude_) == (b.ls_, b.amplitude_)
    np.testing.assert_allclose(ra["log_fold_change"], -rb["log_fold_change"], atol=1e-8)
    np.testing.assert_allclose(ra["log_fold_change_pvalue"], rb["log_fold_change_pvalue"],
                               atol=1e-8)
    flipped = {"up": "down", "down": "up", "neutral": "neutral"}
    assert [flipped[d] for d in ra["log_fold_change_direction"]] == list(
        rb["log_fold_change_direction"])


def test_row_order_does_not_matter(toy_split):
    t = toy_split
    rng = np.random.default_rng(0)
    p1, p2 = rng.permutation(len(t["X1"])), rng.permutation(len(t["X2"]))
    kw = dict(n_landmarks=200)
    a = kompot.DifferentialAbundanceRatio(**kw).fit(t["X1"], t["X2"])
    b = kompot.DifferentialAbundanceRatio(**kw).fit(t["X1"][p1], t["X2"][p2])
    np.testing.assert_allclose(a.predict(t["X"])["log_fold_change"],
                               b.predict(t["X"])["log_fold_change"], atol=1e-10)


def test_planted_region_is_found_on_the_scale_of_the_true_ratio(toy, toy_split):
    t = toy_split
    model = kompot.DifferentialAbundanceRatio(n_landmarks=300, fdr_threshold=0.05)
    out = model.fit(t["X1"], t["X2"]).predict(t["X"])
    region = toy.obs["da_region"].to_numpy()
    called = out["log_fold_change_direction"] != "neutral"
    assert called[region].mean() >= 0.8
    truth = toy.obs["true_log_density_ratio"].to_numpy()
    slope = np.polyfit(truth, out["log_fold_change"], 1)[0]
    assert 0.7 <= slope <= 1.4
    # the calls' signs follow the truth
    assert np.mean(np.sign(out["log_fold_change"][called]) == np.sign(truth[called])) >= 0.95


def test_replicates_add_a_between_sample_test(toy_split):
    t = toy_split
    kw = dict(n_landmarks=200)
    plain = kompot.DifferentialAbundanceRatio(**kw).fit(t["X1"], t["X2"])
    reps = kompot.DifferentialAbundanceRatio(**kw).fit(
        t["X1"], t["X2"], condition1_sample_indices=t["s1"], condition2_sample_indices=t["s2"])
    a, b = plain.predict(t["X"]), reps.predict(t["X"])
    np.testing.assert_allclose(a["log_fold_change"], b["log_fold_change"])
    assert np.all(b["log_fold_change_pvalue"] >= a["log_fold_change_pvalue"] - 1e-15)
    assert np.all(b["log_fold_change_sample_variance"] > 0)
    # Welch's df for 3 vs 3 samples lie in [2, 4]; the moderation adds the prior's.
    prior = reps.variance_prior_
    assert plain.variance_prior_ is None and prior.df > 0 and prior.scale > 0
    if np.isinf(prior.df):
        assert np.all(np.isinf(b["log_fold_change_df"]))
    else:
        df = b["log_fold_change_df"] - prior.df
        assert np.all((df >= 2 - 1e-9) & (df <= 4 + 1e-9))


def _null_data(seed, n=1000, sample_effect=0.0):
    """Random condition labels on a branching manifold; optionally samples differ in composition."""
    rng = np.random.default_rng(seed)
    pops = rng.integers(0, 4, n)
    dirs = rng.normal(size=(4, 5))
    t = rng.uniform(size=n)
    X = t[:, None] * dirs[pops] + 0.05 * rng.normal(size=(n, 5))
    cond = rng.integers(0, 2, n)
    samples = rng.integers(0, 3, n)
    if sample_effect:
        effect = rng.normal(0, sample_effect, (2, 3, 4))
        keep = rng.uniform(size=n) < np.exp(effect[cond, samples, pops] - effect.max())
        X, cond, samples = X[keep], cond[keep], samples[keep]
    return X, cond, np.char.add(cond.astype(str), samples.astype(str))


@pytest.mark.slow
@pytest.mark.parametrize("with_samples", [False, True])
def test_complete_null_rarely_gives_any_call(with_samples):
    # On data without any change, BH at q = 0.1 makes a call in at most 10 % of
    # runs. Allowance: at exactly 10 %, P(more than 5 of 20 runs) = 0.011.
    # Twenty runs cannot tell 2q from q (a procedure at 0.2 fails with
    # probability 0.20); the planted tl calibration bounds the FDP itself.
    n_runs, q = 20, 0.1
    assert binomial_allowance(n_runs, q, alpha=0.02) == 5
    assert binom.sf(5, n_runs, q) < 0.02
    runs_with_calls = 0
    for seed in range(n_runs):
        X, cond, samples = _null_data(seed, sample_effect=0.7 if with_samples else 0.0)
        model = kompot.DifferentialAbundanceRatio(n_landmarks=200, fdr_threshold=q)
        model.fit(**_split(X, cond, samples if with_samples else None))
        out = model.predict(X)
        runs_with_calls += bool(np.any(out["log_fold_change_direction"] != "neutral"))
    assert runs_with_calls <= 5


def test_a_tiny_condition_is_refused():
    rng = np.random.default_rng(0)
    X1 = rng.normal(size=(250, 3))
    X2 = rng.normal(size=(MIN_CELLS_PER_CONDITION - 1, 3))
    with pytest.raises(ValueError, match=f"at least {MIN_CELLS_PER_CONDITION} cells"):
        kompot.DifferentialAbundanceRatio().fit(X1, X2)


def test_unfitted_model_says_how_to_fit():
    with pytest.raises(ValueError, match="call fit"):
        kompot.DifferentialAbundanceRatio().predict(np.zeros((3, 2)))


def test_fit_keeps_constructor_parameters_and_refit_equals_fresh_fit(toy_split, blobs):
    t = toy_split
    model = kompot.DifferentialAbundanceRatio(n_landmarks=150)
    model.fit(*blobs)
    assert model.ls is None and model.amplitude is None and model.n_landmarks == 150
    model.fit(t["X1"], t["X2"], condition1_sample_indices=t["s1"],
              condition2_sample_indices=t["s2"])
    model.fit(t["X1"], t["X2"])
    fresh = kompot.DifferentialAbundanceRatio(n_landmarks=150).fit(t["X1"], t["X2"])
    assert model.jackknife_ is None
    np.testing.assert_allclose(model.predict(t["X"])["log_fold_change"],
                               fresh.predict(t["X"])["log_fold_change"], atol=1e-10)


def test_given_hyperparameters_skip_the_search(toy_split):
    t = toy_split
    model = kompot.DifferentialAbundanceRatio(n_landmarks=100, ls=0.5, amplitude=0.7)
    model.fit(t["X1"], t["X2"])
    assert (model.ls_, model.amplitude_) == (0.5, 0.7)
    assert list(model.log_evidence_) == [(0.5, 0.7)]


def test_many_donors_are_cheap():
    rng = np.random.default_rng(1)
    n = 4000
    X = rng.normal(size=(n, 4))
    cond = rng.integers(0, 2, n)
    donors = np.char.add(cond.astype(str), rng.integers(0, 50, n).astype(str))
    model = kompot.DifferentialAbundanceRatio(n_landmarks=100).fit(**_split(X, cond, donors))
    assert model.jackknife_.shifts.shape == (100, 100)
    out = model.predict(X)
    assert np.all(np.isfinite(out["log_fold_change_pvalue"]))
    assert np.all(out["log_fold_change_df"] > 40)


def _batch_blobs(seed=0):
    """Two blobs P, Q; batch A spreads both conditions 2:1 over both, batch B sits in Q (1:2)."""
    rng = np.random.default_rng(seed)
    P, Q = np.zeros(3), np.r_[4.0, 0.0, 0.0]

    def cells(n, centres):
        return np.asarray(centres)[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 3))

    X1 = np.vstack([cells(600, [P, Q]), cells(200, [Q])])
    X2 = np.vstack([cells(300, [P, Q]), cells(400, [Q])])
    z1 = np.r_[np.zeros(600), np.ones(200)][:, None]
    z2 = np.r_[np.zeros(300), np.ones(400)][:, None]
    return X1, X2, z1, z2, P, Q


def test_a_covariate_removes_a_batch_composition_shift_and_swaps_exactly():
    X1, X2, z1, z2, P, Q = _batch_blobs()
    kw = dict(n_landmarks=100, ls=3.0, amplitude=1.0)
    pooled = kompot.DifferentialAbundanceRatio(**kw).fit(X1, X2)
    adjusted = kompot.DifferentialAbundanceRatio(**kw).fit(
        X1, X2, condition1_covariates=z1, condition2_covariates=z2, covariate_names=["B"])
    at = np.vstack([P, Q])
    lfc_pooled = pooled.predict(at)["log_fold_change"]
    lfc = adjusted.predict(at)["log_fold_change"]
    # Pooled, Q looks enriched in condition 2 (log 1.26 vs log 0.57); within batches it is not.
    assert lfc_pooled[1] - lfc_pooled[0] > 0.5
    assert abs(lfc[1] - lfc[0]) < 0.15
    assert adjusted.covariate_effects_["B"] > 1.0  # batch B holds twice the condition-2 share
    swapped = kompot.DifferentialAbundanceRatio(**kw).fit(
        X2, X1, condition1_covariates=z2, condition2_covariates=z1, covariate_names=["B"])
    np.testing.assert_allclose(swapped.predict(at)["log_fold_change"], -lfc, atol=1e-6)
    assert swapped.covariate_effects_["B"] == pytest.approx(-adjusted.covariate_effects_["B"])


def test_covariates_seen_in_one_condition_only_are_refused():
    X1, X2, z1, z2, _, _ = _batch_blobs()
    with pytest.raises(ValueError, match="belong to condition 2"):
        kompot.DifferentialAbundanceRatio(n_landmarks=50).fit(
            X1, X2, condition1_covariates=np.zeros_like(z1), condition2_covariates=z2)
    with pytest.raises(ValueError, match="both conditions' cells, or for neither"):
        kompot.DifferentialAbundanceRatio(n_landmarks=50).fit(X1, X2, condition1_covariates=z1)


def test_cell_blocks_in_threads_give_the_results_of_one_block_at_a_time(toy_split, monkeypatch):
    """Newton steps and jackknife over blocks of 50 cells, in 3 threads: the same
    numbers as a plain loop (sums in block order; only BLAS's own order may differ)."""
    from kompot import parallel

    t = toy_split
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(parallel, "thread_count", lambda threads=threads: threads)
        model = kompot.DifferentialAbundanceRatio(n_landmarks=60, batch_size=50).fit(
            t["X1"], t["X2"], condition1_sample_indices=t["s1"],
            condition2_sample_indices=t["s2"])
        runs.append(model.predict(t["X"]))
    assert len(model.basis_.blocks(t["X"], 50)) >= 20
    for name in ("log_fold_change", "log_fold_change_zscore", "log_fold_change_sample_variance",
                 "log_fold_change_fdr"):
        np.testing.assert_allclose(runs[1][name], runs[0][name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)
