"""Turn kompot's fitted arrays into ordinary mellon predictors and estimators.

kompot fits its Gaussian processes itself (faster, batched), but hands the
results out as mellon objects so that anything built for mellon — calling a
predictor, ``covariance``, ``mean_covariance``, ``obs_variance``,
serialisation — keeps working. The objects are assembled from their state
variables, exactly as mellon's own deserialisation does.

mellon is imported here (and in :func:`kompot.core.density.fractal_dimension`)
only inside the functions that need it: importing mellon switches JAX to float64 and to the CPU for the whole process
and adds a handler to mellon's logger, so it happens when a user first asks
for a mellon object, never on ``import kompot`` or during a fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .kernel import Matern52

if TYPE_CHECKING:
    from .density import DensityFit
    from .function_gp import FunctionFit


def mellon_cov(cov_func):
    """mellon's covariance object for ``cov_func``: kompot's Matérn-5/2 converted, others as given."""
    if type(cov_func) is Matern52:
        from mellon.cov import Matern52 as MellonMatern52

        return MellonMatern52(ls=cov_func.ls)
    return cov_func


def _assemble(cls, state: dict, cov_func, n_obs: int, n_features: int):
    obj = cls.__new__(cls)
    obj.cov_func = mellon_cov(cov_func)
    for name, value in state.items():
        setattr(obj, name, value)
    obj.n_obs = n_obs
    obj.n_input_features = n_features
    obj._state_variables = set(state)
    return obj


def density_predictor(fit: DensityFit, landmarks: np.ndarray, cov_func, jitter: float = 1e-6):
    """A mellon ``LandmarksConditionalCholesky`` equal to ``fit``."""
    from mellon.conditional import LandmarksConditionalCholesky

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
    from mellon.conditional import LandmarksConditional

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
    from mellon import DensityEstimator

    est = DensityEstimator(
        landmarks=np.asarray(landmarks), gp_type="fixed", cov_func=mellon_cov(cov_func), d=d,
        mu=mu, ls=ls, jitter=jitter, predictor_with_uncertainty=True,
    )
    est.log_density_func = predictor
    return est


def function_estimator(predictor, landmarks, cov_func, *, sigma, ls, jitter=1e-6):
    """A mellon ``FunctionEstimator`` configured like kompot's fit, holding ``predictor``."""
    from mellon import FunctionEstimator

    est = FunctionEstimator(
        landmarks=np.asarray(landmarks), gp_type="fixed", cov_func=mellon_cov(cov_func),
        sigma=sigma, ls=ls, jitter=jitter, predictor_with_uncertainty=True,
    )
    est.conditional = predictor
    return est
