"""The mellon objects the model classes hand out, against dense numpy references.

kompot fits its GPs itself and assembles mellon estimators and predictors
from the fitted arrays on request (``kompot.core.mellon_bridge``). What a
mellon user calls on them -- ``predict``, ``covariance``, ``mean_covariance``,
``obs_variance``, the configured hyper-parameters -- must equal the model
written densely from its formulas (``_dense_gp``).
"""

import logging

import numpy as np
import pytest
from _dense_gp import density_map, function_fit
from scipy.spatial import cKDTree

import kompot

mellon = pytest.importorskip("mellon")
logging.getLogger("mellon").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(5)
    X1 = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(2.5, 0.5, (60, 3))])
    X2 = np.concatenate([rng.normal(0, 1, (150, 3)), rng.normal(2.5, 0.5, (140, 3))])
    Y1 = np.column_stack([np.sin(X1[:, 0]), X1[:, 1]]) + rng.normal(0, 0.3, (260, 2))
    Y2 = np.column_stack([np.sin(X2[:, 0]) + 0.5, X2[:, 1]]) + rng.normal(0, 0.3, (290, 2))
    return X1, Y1, X2, Y2, np.vstack([X1, X2])[::9]


def test_expression_model_estimator(cells):
    X1, Y1, _, _, Xn = cells
    model = kompot.ExpressionModel(n_landmarks=30, random_state=0).fit(X1, Y1, sigma=0.4,
                                                                       ls=1.2, mu=0.3)
    est = model.estimator
    assert isinstance(est, mellon.FunctionEstimator)
    assert est.predict is model.predictor
    np.testing.assert_array_equal(np.asarray(est.landmarks), model.landmarks)
    assert (est.cov_func.ls, est.sigma, model.ls, model.sigma) == (1.2, 0.4, 1.2, 0.4)
    mean, covariance, variance_weights = function_fit(X1, Y1, model.landmarks, 1.2,
                                                      sigma=0.4, mu=0.3)
    np.testing.assert_allclose(np.asarray(est.predict(Xn)), mean(Xn), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(est.predict.covariance(Xn)), np.diag(covariance(Xn)),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(est.predict.covariance(Xn[:8], diag=False)),
                               covariance(Xn[:8]), rtol=1e-6, atol=1e-8)
    K = mellon.cov.Matern52(ls=1.2)(Xn, model.landmarks)
    np.testing.assert_allclose(np.asarray(est.predict.obs_variance(Xn)),
                               np.asarray(K) @ variance_weights, rtol=1e-5, atol=1e-7)


def test_differential_expression_estimators(cells):
    X1, Y1, X2, Y2, Xn = cells
    de = kompot.DifferentialExpression(n_landmarks=30, random_state=0)
    de.fit(X1, Y1, X2, Y2, sigma=0.4, ls=1.2)
    out = de.predict(Xn, progress=False)
    U = de.landmarks
    # The condition fits revert to the pooled fit of both conditions: prior
    # mean function K(x, U) w0, with w0 the pooled fit's weights.
    pooled_mean, _, _ = function_fit(np.vstack([X1, X2]), np.vstack([Y1, Y2]), U, 1.2, sigma=0.4)
    for which, (X, Y) in ((1, (X1, Y1)), (2, (X2, Y2))):
        est = getattr(de, f"expression_estimator_condition{which}")
        assert isinstance(est, mellon.FunctionEstimator)
        assert est.predict is getattr(de, f"function_predictor{which}")
        prior_at_cells = pooled_mean(X)
        residual_mean, covariance, _ = function_fit(X, Y - prior_at_cells, U, 1.2, sigma=0.4)
        reference = pooled_mean(Xn) + residual_mean(Xn)
        np.testing.assert_allclose(np.asarray(est.predict(Xn)), reference, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out[f"condition{which}_smoothed"], reference, rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(np.asarray(est.predict.covariance(Xn)),
                                   np.diag(covariance(Xn)), rtol=1e-6, atol=1e-8)


def test_differential_abundance_density_estimators(cells):
    X1, _, X2, _, Xn = cells
    da = kompot.DifferentialAbundance(n_landmarks=50, random_state=0).fit(X1, X2, ls=1.2)
    out = da.predict(Xn, progress=False)
    for which, X in ((1, X1), (2, X2)):
        est = getattr(da, f"density_estimator{which}")
        assert isinstance(est, mellon.DensityEstimator)
        assert est.d == 3 and est.cov_func.ls == 1.2
        np.testing.assert_array_equal(np.asarray(est.landmarks), da.landmarks)
        r = cKDTree(X).query(X, k=2)[0][:, 1]
        predict, variance = density_map(X, da.landmarks, 1.2, d=3, mu=est.mu, nn_distances=r)
        # kompot's Newton stops at a decrement of 1e-9 |loss|, the reference
        # runs to rounding: measured differences 4e-6.
        np.testing.assert_allclose(np.asarray(est.predict(Xn)), predict(Xn), rtol=0, atol=3e-5)
        np.testing.assert_allclose(np.asarray(est.predict(Xn, normalize=True)),
                                   predict(Xn) - np.log(len(X)), rtol=0, atol=3e-5)
        np.testing.assert_allclose(out[f"log_density_condition{which}"],
                                   predict(Xn) - np.log(len(X)), rtol=0, atol=3e-5)
        np.testing.assert_allclose(np.asarray(est.predict.mean_covariance(Xn)), variance(Xn),
                                   rtol=1e-4, atol=1e-9)
