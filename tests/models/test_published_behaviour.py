"""Where the seed is silent, the model classes behave as kompot 0.8.0 does."""

import numpy as np
import pytest
from scipy.stats import norm

import kompot

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def small(toy_split):
    t = toy_split
    return {"X1": t["X1"][::3], "X2": t["X2"][::3], "Y1": t["Y1"][::3, :6],
            "Y2": t["Y2"][::3, :6], "s1": t["s1"][::3], "s2": t["s2"][::3], "X": t["X"][::25]}


@pytest.fixture(scope="module")
def de_reps(small):
    d = small
    return kompot.DifferentialExpression(n_landmarks=40, random_state=0).fit(
        d["X1"], d["Y1"], d["X2"], d["Y2"], condition1_sample_indices=d["s1"],
        condition2_sample_indices=d["s2"])


@pytest.fixture(scope="module")
def da_reps(small):
    d = small
    return kompot.DifferentialAbundance(n_landmarks=60, random_state=0).fit(
        d["X1"], d["X2"], condition1_sample_indices=d["s1"], condition2_sample_indices=d["s2"])


def test_de_predict_returns_fold_change_zscores(de_reps, small):
    X = small["X"]
    out = de_reps.predict(X, progress=False)
    m1, m2 = de_reps.model1, de_reps.model2
    total = (m1.total_variance(X, progress=False) + m2.total_variance(X, progress=False)
             + de_reps.eps)
    expected = out["fold_change"] / np.sqrt(total)
    assert out["fold_change_zscores"].shape == out["fold_change"].shape
    np.testing.assert_allclose(out["fold_change_zscores"], expected, rtol=1e-9)
    assert "neg_log10_ptp" not in out  # only with compute_mahalanobis, as in 0.8.0


def test_de_neg_log10_ptp_is_the_normal_tail_of_the_mean_zscore(de_reps, small):
    out = de_reps.predict(small["X"], compute_mahalanobis=True, progress=False)
    mean_z = out["fold_change_zscores"].mean(axis=0)
    expected = -norm.logsf(np.abs(mean_z)) / np.log(10)
    assert out["neg_log10_ptp"].shape == (6,)
    np.testing.assert_allclose(out["neg_log10_ptp"], expected, rtol=1e-10)
    assert np.all(out["neg_log10_ptp"] >= np.log10(2) - 1e-12)  # a one-sided tail: PTP <= 1/2


def test_da_variance_predictors_switch_sample_variance_on(da_reps, small):
    d = small
    given = kompot.DifferentialAbundance(
        n_landmarks=60, random_state=0, variance_predictor1=da_reps.variance_predictor1,
        variance_predictor2=da_reps.variance_predictor2,
    ).fit(d["X1"], d["X2"])
    assert given.use_sample_variance is None and given.use_sample_variance_ is True
    plain = kompot.DifferentialAbundance(n_landmarks=60, random_state=0).fit(d["X1"], d["X2"])
    a = da_reps.predict(d["X"], progress=False)
    b = given.predict(d["X"], progress=False)
    c = plain.predict(d["X"], progress=False)
    np.testing.assert_allclose(b["log_fold_change_uncertainty"], a["log_fold_change_uncertainty"],
                               **TOL)
    assert np.all(b["log_fold_change_uncertainty"] > c["log_fold_change_uncertainty"])
    off = kompot.DifferentialAbundance(
        n_landmarks=60, random_state=0, use_sample_variance=False,
        variance_predictor1=da_reps.variance_predictor1,
        variance_predictor2=da_reps.variance_predictor2,
    ).fit(d["X1"], d["X2"])
    np.testing.assert_allclose(off.predict(d["X"], progress=False)["log_fold_change_uncertainty"],
                               c["log_fold_change_uncertainty"], **TOL)


def test_da_accepts_plain_callables_as_variance_predictors(da_reps, small):
    d = small
    est1, est2 = da_reps.variance_predictor1, da_reps.variance_predictor2

    def plain(X, diag=True):  # the documented form predictor(X, diag=True)
        return est2.predict(X, diag=diag, progress=False)

    # est1.predict is what kompot 0.8.0 stores: a bound method, called as vp(X, diag=...)
    model = kompot.DifferentialAbundance(
        n_landmarks=60, random_state=0, variance_predictor1=est1.predict, variance_predictor2=plain,
    ).fit(d["X1"], d["X2"])
    np.testing.assert_allclose(
        model.predict(d["X"], progress=False)["log_fold_change_uncertainty"],
        da_reps.predict(d["X"], progress=False)["log_fold_change_uncertainty"], **TOL)


def test_de_variance_predictors_switch_sample_variance_on(de_reps, small):
    d = small
    given = kompot.DifferentialExpression(
        n_landmarks=40, random_state=0, variance_predictor1=de_reps.variance_predictor1,
        variance_predictor2=de_reps.variance_predictor2,
    ).fit(d["X1"], d["Y1"], d["X2"], d["Y2"])
    assert given.use_sample_variance_ is True
    a = de_reps.predict(d["X"], compute_mahalanobis=True, progress=False)
    b = given.predict(d["X"], compute_mahalanobis=True, progress=False)
    for key in ("condition1_std", "condition2_std", "mahalanobis_distances"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-8, err_msg=key)


def test_de_accepts_plain_callables_as_variance_predictors(small):
    d = small
    kw = dict(n_landmarks=40, random_state=0, use_empirical_variance=False)
    reps = kompot.DifferentialExpression(**kw).fit(
        d["X1"], d["Y1"], d["X2"], d["Y2"], condition1_sample_indices=d["s1"],
        condition2_sample_indices=d["s2"])
    calls = []

    def wrap(est):
        def predictor(X, diag=True):
            calls.append(diag)
            return est.predict(X, diag=diag, progress=False)
        return predictor

    given = kompot.DifferentialExpression(
        **kw, variance_predictor1=wrap(reps.variance_predictor1),
        variance_predictor2=wrap(reps.variance_predictor2),
    ).fit(d["X1"], d["Y1"], d["X2"], d["Y2"])
    a = reps.predict(d["X"], compute_mahalanobis=True, progress=False)
    b = given.predict(d["X"], compute_mahalanobis=True, progress=False)
    np.testing.assert_allclose(b["condition1_std"], a["condition1_std"], rtol=1e-10)
    np.testing.assert_allclose(b["mahalanobis_distances"], a["mahalanobis_distances"], rtol=1e-6)
    assert True in calls and False in calls


def test_fitted_predictors_are_read_through_the_constructor_names(da_reps, de_reps):
    # as in kompot 0.8.0, e.g. to pass them on to another model
    assert da_reps.density_predictor1 is da_reps.density_predictor1_ is not None
    assert callable(da_reps.density_predictor2)
    assert de_reps.function_predictor1 is de_reps.model1.predictor is not None
    assert isinstance(de_reps.variance_predictor2, kompot.SampleVarianceEstimator)
    with pytest.raises(AttributeError):
        da_reps.density_predictor1 = None  # read-only: set it in the constructor
