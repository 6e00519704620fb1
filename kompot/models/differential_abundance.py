"""Differential abundance: where in cell-state space one condition has more cells."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .._warnings import KompotWarning, warn_inert_parameters
from ..core.blocks import block_slices
from ..core.density import DensityFit, fit_density, prior_mean
from ..core.kernel import kernel_matrix, matern52
from ..core.landmarks import nearest_neighbor_distances, shared_hyperparameters
from ..core.linalg import lower_solve
from ..core.stats import direction, neg_log10_ptp, zscore
from ._fitted import fitted_or_given, not_fitted
from .sample_variance import SampleVarianceEstimator, call_variance_predictor

logger = logging.getLogger("kompot")

_RESULT_ATTRIBUTES = ("log_density_condition1", "log_density_condition2", "log_fold_change",
                      "log_fold_change_uncertainty", "log_fold_change_zscore",
                      "log_fold_change_ptp", "log_fold_change_direction")
_DENSITY_KWARGS = {"ls", "d", "mu", "jitter", "cov_func", "n_landmarks"}
# Median share of the prior variance the landmarks leave unexplained at the
# cells above which predict() warns that n_landmarks is too small.
_COVERAGE_WARNING = 0.1
# Cells per block when predicting if the user gives no batch_size.
_DEFAULT_PREDICT_BLOCK = 20_000


def _check_conditions(X1, X2) -> tuple[np.ndarray, np.ndarray]:
    """Both conditions' cell states as float64, after checking shapes and cell counts."""
    X1, X2 = np.asarray(X1, np.float64), np.asarray(X2, np.float64)
    if X1.ndim != 2 or X2.ndim != 2 or X1.shape[1] != X2.shape[1]:
        raise ValueError(
            "X_condition1 and X_condition2 must be 2-D with the same number of features; "
            f"got {X1.shape} and {X2.shape}."
        )
    if min(len(X1), len(X2)) < 2:
        raise ValueError("Each condition needs at least 2 cells to estimate a density.")
    return X1, X2


