"""Differential abundance: where in cell-state space one condition has more cells."""

from __future__ import annotations

import logging

import numpy as np

from ..core.blocks import block_slices
from ..core.density import DensityFit, fit_density, prior_mean
from ..core.kernel import kernel_matrix, matern52
from ..core.landmarks import nearest_neighbor_distances, shared_hyperparameters
from ..core.linalg import lower_solve
from ..core.mellon_bridge import density_estimator, density_predictor
from ..core.stats import direction, neg_log10_ptp, zscore
from .sample_variance import SampleVarianceEstimator

logger = logging.getLogger("kompot")

_DENSITY_KWARGS = {"ls", "d", "mu", "jitter", "cov_func", "n_landmarks"}
# Median share of the prior variance the landmarks leave unexplained at the
# cells above which predict() warns that n_landmarks is too small.
_COVERAGE_WARNING = 0.1
# Cells per block when predicting if the user gives no batch_size.
_DEFAULT_PREDICT_BLOCK = 20_000


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
        sample indices are given.
    eps
        Added to the variance before dividing by its square root.
    jit_compile
        Kept for API compatibility (kompot's numerics need no JIT); no effect.
    density_predictor1, density_predictor2
        Fitted mellon density predictors, used as given (``fit`` skips them).
    variance_predictor1, variance_predictor2
        Fitted density :class:`~kompot.SampleVarianceEstimator` objects, used as given.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when predicting; ``None`` picks a memory-safe block.

    Attributes
    ----------
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
        self.density_predictor1 = density_predictor1
        self.density_predictor2 = density_predictor2
        self.variance_predictor1 = variance_predictor1
        self.variance_predictor2 = variance_predictor2
        self.random_state = random_state
        self.batch_size = batch_size
        self.landmarks = None
        self.ls = None
        self._estimator_settings: dict[int, dict] = {}
        self._estimators: dict[int, object] = {}
        self._fits: dict[int, DensityFit] = {}
        self._cov_func = None
        for name in ("log_density_condition1", "log_density_condition2", "log_fold_change",
                     "log_fold_change_uncertainty", "log_fold_change_zscore",
                     "log_fold_change_ptp", "log_fold_change_direction"):
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
        Fold changes are computed by :meth:`predict`.
        """
        unknown = set(density_kwargs) - _DENSITY_KWARGS
        if unknown:
            raise TypeError(
                f"Unsupported keyword(s) {sorted(unknown)}; DifferentialAbundance.fit accepts "
                f"{sorted(_DENSITY_KWARGS)} besides its named parameters."
            )
        X1 = np.asarray(X_condition1, np.float64)
        X2 = np.asarray(X_condition2, np.float64)
        if X1.ndim != 2 or X2.ndim != 2 or X1.shape[1] != X2.shape[1]:
            raise ValueError(
                "X_condition1 and X_condition2 must be 2-D with the same number of features; "
                f"got {X1.shape} and {X2.shape}."
            )
        if min(len(X1), len(X2)) < 2:
            raise ValueError("Each condition needs at least 2 cells to estimate a density.")
        n_landmarks = density_kwargs.get("n_landmarks", self.n_landmarks)
        cov_func = density_kwargs.get("cov_func")
        ls = density_kwargs.get("ls", getattr(cov_func, "ls", None))
        self.landmarks, self.ls = shared_hyperparameters(
            [X1, X2], n_landmarks=n_landmarks, landmarks=landmarks, ls=ls,
            ls_factor=ls_factor, random_state=self.random_state,
        )
        self._cov_func = cov_func if cov_func is not None else matern52(self.ls)
        jitter = density_kwargs.get("jitter", 1e-6)
        d = density_kwargs.get("d", X1.shape[1])
        mu_sync = density_kwargs.get("mu")
        if sync_parameters and mu_sync is None:
            mu_sync = prior_mean(nearest_neighbor_distances(np.vstack([X1, X2])), d)

        predictors = [self.density_predictor1, self.density_predictor2]
        for i, X in enumerate((X1, X2)):
            if predictors[i] is not None:
                continue  # given fitted: used as it is
            r = nearest_neighbor_distances(X)
            mu = mu_sync if mu_sync is not None else prior_mean(r, d)
            fit = fit_density(X, self.landmarks, self._cov_func, d=d, mu=mu, nn_distances=r,
                              jitter=jitter)
            self._fits[i + 1] = fit
            predictors[i] = density_predictor(fit, self.landmarks, self._cov_func, jitter)
            self._estimator_settings[i + 1] = {"d": d, "mu": mu, "jitter": jitter}
        self.density_predictor1, self.density_predictor2 = predictors

        use_samples = self.use_sample_variance
        if use_samples is None:
            use_samples = condition1_sample_indices is not None or condition2_sample_indices is not None
        self.use_sample_variance = bool(use_samples)
        if use_samples:
            self._fit_sample_variance(
                (X1, X2), (condition1_sample_indices, condition2_sample_indices),
                sample_estimator_ls, allow_single_condition_variance, d, jitter,
            )
        return self

    def _fit_sample_variance(self, Xs, indices, sample_ls, allow_single, d, jitter):
        cov = matern52(sample_ls) if sample_ls else self._cov_func
        estimators = [self.variance_predictor1, self.variance_predictor2]
        for i, (X, idx) in enumerate(zip(Xs, indices, strict=True)):
            if estimators[i] is not None or idx is None:
                continue
            try:
                estimators[i] = SampleVarianceEstimator(estimator_type="density").fit(
                    X, grouping_vector=idx,
                    estimator_kwargs={"landmarks": self.landmarks, "cov_func": cov, "d": d,
                                      "jitter": jitter},
                )
            except ValueError:
                if not allow_single:
                    raise
        if estimators[0] is None and estimators[1] is None:
            raise ValueError(
                "No condition has 2 or more replicate samples; sample variance cannot be "
                "estimated. Pass use_sample_variance=False or provide replicates."
            )
        if estimators[0] is None or estimators[1] is None:
            if not allow_single:
                raise ValueError(
                    "Only one condition has replicate samples. Set "
                    "allow_single_condition_variance=True to use its variance for both."
                )
            donor = estimators[0] if estimators[0] is not None else estimators[1]
            estimators = [donor, donor]
        self.variance_predictor1, self.variance_predictor2 = estimators

    def _estimator(self, which: int):
        if which not in self._estimators and which in self._estimator_settings:
            self._estimators[which] = density_estimator(
                getattr(self, f"density_predictor{which}"), self.landmarks, self._cov_func,
                ls=self.ls, **self._estimator_settings[which],
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
    def _nystrom_residual(self, K: np.ndarray) -> np.ndarray:
        """Prior variance the landmarks do not explain, ``1 - k^T K_uu^{-1} k``.

        The same for both conditions, since they share landmarks and kernel.
        """
        Lp = next(iter(self._fits.values())).Lp
        return np.maximum(1.0 - np.sum(np.square(lower_solve(Lp, K.T)), axis=0), 0.0)

    def _warn_on_poor_coverage(self, X: np.ndarray) -> None:
        """Warn when the landmarks leave much of the prior unexplained at the cells."""
        sample = X[:: max(1, len(X) // 2000)]
        residual = self._nystrom_residual(kernel_matrix(self._cov_func, sample, self.landmarks))
        median = float(np.median(residual))
        if median > _COVERAGE_WARNING:
            logger.warning(
                "The %d landmarks cover the cell states poorly at length scale %.3g (median "
                "unexplained prior variance %.2f); increase n_landmarks or ls_factor.",
                len(self.landmarks), self.ls, median,
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
        predictor = getattr(self, f"density_predictor{which}")
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
        if self.density_predictor1 is None or self.density_predictor2 is None:
            raise RuntimeError("DifferentialAbundance is not fitted; call fit() first.")
        lfc_t = self.log_fold_change_threshold if log_fold_change_threshold is None else log_fold_change_threshold
        ptp_t = self.ptp_threshold if ptp_threshold is None else ptp_threshold
        X_new = np.asarray(X_new, np.float64)
        n = X_new.shape[0]
        ld1, ld2, u = np.empty(n), np.empty(n), np.empty(n)
        for s in block_slices(n, self.batch_size or _DEFAULT_PREDICT_BLOCK, progress=progress,
                              desc="predict DA"):
            K = residual = None
            if self._fits:
                K = kernel_matrix(self._cov_func, X_new[s], self.landmarks)
                residual = self._nystrom_residual(K)
            m1, v1 = self._density_moments(1, X_new[s], K, residual)
            m2, v2 = self._density_moments(2, X_new[s], K, residual)
            ld1[s], ld2[s], u[s] = m1, m2, v1 + v2
            for vp in (self.variance_predictor1, self.variance_predictor2):
                if self.use_sample_variance and vp is not None:
                    u[s] += np.asarray(vp.predict(X_new[s], diag=True, progress=False)).reshape(-1)
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
