import numpy as np
import pytest

import kompot


@pytest.fixture(scope="module")
def fitted(toy_split):
    t = toy_split
    model = kompot.ExpressionModel(n_landmarks=60, random_state=0)
    return model.fit(t["X1"], t["Y1"][:, :6], ls_factor=2.0, sample_indices=t["s1"]), t


def test_variance_components_add_up(fitted):
    model, t = fitted
    X = t["X"][:40]
    cov = model.covariance(X, progress=False)
    obs = model.obs_variance(X, progress=False)
    samp = model.sample_variance(X, progress=False)
    assert cov.shape == (40,) and obs.shape == (40, 6) and samp.shape == (40, 6)
    np.testing.assert_allclose(model.total_variance(X, progress=False), cov[:, None] + obs + samp)
    np.testing.assert_allclose(model.std(X, progress=False), np.sqrt(cov[:, None] + obs + samp + model.eps))
    assert model.has_sample_variance and model.has_empirical_variance


def test_full_covariance_is_consistent_with_diagonal(fitted):
    model, t = fitted
    X = t["X"][:15]
    full = model.total_variance(X, diag=False, progress=False)
    assert full.shape == (15, 15, 6)
    np.testing.assert_allclose(np.einsum("iig->ig", full), model.total_variance(X, progress=False),
                               rtol=1e-10)
    np.testing.assert_allclose(np.diag(model.covariance(X, diag=False)), model.covariance(X))


def test_obs_variance_with_samples_is_the_mean_of_per_sample_estimates(fitted):
    model, t = fitted
    X = t["X"][:25]
    per_sample = [
        np.asarray(p.obs_variance(X)) for p in model.variance_estimator.group_predictors.values()
    ]
    np.testing.assert_allclose(model.obs_variance(X, progress=False),
                               np.maximum(np.mean(per_sample, axis=0), model.eps), rtol=1e-8)


def test_imputation_beats_the_gene_mean_on_held_out_cells(toy_split):
    t = toy_split
    train, test = slice(0, 700), slice(700, None)
    model = kompot.ExpressionModel(n_landmarks=100, random_state=0)
    model.fit(t["X1"][train], t["Y1"][train], ls_factor=0.5)
    pred = model.predict(t["X1"][test], batch_size=77, progress=False)
    assert pred.shape == t["Y1"][test].shape
    err_gp = np.mean((pred - t["Y1"][test]) ** 2)
    err_mean = np.mean((t["Y1"][train].mean(0) - t["Y1"][test]) ** 2)
    assert err_gp < 0.97 * err_mean
    assert model.sample_variance(t["X1"][:5]) == 0.0
    assert model.landmarks.shape == (100, t["X1"].shape[1]) and model.ls > 0 and model.sigma == 1.0


def test_bad_input(toy_split):
    t = toy_split
    with pytest.raises(ValueError, match="one row per cell"):
        kompot.ExpressionModel().fit(t["X1"], t["Y1"][:10])
    with pytest.raises(TypeError, match="Unsupported keyword"):
        kompot.ExpressionModel().fit(t["X1"], t["Y1"], gp_type="full")
    with pytest.raises(ValueError, match="not fitted"):
        kompot.ExpressionModel().predict(t["X1"])