class DifferentialAbundance:
    """Compare the density of cells between two conditions at every cell state.

    Each condition's log density is a Gaussian process over cell states
    (mellon's nearest-neighbour density model) on landmarks and a length scale
    shared by both conditions. The log fold change at a cell state is
    ``log density(condition 2) - log density(condition 1)`` (natural log,
    each density normalised by its number of cells), with a posterior
    variance, a z-score and a one-sided posterior tail probability (PTP).

    Parameters
    ----------
    log_fold_change_threshold
        Minimum absolute log fold change for a cell to be called up or down.
    ptp_threshold
        Maximum PTP for a cell to be called up or down.
    n_landmarks
        Landmarks shared by both conditions; ``None`` uses ``min(n_cells, 1000)``.
    use_sample_variance
        Add between-replicate variance of the log density. ``None``: on when
        sample indices are given to :meth:`fit` or variance predictors to the
        constructor.
    eps
        Added to the variance before dividing by its square root.
    jit_compile
        Has no effect (kompot's numerics need no JIT); kept so that kompot
        0.8.0 code runs. Setting it warns.
    density_predictor1, density_predictor2
        Fitted mellon density predictors, used as given (``fit`` skips them;
        with both, :meth:`predict` works without :meth:`fit`).
    variance_predictor1, variance_predictor2
        Fitted density :class:`~kompot.SampleVarianceEstimator` objects, or
        callables ``predictor(X, diag=True)`` as kompot 0.8.0 stores them,
        used as given.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when predicting; ``None`` picks a memory-safe block.

    Attributes
    ----------
    landmarks_, ls_
        Landmarks and length scale both fits share (``landmarks`` and ``ls``
        are read-only aliases).
    use_sample_variance_
        Whether the fit includes between-replicate variance.
    density_predictor1_, density_predictor2_
        The fitted (or given) mellon predictors; built from kompot's fit on
        first access, which imports mellon. ``density_predictor1`` and
        ``density_predictor2`` give these once fitted, else the constructor's.
    variance_predictor1_, variance_predictor2_
        The sample-variance estimators in use (read likewise through
        ``variance_predictor1`` and ``variance_predictor2``).
    log_density_condition1, log_density_condition2, log_fold_change,
    log_fold_change_uncertainty, log_fold_change_zscore, log_fold_change_ptp,
    log_fold_change_direction
        Results of the last :meth:`predict` (PTP itself, not its log).
    """

    def __init__(
        self,
        log_fold_change_threshold: float = 1.0,
        ptp_threshold: float = 0.05,
        n_landmarks: int | None = None,
        use_sample_variance: bool | None = None,
        eps: float = 1e-12,
        jit_compile: bool = False,
        density_predictor1=None,
        density_predictor2=None,
        variance_predictor1=None,
        variance_predictor2=None,
        random_state: int | None = None,
        batch_size: int | None = None,
    ):
        self.log_fold_change_threshold = log_fold_change_threshold
        self.ptp_threshold = ptp_threshold
        self.n_landmarks = n_landmarks
        self.use_sample_variance = use_sample_variance
        self.eps = eps
        self.jit_compile = jit_compile
        # These names are also read-only properties giving the fitted objects
        # (as kompot 0.8.0 exposes them); the arguments are kept under "_name".
        self._density_predictor1 = density_predictor1
        self._density_predictor2 = density_predictor2
        self._variance_predictor1 = variance_predictor1
        self._variance_predictor2 = variance_predictor2
        self.random_state = random_state
        self.batch_size = batch_size
        warn_inert_parameters("DifferentialAbundance", dict(jit_compile=jit_compile),
                              dict(jit_compile=False))
        self._reset()

    def _reset(self) -> None:
        """Forget everything a previous :meth:`fit` or :meth:`predict` learned."""
        self._fitted = False
        self.landmarks_ = self.ls_ = self.cov_func_ = None
        self.use_sample_variance_ = None
        self.variance_predictor1_ = self.variance_predictor2_ = None
        self._fits: dict[int, DensityFit] = {}
        self._estimator_settings: dict[int, dict] = {}
        self._estimators: dict[int, object] = {}
        self._predictors: dict[int, object] = {}
        for name in _RESULT_ATTRIBUTES:
            setattr(self, name, None)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X_condition1: np.ndarray,
        X_condition2: np.ndarray,
        landmarks: np.ndarray | None = None,
        ls_factor: float = 10.0,
        condition1_sample_indices: np.ndarray | None = None,
        condition2_sample_indices: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        sync_parameters: bool = False,
        allow_single_condition_variance: bool = False,
        **density_kwargs,
    ) -> DifferentialAbundance:
        """Fit one density per condition on shared landmarks and length scale.

        ``density_kwargs`` may set ``ls`` (length scale; otherwise
        ``ls_factor`` times mellon's rule on the union of both conditions),
        ``d`` (dimensionality, default the number of features), ``mu`` (prior
        mean), ``jitter`` and ``cov_func``. With ``sync_parameters=True`` the
        dimensionality and prior mean are also computed once, on the union.
        Fold changes are computed by :meth:`predict`. Everything learned by
        an earlier call is discarded first, so a refit equals a fresh fit.
        """
        unknown = set(density_kwargs) - _DENSITY_KWARGS
        if unknown:
            raise TypeError(
                f"Unsupported keyword(s) {sorted(unknown)}; DifferentialAbundance.fit accepts "
                f"{sorted(_DENSITY_KWARGS)} besides its named parameters."
            )
        X1, X2 = _check_conditions(X_condition1, X_condition2)
        self._reset()
        cov_func = density_kwargs.get("cov_func")
        self.landmarks_, self.ls_ = shared_hyperparameters(
            [X1, X2], n_landmarks=density_kwargs.get("n_landmarks", self.n_landmarks),
            landmarks=landmarks, ls=density_kwargs.get("ls", getattr(cov_func, "ls", None)),
            ls_factor=ls_factor, random_state=self.random_state,
        )
        self.cov_func_ = cov_func if cov_func is not None else matern52(self.ls_)
        jitter = density_kwargs.get("jitter", 1e-6)
        d = density_kwargs.get("d", X1.shape[1])
        mu_sync = density_kwargs.get("mu")
        if sync_parameters and mu_sync is None:
            mu_sync = prior_mean(nearest_neighbor_distances(np.vstack([X1, X2])), d)
        for which, X in ((1, X1), (2, X2)):
            if getattr(self, f"_density_predictor{which}") is not None:
                continue  # given fitted: used as it is
            r = nearest_neighbor_distances(X)
            mu = mu_sync if mu_sync is not None else prior_mean(r, d)
            self._fits[which] = fit_density(X, self.landmarks_, self.cov_func_, d=d, mu=mu,
                                            nn_distances=r, jitter=jitter)
            self._estimator_settings[which] = {"d": d, "mu": mu, "jitter": jitter}
        indices = (condition1_sample_indices, condition2_sample_indices)
        self.use_sample_variance_ = self._sample_variance_wanted(indices)
        if self.use_sample_variance_:
            self._fit_sample_variance((X1, X2), indices, sample_estimator_ls,
                                      allow_single_condition_variance, d, jitter)
        self._fitted = True
        return self

    def _sample_variance_wanted(self, indices=(None, None)) -> bool:
        """``use_sample_variance``, or when ``None``: on if replicates or predictors are given."""
        if self.use_sample_variance is not None:
            return bool(self.use_sample_variance)
        given = (self._variance_predictor1, self._variance_predictor2)
        return any(v is not None for v in (*indices, *given))

    def _fit_sample_variance(self, Xs, indices, sample_ls, allow_single, d, jitter):
        cov = matern52(sample_ls) if sample_ls else self.cov_func_
        estimators = [self._variance_predictor1, self._variance_predictor2]
        for i, (X, idx) in enumerate(zip(Xs, indices, strict=True)):
            if estimators[i] is not None or idx is None:
                continue
            try:
                estimators[i] = SampleVarianceEstimator(estimator_type="density").fit(
                    X, grouping_vector=idx,
                    estimator_kwargs={"landmarks": self.landmarks_, "cov_func": cov, "d": d,
                                      "jitter": jitter},
                )
            except ValueError:
                if not allow_single:
                    raise
        if estimators[0] is None and estimators[1] is None:
            raise ValueError(
                "No condition has 2 or more replicate samples (or a variance predictor); sample "
                "variance cannot be estimated. Pass use_sample_variance=False or provide replicates."
            )
        if estimators[0] is None or estimators[1] is None:
            if not allow_single:
                raise ValueError(
                    "Only one condition has replicate samples. Set "
                    "allow_single_condition_variance=True to use its variance for both."
                )
            donor = estimators[0] if estimators[0] is not None else estimators[1]
            estimators = [donor, donor]
        self.variance_predictor1_, self.variance_predictor2_ = estimators

    # ----------------------------------------------------------- properties
    def _density_predictor(self, which: int):
        """The fitted (or given) mellon predictor of one condition; ``None`` before fit."""
        if not self._fitted:
            return None
        given = getattr(self, f"_density_predictor{which}")
        if given is not None:
            return given
        if which not in self._predictors:
            from ..core.mellon_bridge import density_predictor

            self._predictors[which] = density_predictor(
                self._fits[which], self.landmarks_, self.cov_func_,
                self._estimator_settings[which]["jitter"],
            )
        return self._predictors[which]

    density_predictor1_ = property(lambda self: self._density_predictor(1),
                                   doc="Condition 1's fitted mellon density predictor.")
    density_predictor2_ = property(lambda self: self._density_predictor(2),
                                   doc="Condition 2's fitted mellon density predictor.")
    density_predictor1 = fitted_or_given(
        "density_predictor1", "Condition 1's density predictor: the fitted one, else the given one.")
    density_predictor2 = fitted_or_given(
        "density_predictor2", "Condition 2's density predictor: the fitted one, else the given one.")
    variance_predictor1 = fitted_or_given(
        "variance_predictor1", "Condition 1's sample-variance estimator in use, else the given one.")
    variance_predictor2 = fitted_or_given(
        "variance_predictor2", "Condition 2's sample-variance estimator in use, else the given one.")
    landmarks = property(lambda self: self.landmarks_, doc="Read-only alias of ``landmarks_``.")
    ls = property(lambda self: self.ls_, doc="Read-only alias of ``ls_``.")

    def _estimator(self, which: int):
        if which not in self._estimators and which in self._estimator_settings:
            from ..core.mellon_bridge import density_estimator

            self._estimators[which] = density_estimator(
                self._density_predictor(which), self.landmarks_, self.cov_func_,
                ls=self.ls_, **self._estimator_settings[which],
            )
        return self._estimators.get(which)

    @property
    def density_estimator1(self):
        """mellon ``DensityEstimator`` of condition 1 holding the fitted predictor (built on access)."""
        return self._estimator(1)

    @property
    def density_estimator2(self):
        """mellon ``DensityEstimator`` of condition 2 holding the fitted predictor (built on access)."""
        return self._estimator(2)

    # ------------------------------------------------------------- predict
    def _check_predictable(self) -> list:
        """Raise unless fitted or given both density predictors; the variance predictors to add."""
        if not self._fitted:
            if self._density_predictor1 is None or self._density_predictor2 is None:
                raise not_fitted(
                    "DifferentialAbundance",
                    "call fit(X_condition1, X_condition2) first, or pass density_predictor1 "
                    "and density_predictor2",
                )
            use = self._sample_variance_wanted()
            given = (self._variance_predictor1, self._variance_predictor2)
        else:
            use = self.use_sample_variance_
            given = (self.variance_predictor1_, self.variance_predictor2_)
        return [vp for vp in given if use and vp is not None]

    def _nystrom_residual(self, K: np.ndarray) -> np.ndarray:
        """Prior variance the landmarks do not explain, ``1 - k^T K_uu^{-1} k``.

        The same for both conditions, since they share landmarks and kernel.
        """
        Lp = next(iter(self._fits.values())).Lp
        return np.maximum(1.0 - np.sum(np.square(lower_solve(Lp, K.T)), axis=0), 0.0)

    def _warn_on_poor_coverage(self, X: np.ndarray) -> None:
        """Warn when the landmarks leave much of the prior unexplained at the cells."""
        sample = X[:: max(1, len(X) // 2000)]
        residual = self._nystrom_residual(kernel_matrix(self.cov_func_, sample, self.landmarks_))
        median = float(np.median(residual))
        if median > _COVERAGE_WARNING:
            warnings.warn(
                f"The {len(self.landmarks_)} landmarks cover the cell states poorly at length "
                f"scale {self.ls_:.3g} (median unexplained prior variance {median:.2f}); "
                "increase n_landmarks or ls_factor.",
                KompotWarning, stacklevel=3,
            )

    def _density_moments(self, which: int, X: np.ndarray, K, residual):
        """Normalised log density and its posterior variance at ``X``.

        The variance is the Laplace posterior variance of the fitted latent
        plus the Nyström residual, mellon's ``mean_covariance + covariance``.
        """
        fit = self._fits.get(which)
        if fit is not None:
            mean = fit.mu + K @ fit.weights - np.log(fit.n_obs)
            mean_var = np.sum(np.square(K @ fit.uncertainty_factor), axis=1)
            return mean, residual + mean_var
        predictor = getattr(self, f"_density_predictor{which}")
        mean = np.asarray(predictor(X, normalize=True), np.float64)
        var = np.zeros_like(mean)
        for method in ("covariance", "mean_covariance"):
            try:
                var = var + np.asarray(getattr(predictor, method)(X, diag=True), np.float64)
            except (AttributeError, ValueError):
                logger.debug("Predictor %d has no %s; left out of the variance.", which, method)
        return mean, var

    def predict(
        self,
        X_new: np.ndarray,
        log_fold_change_threshold: float | None = None,
        ptp_threshold: float | None = None,
        progress: bool = True,
    ) -> dict[str, np.ndarray]:
        """Log densities, log fold change and its significance at ``X_new``.

        Returns a dict with ``log_density_condition1``,
        ``log_density_condition2``, ``log_fold_change`` (condition 2 minus
        condition 1), ``log_fold_change_uncertainty`` (its variance),
        ``log_fold_change_zscore``, ``neg_log10_fold_change_ptp`` and
        ``log_fold_change_direction`` (``'up'``, ``'down'`` or ``'neutral'``).
        """
        variance_predictors = self._check_predictable()
        lfc_t = self.log_fold_change_threshold if log_fold_change_threshold is None else log_fold_change_threshold
        ptp_t = self.ptp_threshold if ptp_threshold is None else ptp_threshold
        X_new = np.asarray(X_new, np.float64)
        n = X_new.shape[0]
        ld1, ld2, u = np.empty(n), np.empty(n), np.empty(n)
        for s in block_slices(n, self.batch_size or _DEFAULT_PREDICT_BLOCK, progress=progress,
                              desc="predict DA"):
            K = residual = None
            if self._fits:
                K = kernel_matrix(self.cov_func_, X_new[s], self.landmarks_)
                residual = self._nystrom_residual(K)
            m1, v1 = self._density_moments(1, X_new[s], K, residual)
            m2, v2 = self._density_moments(2, X_new[s], K, residual)
            ld1[s], ld2[s], u[s] = m1, m2, v1 + v2
            for vp in variance_predictors:
                u[s] += call_variance_predictor(vp, X_new[s], diag=True).reshape(-1)
        if self._fits:
            self._warn_on_poor_coverage(X_new)
        lfc = ld2 - ld1
        z = zscore(lfc, u, self.eps)
        nl10 = neg_log10_ptp(z)
        calls = direction(lfc, nl10, lfc_t, ptp_t)
        self.log_density_condition1, self.log_density_condition2 = ld1, ld2
        self.log_fold_change, self.log_fold_change_uncertainty = lfc, u
        self.log_fold_change_zscore, self.log_fold_change_ptp = z, 10.0 ** (-nl10)
        self.log_fold_change_direction = calls
        return {
            "log_density_condition1": ld1,
            "log_density_condition2": ld2,
            "log_fold_change": lfc,
            "log_fold_change_uncertainty": u,
            "log_fold_change_zscore": z,
            "neg_log10_fold_change_ptp": nl10,
            "log_fold_change_direction": calls,
        }
