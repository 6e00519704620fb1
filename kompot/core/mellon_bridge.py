"""Turn kompot's fitted arrays into ordinary mellon predictors and estimators.

kompot fits its Gaussian processes itself (faster, batched), but hands the
results out as mellon objects so that anything built for mellon — calling a
predictor, ``covariance``, ``mean_covariance``, ``obs_variance``,
serialisation — keeps working. The objects are assembled from their state
variables, exactly as mellon's own deserialisation does.
"""

from __future__ import annotations

import numpy as np
from mellon import DensityEstimator, FunctionEstimator
from mellon.conditional import LandmarksConditional, LandmarksConditionalCholesky

from .density import DensityFit
from .function_gp import FunctionFit


def _assemble(cls, state: dict, cov_func, n_obs: int, n_features: int):
    obj = cls.__new__(cls)
    obj.cov_func = cov_func
    for name, value in state.items():
        setattr(obj, name, value)
    obj.n_obs = n_obs
    obj.n_input_features = n_features
    obj._state_variables = set(state)
    return obj


def density_predictor(fit: DensityFit, landmarks: np.ndarray, cov_func, jitter: float = 1e-6):
    """A mellon ``LandmarksConditionalCholesky`` equal to ``fit``."""
    state = {
        "landmarks": np.asarray(landmarks),
        "weights": fit.weights,
        "mu": fit.mu,
        "jitter": jitter,
        "sigma": None,
        "per_feature_sigma": False,
        "L": fit.Lp,
        "W": fit.uncertainty_factor,
    }
    return _assemble(LandmarksConditionalCholesky, state, cov_func, fit.n_obs, landmarks.shape[1])


def function_predictor(fit: FunctionFit, jitter: float = 1e-6):
    """A mellon ``LandmarksConditional`` equal to ``fit`` (all genes)."""
    state = {
        "landmarks": fit.landmarks,
        "weights": fit.weights,
        "mu": fit.mu,
        "jitter": jitter,
        "sigma": fit.sigma,
        "per_feature_sigma": False,
        "L": fit.Lp,
        "Cs": fit.Lp @ fit.LB,
    }
    if fit.variance_weights is not None:
        state["variance_weights"] = fit.variance_weights
        state["variance_mu"] = 0.0
    return _assemble(LandmarksConditional, state, fit.cov_func, fit.n_obs, fit.landmarks.shape[1])


def density_estimator(predictor, landmarks, cov_func, *, d, mu, ls, jitter=1e-6):
    """A mellon ``DensityEstimator`` configured like kompot's fit, holding ``predictor``."""
    est = DensityEstimator(
        landmarks=np.asarray(landmarks), gp_type="fixed", cov_func=cov_func, d=d, mu=mu,
        ls=ls, jitter=jitter, predictor_with_uncertainty=True,
    )
    est.log_density_func = predictor
    return est


def function_estimator(predictor, landmarks, cov_func, *, sigma, ls, jitter=1e-6):
    """A mellon ``FunctionEstimator`` configured like kompot's fit, holding ``predictor``."""
    est = FunctionEstimator(
        landmarks=np.asarray(landmarks), gp_type="fixed", cov_func=cov_func, sigma=sigma,
        ls=ls, jitter=jitter, predictor_with_uncertainty=True,
    )
    est.conditional = predictor
    return est
