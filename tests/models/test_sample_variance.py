import numpy as np
import pytest

from kompot import KompotWarning, SampleVarianceEstimator


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    groups = np.repeat(["a", "b", "c", "d"], 150)
    shift = {"a": 0.0, "b": 0.3, "c": -0.2, "d": 0.5}
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1]]) + np.array([shift[g] for g in groups])[:, None]
    return X, Y + rng.normal(0, 0.2, Y.shape), groups


def test_function_variance_is_bessel_corrected(data):
    X, Y, groups = data
    est = SampleVarianceEstimator().fit(X, Y, groups, estimator_kwargs={"n_landmarks": 50})
    assert est.n_groups == 4 and set(est.group_predictors) == {"a", "b", "c", "d"}
    Xn = X[:30]
    preds = np.stack([np.asarray(p(Xn)) for p in est.group_predictors.values()])
    expected = preds.var(axis=0, ddof=1)
    np.testing.assert_allclose(est.predict(Xn, diag=True, progress=False), expected, rtol=1e-8)
    full = est.predict(Xn, diag=False, progress=False)
    assert full.shape == (30, 30, 2)
    np.testing.assert_allclose(np.einsum("iig->ig", full), expected, rtol=1e-8)
    # rank at most K - 1 = 3
    assert np.linalg.matrix_rank(full[:, :, 0], tol=1e-10) <= 3


def test_density_variance_shape(data):
    X, _, groups = data
    est = SampleVarianceEstimator(estimator_type="density").fit(
        X, grouping_vector=groups, estimator_kwargs={"n_landmarks": 40})
    out = est.predict(X[:10], diag=True, progress=False)
    assert out.shape == (10, 1) and np.all(out >= 0)


def test_small_groups_are_skipped_and_two_are_required(data):
    X, Y, groups = data
    g = groups.copy()
    g[:3] = "tiny"
    with pytest.warns(KompotWarning, match=r"fewer than 5 cells were skipped: \['t"):
        est = SampleVarianceEstimator().fit(X, Y, g, min_cells=5,
                                            estimator_kwargs={"n_landmarks": 30})
    assert "tiny" not in est.group_predictors
    with pytest.raises(ValueError, match="at least 2 samples"):
        SampleVarianceEstimator().fit(X, Y, np.zeros(len(X)))
    with pytest.raises(ValueError, match="estimator_type"):
        SampleVarianceEstimator(estimator_type="gaussian")
    with pytest.raises(ValueError, match="Y .* is required"):
        SampleVarianceEstimator().fit(X, None, groups)
