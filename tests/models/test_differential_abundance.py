import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import kompot


def test_lfc_recovers_known_ratios(blobs):
    X1, X2 = blobs
    da = kompot.DifferentialAbundance(n_landmarks=150, random_state=0).fit(X1, X2, ls_factor=1.0)
    out = da.predict(np.vstack([X1, X2]), progress=False)
    in_b = np.r_[np.zeros(600), np.ones(200), np.zeros(600), np.ones(600)].astype(bool)
    # blob A: (600/1200)/(600/800); blob B: (600/1200)/(200/800)
    assert np.median(out["log_fold_change"][~in_b]) == pytest.approx(np.log(2 / 3), abs=0.15)
    assert np.median(out["log_fold_change"][in_b]) == pytest.approx(np.log(2.0), abs=0.15)
    assert np.all(out["log_fold_change_uncertainty"] > 0)


def test_swapping_conditions_negates_exactly(toy_split):
    t = toy_split
    kw = dict(n_landmarks=200, random_state=0)
    a = kompot.DifferentialAbundance(**kw).fit(t["X1"], t["X2"], ls_factor=2.0)
    b = kompot.DifferentialAbundance(**kw).fit(t["X2"], t["X1"], ls_factor=2.0)
    ra, rb = a.predict(t["X"], progress=False), b.predict(t["X"], progress=False)
    np.testing.assert_allclose(ra["log_fold_change"], -rb["log_fold_change"], atol=1e-8)
    np.testing.assert_allclose(ra["log_fold_change_zscore"], -rb["log_fold_change_zscore"], atol=1e-8)
    np.testing.assert_allclose(ra["neg_log10_fold_change_ptp"], rb["neg_log10_fold_change_ptp"],
                               atol=1e-8)
    flipped = {"up": "down", "down": "up", "neutral": "neutral"}
    assert [flipped[d] for d in ra["log_fold_change_direction"]] == list(
        rb["log_fold_change_direction"]
    )


def test_planted_region_has_the_most_extreme_changes(toy, toy_split):
    t = toy_split
    da = kompot.DifferentialAbundance(n_landmarks=300, random_state=0)
    out = da.fit(t["X1"], t["X2"], ls_factor=0.5).predict(t["X"], progress=False)
    region = toy.obs["da_region"].to_numpy()
    assert roc_auc_score(region, np.abs(out["log_fold_change_zscore"])) >= 0.9
    truth = toy.obs["true_log_density_ratio"].to_numpy()
    # the sign is right where the truth is strong
    strong = np.abs(truth) > 1
    assert np.mean(np.sign(out["log_fold_change"][strong]) == np.sign(truth[strong])) > 0.9


def test_sample_variance_adds_uncertainty(toy_split):
    t = toy_split
    kw = dict(n_landmarks=150, random_state=0)
    plain = kompot.DifferentialAbundance(**kw).fit(t["X1"], t["X2"], ls_factor=2.0)
    reps = kompot.DifferentialAbundance(**kw).fit(
        t["X1"], t["X2"], ls_factor=2.0,
        condition1_sample_indices=t["s1"], condition2_sample_indices=t["s2"],
    )
    assert reps.use_sample_variance_ and reps.use_sample_variance is None
    a, b = plain.predict(t["X"], progress=False), reps.predict(t["X"], progress=False)
    np.testing.assert_allclose(a["log_fold_change"], b["log_fold_change"])
    assert np.all(b["log_fold_change_uncertainty"] > a["log_fold_change_uncertainty"])
    assert np.all(np.abs(b["log_fold_change_zscore"]) <= np.abs(a["log_fold_change_zscore"]) + 1e-12)


def test_single_condition_variance_needs_permission(toy_split):
    t = toy_split
    one_sample = np.zeros(len(t["X1"]), dtype=int)
    da = kompot.DifferentialAbundance(n_landmarks=100, random_state=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        da.fit(t["X1"], t["X2"], condition1_sample_indices=one_sample,
               condition2_sample_indices=t["s2"])
    da = kompot.DifferentialAbundance(n_landmarks=100, random_state=0).fit(
        t["X1"], t["X2"], condition1_sample_indices=one_sample,
        condition2_sample_indices=t["s2"], allow_single_condition_variance=True,
    )
    assert da.variance_predictor1 is da.variance_predictor2


def test_prefitted_predictors_are_used_as_given(blobs):
    X1, X2 = blobs
    first = kompot.DifferentialAbundance(n_landmarks=80, random_state=0).fit(X1, X2)
    reused = kompot.DifferentialAbundance(
        density_predictor1=first.density_predictor1, density_predictor2=first.density_predictor2
    ).fit(X1[:50] + 10, X2[:50] - 10)  # nonsense data: must not be fitted
    assert reused.density_predictor1 is first.density_predictor1
    a = first.predict(X1[:40], progress=False)
    b = reused.predict(X1[:40], progress=False)
    np.testing.assert_allclose(a["log_fold_change"], b["log_fold_change"], atol=1e-10)
    np.testing.assert_allclose(a["log_fold_change_uncertainty"], b["log_fold_change_uncertainty"],
                               rtol=1e-8)


def test_ptp_never_overflows():
    from kompot.core.stats import neg_log10_ptp

    values = neg_log10_ptp(np.array([0.0, 5.0, -40.0, 1e4]))
    assert np.all(np.isfinite(values))
    assert values[0] == pytest.approx(np.log10(2))
    assert values[3] > 1e7


def test_thresholds_drive_direction(blobs):
    X1, X2 = blobs
    da = kompot.DifferentialAbundance(n_landmarks=80, random_state=0).fit(X1, X2, ls_factor=1.0)
    loose = da.predict(X2, log_fold_change_threshold=0.1, ptp_threshold=0.5, progress=False)
    strict = da.predict(X2, log_fold_change_threshold=5.0, progress=False)
    assert set(strict["log_fold_change_direction"]) == {"neutral"}
    assert {"up", "down"} <= set(loose["log_fold_change_direction"])
    assert da.log_fold_change_direction is strict["log_fold_change_direction"]


def test_sync_parameters_uses_one_prior_mean(blobs):
    X1, X2 = blobs
    da = kompot.DifferentialAbundance(n_landmarks=60, random_state=0).fit(X1, X2, sync_parameters=True)
    assert da._fits[1].mu == da._fits[2].mu


def test_bad_inputs_raise_clear_errors(blobs):
    X1, X2 = blobs
    da = kompot.DifferentialAbundance(n_landmarks=20)
    with pytest.raises(ValueError, match="same number of features"):
        da.fit(X1, X2[:, :3])
    with pytest.raises(TypeError, match="Unsupported keyword"):
        da.fit(X1, X2, optimizer="advi")
    with pytest.raises(ValueError, match="not fitted"):
        kompot.DifferentialAbundance().predict(X1)


def test_warns_when_landmarks_do_not_cover_the_cells(blobs):
    X1, X2 = blobs
    da = kompot.DifferentialAbundance(n_landmarks=5, random_state=0).fit(X1, X2, ls_factor=0.05)
    with pytest.warns(kompot.KompotWarning, match="cover the cell states poorly"):
        da.predict(X1, progress=False)
    well = kompot.DifferentialAbundance(n_landmarks=100, random_state=0).fit(X1, X2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        well.predict(X1, progress=False)
    assert not [w for w in record if "cover the cell states poorly" in str(w.message)]
