"""Differential expression between two conditions along the cell-state landscape."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .._warnings import warn_inert_parameters
from ..core import backend
from ..core.blocks import block_slices
from ..core.fdr import fdr_dataframe
from ..core.function_gp import fit_function_parts
from ..core.kernel import _is_plain_matern52, matern52
from ..core.landmarks import shared_hyperparameters
from ..core.linalg import lower_solve
from ..core.mahalanobis import mahalanobis_distances
from ._de_statistics import fold_change_zscores, mahalanobis_terms, mean_zscore_neg_log10_ptp
from ._fitted import fitted_or_given, not_fitted
from .expression_model import ExpressionModel

logger = logging.getLogger("kompot")


def _kernel_block(fit, X: np.ndarray, device_cache: dict | None):
    """``K = k(X, U)`` and ``As = Lp^{-1} K^T``; on the JAX device (``As`` inside ``K``) with a cache."""
    if device_cache is not None:
        return backend.KernelBlock(X, fit.landmarks, fit.cov_func.ls, fit.Lp, device_cache), None
    K = fit.kernel(X)
    return K, lower_solve(fit.Lp, K.T)


def _check_conditions(X1, y1, X2, y2) -> tuple[np.ndarray, np.ndarray]:
    """Both conditions' cell states as float64, after checking that the shapes fit."""
    X1, X2 = np.asarray(X1, np.float64), np.asarray(X2, np.float64)
    if X1.ndim != 2 or X2.ndim != 2 or X1.shape[1] != X2.shape[1]:
        raise ValueError(
            "X_condition1 and X_condition2 must be 2-D with the same number of features; "
            f"got {X1.shape} and {X2.shape}."
        )
    if y1.shape[1] != y2.shape[1]:
        raise ValueError(
            f"Both conditions need the same genes: y_condition1 has {y1.shape[1]} "
            f"columns, y_condition2 has {y2.shape[1]}."
        )
    return X1, X2


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
        Add between-replicate variance. ``None``: on when sample indices are
        given to :meth:`fit` or variance predictors to the constructor.
    use_empirical_variance
        Add each gene's empirical (aleatoric) variance.
    eps
        Diagonal regularisation of covariances and floor of variances.
    jit_compile
        Has no effect (kompot's numerics need no JIT); kept so that kompot
        0.8.0 code runs. Setting it warns.
    function_predictor1, function_predictor2
        Fitted mellon predictors of the mean expression, used as given
        (:meth:`predict` then works without :meth:`fit`).
    variance_predictor1, variance_predictor2
        Fitted sample-variance estimators, or callables
        ``predictor(X, diag=True)`` as kompot 0.8.0 stores them, used as given.
    obs_variance_predictor1, obs_variance_predictor2
        Fitted empirical-variance callables ``X -> (n, G)``, used as given.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when predicting.
    store_arrays_on_disk, disk_storage_dir, max_memory_ratio
        Have no effect (kompot stores landmark-sized factors only and works
        on blocks of cells and genes); kept for compatibility. Setting them warns.
    model1, model2
        Fitted :class:`~kompot.ExpressionModel` objects, used as given
        (``fit`` fits nothing then).

    Attributes
    ----------
    model1_, model2_
        The two conditions' fitted :class:`~kompot.ExpressionModel` objects
        (``model1``/``model2`` read them, falling back on the constructor's).
    landmarks_
        Landmarks both fits share.
    use_sample_variance_
        Whether the fit includes between-replicate variance.
    prior_mean_weights_, prior_variance_weights_
        Landmark weights ``(n_landmarks, n_genes)`` of the prior means of
        expression and empirical variance that both conditions' fits shared
        (see :meth:`fit`), or ``None``. ``prior_mean_weights`` and
        ``prior_variance_weights`` are read-only aliases.
    mahalanobis_distances
        Distances of the last :meth:`compute_mahalanobis_distances`, per gene.
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
        self.obs_variance_predictor1 = obs_variance_predictor1
        self.obs_variance_predictor2 = obs_variance_predictor2
        self.random_state = random_state
        self.batch_size = batch_size
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        self.max_memory_ratio = max_memory_ratio
        # These names are also read-only properties giving the fitted objects
        # (the seed documents them so); the arguments are kept under "_name".
        self._function_predictor1 = function_predictor1
        self._function_predictor2 = function_predictor2
        self._variance_predictor1 = variance_predictor1
        self._variance_predictor2 = variance_predictor2
        self._model1 = model1
        self._model2 = model2
        warn_inert_parameters(
            "DifferentialExpression",
            dict(jit_compile=jit_compile, store_arrays_on_disk=store_arrays_on_disk,
                 disk_storage_dir=disk_storage_dir, max_memory_ratio=max_memory_ratio),
            dict(jit_compile=False, store_arrays_on_disk=None, disk_storage_dir=None,
                 max_memory_ratio=0.8),
        )
        self._reset()

    def _reset(self) -> None:
        """Forget everything a previous :meth:`fit` (or predict) learned."""
        self.model1_ = self.model2_ = None
        self.landmarks_ = None
        self.use_sample_variance_ = None
        self.prior_mean_weights_ = self.prior_variance_weights_ = None
        self.mahalanobis_distances = None

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
        ``mean_weights``, ``variance_mean_weights``, ``jitter``, ``cov_func``,
        ``replicate_bases``).
        Everything learned by an earlier call is discarded first, so a refit
        equals a fit of a fresh instance.

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
        self._reset()
        indices = (condition1_sample_indices, condition2_sample_indices)
        if self._model1 is not None and self._model2 is not None:
            logger.info("model1 and model2 were given fitted; fit() leaves them as they are.")
            self.model1_, self.model2_ = self._model1, self._model2
            self.landmarks_ = self._model1.landmarks
            self.use_sample_variance_ = self._sample_variance_wanted(indices)
            return self
        X1, X2 = _check_conditions(X_condition1, y_condition1, X_condition2, y_condition2)
        use_samples = self._sample_variance_wanted(indices)
        self._check_sample_sources(use_samples, indices, allow_single_condition_variance)
        cov_func = function_kwargs.get("cov_func")
        if cov_func is not None and ls is None:
            ls = getattr(cov_func, "ls", None)
        landmarks, ls = shared_hyperparameters(
            [X1, X2], n_landmarks=self.n_landmarks, landmarks=landmarks, ls=ls,
            ls_factor=ls_factor, random_state=self.random_state,
        )
        own_fits = self._function_predictor1 is None and self._function_predictor2 is None
        if own_fits and "mu" not in function_kwargs and function_kwargs.get("mean_weights") is None:
            pooled = fit_function_parts(
                [(X1, y_condition1), (X2, y_condition2)], landmarks,
                cov_func if cov_func is not None else matern52(ls), sigma=sigma,
                jitter=function_kwargs.get("jitter", 1e-6),
                obs_variance=self.use_empirical_variance, batch_size=max(self.batch_size, 2000),
            )
            function_kwargs["mean_weights"] = pooled.weights
            function_kwargs["variance_mean_weights"] = pooled.variance_weights
        common = dict(
            sigma=sigma, ls=ls, landmarks=landmarks, sample_estimator_ls=sample_estimator_ls,
            allow_single_condition_variance=allow_single_condition_variance, **function_kwargs,
        )
        models = []
        for which, (X, y, idx) in enumerate(
            ((X1, y_condition1, indices[0]), (X2, y_condition2, indices[1])), start=1
        ):
            model = self._new_model(which, use_samples)
            models.append(model.fit(X, y, sample_indices=idx if use_samples else None, **common))
        self.model1_, self.model2_ = models
        self.landmarks_, self.use_sample_variance_ = landmarks, use_samples
        # Kept so that refits on relabelled cells (the permutation null) can
        # reuse them: the union of the cells, and so the pooled fit, is the same.
        self.prior_mean_weights_ = function_kwargs.get("mean_weights")
        self.prior_variance_weights_ = function_kwargs.get("variance_mean_weights")
        if use_samples:
            self._lend_sample_variance(allow_single_condition_variance)
        return self

    def _adopt(self, model1, model2, landmarks, use_samples: bool, mean_weights,
               variance_mean_weights) -> DifferentialExpression:
        """This object with both conditions' models fitted elsewhere (the null's refits)."""
        self._reset()
        self.model1_, self.model2_ = model1, model2
        self.landmarks_, self.use_sample_variance_ = landmarks, use_samples
        self.prior_mean_weights_, self.prior_variance_weights_ = mean_weights, variance_mean_weights
        return self

    def _sample_variance_wanted(self, indices=(None, None)) -> bool:
        """``use_sample_variance``, or when ``None``: on if replicates or predictors are given."""
        if self.use_sample_variance is not None:
            return bool(self.use_sample_variance)
        if self._model1 is not None and self._model2 is not None:
            return self._model1.has_sample_variance or self._model2.has_sample_variance
        given = (self._variance_predictor1, self._variance_predictor2)
        return any(v is not None for v in (*indices, *given))

    def _check_sample_sources(self, use_samples, indices, allow_single) -> None:
        sources = [i is not None or v is not None for i, v in
                   zip(indices, (self._variance_predictor1, self._variance_predictor2), strict=True)]
        if use_samples and not all(sources) and not (allow_single and any(sources)):
            raise ValueError(
                "use_sample_variance needs sample indices (or a variance predictor) for both "
                "conditions; pass both, or set allow_single_condition_variance=True to use one "
                "condition's variance for both, or use_sample_variance=False."
            )

    def _new_model(self, which: int, use_samples: bool) -> ExpressionModel:
        """An unfitted :class:`ExpressionModel` for one condition, from the constructor's arguments."""
        return ExpressionModel(
            n_landmarks=self.n_landmarks, use_empirical_variance=self.use_empirical_variance,
            eps=self.eps, random_state=self.random_state, batch_size=self.batch_size,
            function_predictor=getattr(self, f"_function_predictor{which}"),
            obs_variance_predictor=getattr(self, f"obs_variance_predictor{which}"),
            variance_predictor=getattr(self, f"_variance_predictor{which}") if use_samples else None,
        )

    def _lend_sample_variance(self, allow_single: bool) -> None:
        """With one condition lacking replicates, let the other's variance stand in."""
        has1, has2 = self.model1_.has_sample_variance, self.model2_.has_sample_variance
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
        donor = self.model1_ if has1 else self.model2_
        receiver = self.model2_ if has1 else self.model1_
        receiver.variance_predictor_ = donor.variance_estimator

    # --------------------------------------------------------- properties
    def _models(self) -> tuple[ExpressionModel, ExpressionModel]:
        """The models predictions use: the fitted ones, else those the constructor defines."""
        if self.model1_ is not None:
            return self.model1_, self.model2_
        if self._model1 is not None and self._model2 is not None:
            return self._model1, self._model2
        if self._function_predictor1 is not None and self._function_predictor2 is not None:
            use_samples = self._sample_variance_wanted()
            return self._new_model(1, use_samples), self._new_model(2, use_samples)
        raise not_fitted(
            "DifferentialExpression",
            "call fit(X_condition1, y_condition1, X_condition2, y_condition2) first, or pass "
            "function_predictor1 and function_predictor2 (or model1 and model2)",
        )

    def _model(self, which: int) -> ExpressionModel | None:
        fitted = self.model1_ if which == 1 else self.model2_
        return fitted if fitted is not None else getattr(self, f"_model{which}")

    def _sample_variance_on(self) -> bool:
        if self.use_sample_variance_ is not None:
            return self.use_sample_variance_
        return self._sample_variance_wanted()

    model1 = fitted_or_given("model1", "Condition 1's ExpressionModel: the fitted one, else the given one.")
    model2 = fitted_or_given("model2", "Condition 2's ExpressionModel: the fitted one, else the given one.")

    @property
    def landmarks(self):
        """Landmarks of the fit (read-only alias of ``landmarks_``; a given model's before fit)."""
        if self.landmarks_ is not None:
            return self.landmarks_
        model = self._model(1)
        return model.landmarks if model is not None else None

    @property
    def prior_mean_weights(self):
        """Read-only alias of ``prior_mean_weights_``."""
        return self.prior_mean_weights_

    @property
    def prior_variance_weights(self):
        """Read-only alias of ``prior_variance_weights_``."""
        return self.prior_variance_weights_

    @property
    def function_predictor1(self):
        """Predictor of condition 1's mean expression: the fitted one, else the given one."""
        model = self._model(1)
        return model.predictor if model is not None else self._function_predictor1

    @property
    def function_predictor2(self):
        """Predictor of condition 2's mean expression: the fitted one, else the given one."""
        model = self._model(2)
        return model.predictor if model is not None else self._function_predictor2

    @property
    def variance_predictor1(self):
        """Sample-variance estimator of condition 1 in use (else the given one), or ``None``."""
        model = self._model(1)
        return model.variance_estimator if model is not None else self._variance_predictor1

    @property
    def variance_predictor2(self):
        """Sample-variance estimator of condition 2 in use (else the given one), or ``None``."""
        model = self._model(2)
        return model.variance_estimator if model is not None else self._variance_predictor2

    @property
    def empirical_variance_predictor1(self):
        """Callable giving condition 1's empirical variance, or ``None``."""
        return self._empirical_variance_predictor(1)

    @property
    def empirical_variance_predictor2(self):
        """Callable giving condition 2's empirical variance, or ``None``."""
        return self._empirical_variance_predictor(2)

    def _empirical_variance_predictor(self, which: int):
        model = self._model(which)
        if model is None:
            return getattr(self, f"obs_variance_predictor{which}")
        return model.obs_variance if model.has_empirical_variance else None

    @property
    def expression_estimator_condition1(self):
        """mellon ``FunctionEstimator`` of condition 1 (holds the fitted predictor), or ``None``."""
        model = self._model(1)
        return model.estimator if model is not None else None

    @property
    def expression_estimator_condition2(self):
        """mellon ``FunctionEstimator`` of condition 2 (holds the fitted predictor), or ``None``."""
        model = self._model(2)
        return model.estimator if model is not None else None

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
        the input), ``fold_change_zscores`` (cells x genes: the fold change
        over ``sqrt(total variance 1 + total variance 2 + eps)``, the
        variances that the two ``std`` hold), ``mean_log_fold_change`` (per
        gene, the mean over ``X_new``) and, with ``compute_mahalanobis``,
        ``mahalanobis_distances`` and ``neg_log10_ptp`` (per gene, see
        :func:`kompot.models._de_statistics.mean_zscore_neg_log10_ptp`), as kompot 0.8.0 does.
        """
        m1, m2 = self._models()
        X_new = np.asarray(X_new, np.float64)
        n = X_new.shape[0]
        n_genes = self._n_genes(m1)
        # Preallocated outputs filled block by block: no list of blocks to concatenate.
        result = {k: np.empty((n, n_genes)) for k in (
            "condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std")}
        fused = m1._shares_basis_with(m2)
        # With the JAX backend the kernel block stays on the device for all products.
        on_device = fused and backend.uses_jax() and _is_plain_matern52(m1._fit.cov_func)
        device_cache = {}
        for s in block_slices(n, max(self.batch_size, 1), progress=progress, desc="predict DE"):
            if fused:
                # One kernel and one triangular solve per block serve both conditions.
                K, As = _kernel_block(m1._fit, X_new[s], device_cache if on_device else None)
            for i, model in ((1, m1), (2, m2)):
                mean_out = result[f"condition{i}_smoothed"][s]
                std_out = result[f"condition{i}_std"][s]
                if fused:
                    model._mean_and_std(X_new[s], K, As, mean_out, std_out)
                else:
                    mean_out[:] = model.predict(X_new[s], progress=False)
                    std_out[:] = model.std(X_new[s], progress=False)
        fc = np.subtract(result["condition2_smoothed"], result["condition1_smoothed"])
        result["fold_change"] = fc
        result["fold_change_zscores"] = fold_change_zscores(
            fc, result["condition1_std"], result["condition2_std"], self.eps)
        result["mean_log_fold_change"] = fc.mean(axis=0)
        if compute_mahalanobis:
            result["mahalanobis_distances"] = self.compute_mahalanobis_distances(
                X_new, fold_change=fc, use_landmarks=use_landmarks,
                landmarks_override=landmarks_override, progress=progress,
            )
            result["neg_log10_ptp"] = mean_zscore_neg_log10_ptp(result["fold_change_zscores"])
        return result

    @staticmethod
    def _n_genes(model: ExpressionModel) -> int:
        if model._fit is not None:
            return model._fit.weights.shape[1]
        probe = model.predict(model.landmarks[:1], progress=False)
        return probe.shape[1]

    def _points(self, X, use_landmarks, landmarks_override):
        if landmarks_override is not None:
            return np.asarray(landmarks_override, np.float64), False
        if use_landmarks:
            landmarks = self.landmarks_ if self.landmarks_ is not None else self._models()[0].landmarks
            if landmarks is not None:
                return np.asarray(landmarks, np.float64), False
        return np.asarray(X, np.float64), True

    def mahalanobis_terms(self, points: np.ndarray, fold_change: np.ndarray | None = None):
        """Difference, shared covariance, low-rank and diagonal terms at ``points``.

        These are the inputs of :func:`kompot.core.mahalanobis.mahalanobis_distances`.
        """
        m1, m2 = self._models()
        return mahalanobis_terms(m1, m2, points, fold_change, eps=self.eps,
                                 empirical=self.use_empirical_variance,
                                 replicates=self._sample_variance_on())

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
            raise ValueError(
                "No Mahalanobis distances yet: call predict(..., compute_mahalanobis=True) or "
                "compute_mahalanobis_distances() first."
            )
        return fdr_dataframe(self.mahalanobis_distances, null_mahalanobis, threshold, gene_names)
