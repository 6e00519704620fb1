"""Differential expression between two conditions along the cell-state landscape."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..core.blocks import block_slices
from ..core.fdr import fdr_dataframe
from ..core.function_gp import fit_function_parts
from ..core.kernel import matern52
from ..core.landmarks import shared_hyperparameters
from ..core.linalg import lower_solve
from ..core.mahalanobis import mahalanobis_distances
from .expression_model import ExpressionModel
from .sample_variance import SampleVarianceEstimator

logger = logging.getLogger("kompot")


class DifferentialExpression:
    """Compare gene expression between two conditions, cell state by cell state.

    Each condition gets an :class:`~kompot.ExpressionModel` (a Gaussian process
    over cell states) on one shared set of landmarks and one length scale
    computed from both conditions together. ``predict`` gives the smoothed
    expression of each condition at any cell state, its uncertainty and the
    fold change; the Mahalanobis distance of each gene summarises, in units of
    that uncertainty, how different the two expression profiles are.

    Parameters
    ----------
    n_landmarks
        Landmarks shared by both conditions; ``None`` uses ``min(n_cells, 1000)``.
    use_sample_variance
        Add between-replicate variance. ``None``: on when sample indices are given.
    use_empirical_variance
        Add each gene's empirical (aleatoric) variance.
    eps
        Diagonal regularisation of covariances and floor of variances.
    jit_compile
        Kept for API compatibility (kompot's numerics need no JIT); no effect.
    function_predictor1, function_predictor2
        Fitted mellon predictors of the mean expression, used as given.
    variance_predictor1, variance_predictor2
        Fitted sample-variance estimators, used as given.
    obs_variance_predictor1, obs_variance_predictor2
        Fitted empirical-variance callables ``X -> (n, G)``, used as given.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when predicting.
    store_arrays_on_disk, disk_storage_dir, max_memory_ratio
        Kept for API compatibility: kompot stores landmark-sized factors only and
        processes cells and genes in blocks, so these have no effect.
    model1, model2
        Fitted :class:`~kompot.ExpressionModel` objects, used as given.

    Attributes
    ----------
    mahalanobis_distances
        Distances of the last :meth:`compute_mahalanobis_distances`, per gene.
    prior_mean_weights, prior_variance_weights
        Landmark weights ``(n_landmarks, n_genes)`` of the prior means of
        expression and empirical variance that both conditions' fits shared
        (see :meth:`fit`), or ``None``.
    """

    def __init__(
        self,
        n_landmarks: int | None = None,
        use_sample_variance: bool | None = None,
        use_empirical_variance: bool = True,
        eps: float = 1e-8,
        jit_compile: bool = False,
        function_predictor1=None,
        function_predictor2=None,
        variance_predictor1=None,
        variance_predictor2=None,
        obs_variance_predictor1=None,
        obs_variance_predictor2=None,
        random_state: int | None = None,
        batch_size: int = 500,
        store_arrays_on_disk: bool | None = None,
        disk_storage_dir: str | None = None,
        max_memory_ratio: float = 0.8,
        model1: ExpressionModel | None = None,
        model2: ExpressionModel | None = None,
    ):
        self.n_landmarks = n_landmarks
        self.use_sample_variance = use_sample_variance
        self.use_empirical_variance = use_empirical_variance
        self.eps = eps
        self.jit_compile = jit_compile
        self.random_state = random_state
        self.batch_size = batch_size
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        self.max_memory_ratio = max_memory_ratio
        self.mahalanobis_distances = None
        self.landmarks = None
        self.prior_mean_weights = None
        self.prior_variance_weights = None
        self._given_models = model1 is not None and model2 is not None

        def make(fp, vp, op, given):
            if given is not None:
                return given
            return ExpressionModel(
                n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance, eps=eps,
                random_state=random_state, batch_size=batch_size, function_predictor=fp,
                obs_variance_predictor=op, variance_predictor=vp,
            )

        self.model1 = make(function_predictor1, variance_predictor1, obs_variance_predictor1, model1)
        self.model2 = make(function_predictor2, variance_predictor2, obs_variance_predictor2, model2)
        if self._given_models:
            self.landmarks = self.model1.landmarks

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X_condition1: np.ndarray,
        y_condition1: np.ndarray,
        X_condition2: np.ndarray,
        y_condition2: np.ndarray,
        sigma: float = 1.0,
        ls: float | None = None,
        ls_factor: float = 10.0,
        landmarks: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        condition1_sample_indices: np.ndarray | None = None,
        condition2_sample_indices: np.ndarray | None = None,
        allow_single_condition_variance: bool = False,
        **function_kwargs,
    ) -> DifferentialExpression:
        """Fit both conditions' expression models on shared landmarks and length scale.

        Predictions are not computed here; call :meth:`predict`.
        ``function_kwargs`` go to :meth:`ExpressionModel.fit` (``mu``,
        ``mean_weights``, ``variance_mean_weights``, ``jitter``, ``cov_func``).

        Unless ``mu`` or ``mean_weights`` is given, both conditions share one
        prior mean: a GP fitted to the cells of both conditions together (and
        its empirical variance, for theirs). Where a condition has few or no
        cells (a state it lacks), its fit then reverts to what the other
        condition shows there: the fold change goes to 0 with a wide
        uncertainty -- not to minus the expression, as with a constant prior
        mean of 0 -- and the empirical variance does not shrink towards 0.
        Without this, every gene expressed in a state that only one
        condition reaches looks changed.
        """
        if self._given_models:
            logger.info("model1 and model2 were given fitted; fit() leaves them as they are.")
            return self
        X1 = np.asarray(X_condition1, np.float64)
        X2 = np.asarray(X_condition2, np.float64)
        if X1.ndim != 2 or X2.ndim != 2 or X1.shape[1] != X2.shape[1]:
            raise ValueError(
                "X_condition1 and X_condition2 must be 2-D with the same number of features; "
                f"got {X1.shape} and {X2.shape}."
            )
        if y_condition1.shape[1] != y_condition2.shape[1]:
            raise ValueError(
                f"Both conditions need the same genes: y_condition1 has {y_condition1.shape[1]} "
                f"columns, y_condition2 has {y_condition2.shape[1]}."
            )
        use_samples = self.use_sample_variance
        if use_samples is None:
            use_samples = condition1_sample_indices is not None or condition2_sample_indices is not None
        if use_samples and (condition1_sample_indices is None or condition2_sample_indices is None):
            if not allow_single_condition_variance:
                raise ValueError(
                    "use_sample_variance needs sample indices for both conditions; pass both, or "
                    "set allow_single_condition_variance=True to use one condition's variance for both."
                )
        self.use_sample_variance = bool(use_samples)

        cov_func = function_kwargs.get("cov_func")
        if cov_func is not None and ls is None:
            ls = getattr(cov_func, "ls", None)
        self.landmarks, ls = shared_hyperparameters(
            [X1, X2], n_landmarks=self.n_landmarks, landmarks=landmarks, ls=ls,
            ls_factor=ls_factor, random_state=self.random_state,
        )
        own_fits = (self.model1._external_predictor is None
                    and self.model2._external_predictor is None)
        if own_fits and "mu" not in function_kwargs and function_kwargs.get("mean_weights") is None:
            pooled = fit_function_parts(
                [(X1, y_condition1), (X2, y_condition2)], self.landmarks,
                cov_func if cov_func is not None else matern52(ls), sigma=sigma,
                jitter=function_kwargs.get("jitter", 1e-6),
                obs_variance=self.use_empirical_variance, batch_size=max(self.batch_size, 2000),
            )
            function_kwargs["mean_weights"] = pooled.weights
            function_kwargs["variance_mean_weights"] = pooled.variance_weights
        # Kept so that refits on relabelled cells (the permutation null) can
        # reuse them: the union of the cells, and so the pooled fit, is the same.
        self.prior_mean_weights = function_kwargs.get("mean_weights")
        self.prior_variance_weights = function_kwargs.get("variance_mean_weights")
        common = dict(
            sigma=sigma, ls=ls, landmarks=self.landmarks, sample_estimator_ls=sample_estimator_ls,
            allow_single_condition_variance=allow_single_condition_variance, **function_kwargs,
        )
        self.model1.fit(X1, y_condition1,
                        sample_indices=condition1_sample_indices if use_samples else None, **common)
        self.model2.fit(X2, y_condition2,
                        sample_indices=condition2_sample_indices if use_samples else None, **common)
        if use_samples:
            self._lend_sample_variance(allow_single_condition_variance)
        return self

    def _lend_sample_variance(self, allow_single: bool) -> None:
        """With one condition lacking replicates, let the other's variance stand in."""
        has1, has2 = self.model1.has_sample_variance, self.model2.has_sample_variance
        if has1 and has2:
            return
        if not (has1 or has2):
            raise ValueError(
                "Neither condition has 2 or more replicate samples; sample variance cannot be "
                "estimated. Switch it off (use_sample_variance=False) or provide replicates."
            )
        if not allow_single:
            raise ValueError(
                "Only one condition has replicate samples. Set allow_single_condition_variance="
                "True to use its variance for both conditions."
            )
        donor = self.model1 if has1 else self.model2
        receiver = self.model2 if has1 else self.model1
        receiver._variance_predictor = donor.variance_estimator

    # --------------------------------------------------------- properties
    @property
    def function_predictor1(self):
        """Predictor of condition 1's mean expression (a mellon predictor)."""
        return self.model1.predictor

    @property
    def function_predictor2(self):
        """Predictor of condition 2's mean expression (a mellon predictor)."""
        return self.model2.predictor

    @property
    def variance_predictor1(self):
        """Sample-variance estimator of condition 1, or ``None``."""
        return self.model1.variance_estimator

    @property
    def variance_predictor2(self):
        """Sample-variance estimator of condition 2, or ``None``."""
        return self.model2.variance_estimator

    @property
    def empirical_variance_predictor1(self):
        """Callable giving condition 1's empirical variance, or ``None``."""
        return self.model1.obs_variance if self.model1.has_empirical_variance else None

    @property
    def empirical_variance_predictor2(self):
        """Callable giving condition 2's empirical variance, or ``None``."""
        return self.model2.obs_variance if self.model2.has_empirical_variance else None

    @property
    def expression_estimator_condition1(self):
        """mellon ``FunctionEstimator`` of condition 1 (holds the fitted predictor)."""
        return self.model1.estimator

    @property
    def expression_estimator_condition2(self):
        """mellon ``FunctionEstimator`` of condition 2 (holds the fitted predictor)."""
        return self.model2.estimator

    # ------------------------------------------------------------- predict
    def predict(
        self,
        X_new: np.ndarray,
        compute_mahalanobis: bool = False,
        progress: bool = True,
        use_landmarks: bool = True,
        landmarks_override: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Smoothed expression, uncertainty and fold change at ``X_new``.

        Returns a dict with ``condition1_smoothed``, ``condition2_smoothed``,
        ``condition1_std``, ``condition2_std``, ``fold_change`` (all
        cells x genes; ``fold_change = condition2 - condition1`` in the units of
        the input), ``mean_log_fold_change`` (per gene, the mean over ``X_new``)
        and, with ``compute_mahalanobis``, ``mahalanobis_distances``.
        """
        X_new = np.asarray(X_new, np.float64)
        n = X_new.shape[0]
        n_genes = self._n_genes()
        # Preallocated outputs filled block by block: no list of blocks to concatenate.
        result = {k: np.empty((n, n_genes)) for k in (
            "condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std")}
        fused = self.model1._shares_basis_with(self.model2)
        for s in block_slices(n, max(self.batch_size, 1), progress=progress, desc="predict DE"):
            if fused:
                # One kernel and one triangular solve per block serve both conditions.
                fit = self.model1._fit
                K = fit.kernel(X_new[s])
                As = lower_solve(fit.Lp, K.T)
            for i, model in ((1, self.model1), (2, self.model2)):
                mean_out = result[f"condition{i}_smoothed"][s]
                std_out = result[f"condition{i}_std"][s]
                if fused:
                    model._mean_and_std(X_new[s], K, As, mean_out, std_out)
                else:
                    mean_out[:] = model.predict(X_new[s], progress=False)
                    std_out[:] = model.std(X_new[s], progress=False)
        result["fold_change"] = np.subtract(result["condition2_smoothed"],
                                            result["condition1_smoothed"])
        result["mean_log_fold_change"] = result["fold_change"].mean(axis=0)
        if compute_mahalanobis:
            result["mahalanobis_distances"] = self.compute_mahalanobis_distances(
                X_new, fold_change=result["fold_change"], use_landmarks=use_landmarks,
                landmarks_override=landmarks_override, progress=progress,
            )
        return result

    def _n_genes(self) -> int:
        fit = self.model1._fit
        if fit is not None:
            return fit.weights.shape[1]
        probe = self.model1.predict(self.model1.landmarks[:1], progress=False)
        return probe.shape[1]

    def _points(self, X, use_landmarks, landmarks_override):
        if landmarks_override is not None:
            return np.asarray(landmarks_override, np.float64), False
        if use_landmarks and self.landmarks is not None:
            return self.landmarks, False
        return np.asarray(X, np.float64), True

    def mahalanobis_terms(self, points: np.ndarray, fold_change: np.ndarray | None = None):
        """Difference, shared covariance, low-rank and diagonal terms at ``points``.

        These are the inputs of :func:`kompot.core.mahalanobis.mahalanobis_distances`.
        """
        m1, m2 = self.model1, self.model2
        delta = fold_change if fold_change is not None else m2.predict(points, progress=False) - m1.predict(points, progress=False)
        shared = m1.covariance(points, diag=False) + m2.covariance(points, diag=False)
        shared = 0.5 * (shared + shared.T) + self.eps * np.eye(points.shape[0])
        diag = None
        if self.use_empirical_variance and (m1.has_empirical_variance or m2.has_empirical_variance):
            diag = np.zeros_like(delta)
            for model in (m1, m2):
                if model.has_empirical_variance:
                    diag = diag + model.obs_variance(points, progress=False)
        low_rank = None
        if self.use_sample_variance:
            factors = [self._sample_factor(model, points) for model in (m1, m2)]
            factors = [f for f in factors if f is not None]
            if factors:
                low_rank = np.concatenate(factors, axis=2)
        return delta, shared, low_rank, diag

    @staticmethod
    def _sample_factor(model: ExpressionModel, points: np.ndarray):
        vp = model.variance_estimator
        if vp is None:
            return None
        if isinstance(vp, SampleVarianceEstimator):
            return vp.low_rank_factor(points)
        # An arbitrary callable gives only a dense covariance: factor it per gene.
        cov = np.asarray(vp(points, diag=False))  # (m, m, G)
        w, V = np.linalg.eigh(np.moveaxis(cov, 2, 0))
        return V * np.sqrt(np.clip(w, 0, None))[:, None, :]

    def compute_mahalanobis_distances(
        self,
        X: np.ndarray,
        fold_change=None,
        use_landmarks: bool = True,
        landmarks_override: np.ndarray | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Exact Mahalanobis distance of each gene between the two conditions.

        Evaluated at the landmarks (or ``landmarks_override``) unless
        ``use_landmarks=False``, in which case the points ``X`` are used (and
        ``fold_change``, when given, as their difference vectors). The
        covariance is the sum of both posteriors, plus replicate and empirical
        variance when enabled; see ``docs/method.md``.
        """
        points, at_cells = self._points(X, use_landmarks, landmarks_override)
        fc = np.asarray(fold_change, np.float64) if (fold_change is not None and at_cells) else None
        delta, shared, low_rank, diag = self.mahalanobis_terms(points, fc)
        self.mahalanobis_distances = mahalanobis_distances(
            delta, shared, low_rank=low_rank, diag=diag, progress=progress,
        )
        return self.mahalanobis_distances

    def compute_fdr(self, null_mahalanobis, threshold=0.05, gene_names=None) -> pd.DataFrame:
        """FDR of the last computed Mahalanobis distances against ``null_mahalanobis``.

        Returns a DataFrame with ``mahalanobis, pvalue, local_fdr, tail_fdr,
        is_de`` (see :func:`kompot.core.fdr.empirical_fdr`).
        """
        if self.mahalanobis_distances is None:
            raise RuntimeError(
                "No Mahalanobis distances yet: call predict(..., compute_mahalanobis=True) or "
                "compute_mahalanobis_distances() first."
            )
        return fdr_dataframe(self.mahalanobis_distances, null_mahalanobis, threshold, gene_names)
