"""One condition's expression Gaussian process, with its variance components."""

from __future__ import annotations

import logging

import numpy as np

from ..core.blocks import block_slices
from ..core.function_gp import FunctionFit, fit_function
from ..core.kernel import matern52
from ..core.landmarks import shared_hyperparameters
from ..core.mellon_bridge import function_estimator, function_predictor
from .sample_variance import SampleVarianceEstimator

logger = logging.getLogger("kompot")

_FUNCTION_KWARGS = {"mu", "mean_weights", "variance_mean_weights", "jitter", "cov_func"}


def _as_array(fn_out) -> np.ndarray:
    return np.asarray(fn_out, dtype=np.float64)


class ExpressionModel:
    """A Gaussian process of gene expression over cell states, for one condition.

    Holds the posterior mean (imputed expression), the posterior covariance
    of that mean (shared by all genes), an optional per-gene empirical
    (aleatoric) variance and an optional between-replicate variance. Use it
    alone for imputation, or two of them inside
    :class:`~kompot.DifferentialExpression`.

    Parameters
    ----------
    n_landmarks
        Number of landmarks (inducing points). ``None`` uses
        ``min(n_cells, 1000)``.
    use_empirical_variance
        Estimate a per-gene, state-dependent noise variance from the GP's
        leverage-corrected squared residuals.
    eps
        Added to variances before taking square roots.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when predicting.
    store_arrays_on_disk, disk_storage_dir
        Kept for API compatibility; kompot holds only landmark-sized factors,
        so these have no effect.
    function_predictor
        A fitted mellon predictor to use as the mean (``fit`` then skips
        fitting the mean).
    obs_variance_predictor
        A fitted callable ``X -> (n, G)`` empirical variance, used as given.
    variance_predictor
        A fitted :class:`~kompot.SampleVarianceEstimator` (or callable
        ``(X, diag) -> variance``), used as given.
    """

    def __init__(
        self,
        n_landmarks: int | None = None,
        use_empirical_variance: bool = True,
        eps: float = 1e-8,
        random_state: int | None = None,
        batch_size: int = 500,
        store_arrays_on_disk: bool | None = None,
        disk_storage_dir: str | None = None,
        function_predictor=None,
        obs_variance_predictor=None,
        variance_predictor=None,
    ):
        self.n_landmarks = n_landmarks
        self.use_empirical_variance = use_empirical_variance
        self.eps = eps
        self.random_state = random_state
        self.batch_size = batch_size
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        self._external_predictor = function_predictor
        self._obs_variance_predictor = obs_variance_predictor
        self._variance_predictor = variance_predictor
        self._fit: FunctionFit | None = None
        self._predictor = function_predictor
        self._sigma = None
        self._ls = None
        self._landmarks = None
        self._cov_func = None
        self._estimator = None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sigma: float = 1.0,
        ls: float | None = None,
        ls_factor: float = 10.0,
        landmarks: np.ndarray | None = None,
        sample_indices: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        allow_single_condition_variance: bool = False,
        **function_kwargs,
    ) -> ExpressionModel:
        """Fit the mean GP (and variance components) to one condition.

        ``function_kwargs`` may set ``mu`` (constant prior mean, per gene or
        for all), ``mean_weights`` (a prior mean function ``K(x, landmarks) @
        mean_weights`` on these landmarks and kernel, shape ``(n_landmarks,
        n_genes)``), ``variance_mean_weights`` (the same for the empirical
        variance, whose prior mean is otherwise 0), ``jitter`` and
        ``cov_func`` (a mellon covariance object replacing Matérn-5/2 with
        length scale ``ls``). Replicate samples' fits (mean and empirical
        variance) revert to this condition's fit where a sample has few cells.

        With ``sample_indices`` a :class:`SampleVarianceEstimator` is fitted
        on the replicate samples; if fewer than 2 samples qualify this raises,
        unless ``allow_single_condition_variance`` is set, in which case the
        model carries no sample variance (a paired model may lend its own).
        """
        unknown = set(function_kwargs) - _FUNCTION_KWARGS
        if unknown:
            raise TypeError(
                f"Unsupported keyword(s) {sorted(unknown)}; ExpressionModel.fit accepts "
                f"{sorted(_FUNCTION_KWARGS)} besides its named parameters."
            )
        X = np.asarray(X, np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (cells x features), got shape {X.shape}.")
        if y.ndim != 2 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 2-D with one row per cell of X ({X.shape[0]}), got shape {y.shape}."
            )
        jitter = function_kwargs.get("jitter", 1e-6)
        cov_func = function_kwargs.get("cov_func")
        if cov_func is not None and ls is None:
            ls = getattr(cov_func, "ls", None)
        landmarks, ls = shared_hyperparameters(
            [X], n_landmarks=self.n_landmarks, landmarks=landmarks, ls=ls,
            ls_factor=ls_factor, random_state=self.random_state,
        )
        cov_func = cov_func if cov_func is not None else matern52(ls)
        self._sigma, self._ls, self._landmarks, self._cov_func = float(sigma), ls, landmarks, cov_func
        self._jitter, self._estimator = jitter, None

        if self._external_predictor is None:
            want_obs = self.use_empirical_variance and self._obs_variance_predictor is None
            self._fit = fit_function(
                X, y, landmarks, cov_func, sigma=sigma, mu=function_kwargs.get("mu", 0.0),
                mean_weights=function_kwargs.get("mean_weights"),
                variance_mean_weights=function_kwargs.get("variance_mean_weights"),
                jitter=jitter, obs_variance=want_obs, batch_size=max(self.batch_size, 2000),
            )
            self._predictor = function_predictor(self._fit, jitter)

        if sample_indices is not None and self._variance_predictor is None:
            estimator = SampleVarianceEstimator(eps=self.eps, estimator_type="function")
            kwargs = {"landmarks": landmarks, "sigma": sigma, "jitter": jitter,
                      "mu": function_kwargs.get("mu", 0.0)}
            if self._fit is not None and not sample_estimator_ls:
                # A sample with few cells in some state then reverts to its
                # condition there, instead of to a constant: it adds no
                # spurious between-sample variance, and its empirical variance
                # does not shrink towards 0.
                kwargs["mean_weights"] = self._fit.weights
                kwargs["variance_mean_weights"] = self._fit.variance_weights
            kwargs["cov_func"] = matern52(sample_estimator_ls) if sample_estimator_ls else cov_func
            try:
                self._variance_predictor = estimator.fit(X, y, sample_indices, estimator_kwargs=kwargs)
            except ValueError:
                if not allow_single_condition_variance:
                    raise
                logger.warning(
                    "Fewer than 2 usable samples in this condition; it carries no sample variance."
                )
        return self

    # ----------------------------------------------------------- properties
    @property
    def predictor(self):
        """The mellon predictor of the mean (callable on cell states)."""
        return self._predictor

    @property
    def landmarks(self):
        """Landmarks of the GP, or ``None`` when an external predictor has none."""
        if self._landmarks is not None:
            return self._landmarks
        return getattr(self._predictor, "landmarks", None)

    @property
    def ls(self):
        """Length scale of the Matérn kernel."""
        if self._ls is not None:
            return self._ls
        return getattr(getattr(self._predictor, "cov_func", None), "ls", None)

    @property
    def sigma(self):
        """Observation noise level used when fitting."""
        return self._sigma if self._sigma is not None else getattr(self._predictor, "sigma", None)

    @property
    def cov_func(self):
        """Covariance function of the GP."""
        return self._cov_func if self._cov_func is not None else getattr(self._predictor, "cov_func", None)

    @property
    def has_empirical_variance(self) -> bool:
        """Whether an empirical (observation) variance is available."""
        if not self.use_empirical_variance:
            return False
        if self._obs_variance_predictor is not None:
            return True
        if isinstance(self._variance_predictor, SampleVarianceEstimator):
            return True
        if self._fit is not None:
            return self._fit.variance_weights is not None
        return hasattr(self._predictor, "variance_weights")

    @property
    def has_sample_variance(self) -> bool:
        """Whether a between-replicate variance is available."""
        return self._variance_predictor is not None

    @property
    def estimator(self):
        """A mellon ``FunctionEstimator`` configured like this fit, holding its predictor.

        Built on first access (mellon logs when an estimator is created).
        """
        if self._estimator is None and self._fit is not None:
            self._estimator = function_estimator(
                self._predictor, self._landmarks, self._cov_func, sigma=self._sigma,
                ls=self._ls, jitter=self._jitter,
            )
        return self._estimator

    @property
    def variance_estimator(self):
        """The sample variance estimator (or callable), if any."""
        return self._variance_predictor

    # -------------------------------------------------------------- predict
    def _check(self):
        if self._predictor is None:
            raise RuntimeError("ExpressionModel is not fitted; call fit() or pass function_predictor.")

    def _blocks(self, X, batch_size, progress, desc):
        X = np.asarray(X, np.float64)
        return X, block_slices(X.shape[0], batch_size or self.batch_size, progress=progress, desc=desc)

    def predict(self, X, batch_size=None, progress=True) -> np.ndarray:
        """Imputed expression at ``X``, shape (n_points, n_genes)."""
        self._check()
        X, slices = self._blocks(X, batch_size, progress, "predict expression")
        parts = []
        for s in slices:
            if self._fit is not None:
                parts.append(self._fit.mean(X[s]))
            else:
                out = _as_array(self._predictor(X[s]))
                parts.append(out[:, None] if out.ndim == 1 else out)
        return np.concatenate(parts, axis=0)

    def covariance(self, X, diag=True, batch_size=None, progress=True) -> np.ndarray:
        """Posterior covariance of the mean (epistemic), the same for every gene.

        ``diag=True``: variance per point, shape (n,); otherwise (n, n).
        """
        self._check()
        X = np.asarray(X, np.float64)
        if not diag:
            if self._fit is not None:
                return self._fit.covariance_full(X)
            return _as_array(self._predictor.covariance(X, diag=False))
        X, slices = self._blocks(X, batch_size, progress, "expression covariance")
        parts = []
        for s in slices:
            if self._fit is not None:
                parts.append(self._fit.covariance_diag(X[s]))
            else:
                parts.append(_as_array(self._predictor.covariance(X[s], diag=True)))
        return np.concatenate(parts)

    def obs_variance(self, X, batch_size=None, progress=True):
        """Smoothed empirical (aleatoric) variance, shape (n, n_genes); 0 when off.

        With replicate samples it is the mean of the per-sample estimates, so
        that differences between samples are not counted here as well as in
        :meth:`sample_variance`.
        """
        if not self.has_empirical_variance:
            return 0.0
        X, slices = self._blocks(X, batch_size, progress, "empirical variance")
        parts = []
        for s in slices:
            if self._obs_variance_predictor is not None:
                out = _as_array(self._obs_variance_predictor(X[s]))
            elif isinstance(self._variance_predictor, SampleVarianceEstimator):
                out = self._variance_predictor.obs_variance(X[s])
            elif self._fit is not None:
                out = self._fit.obs_variance(X[s])
            else:
                out = _as_array(self._predictor.obs_variance(X[s]))
            parts.append(np.maximum(out[:, None] if out.ndim == 1 else out, self.eps))
        return np.concatenate(parts, axis=0)

    def sample_variance(self, X, diag=True, batch_size=None, progress=True):
        """Between-replicate variance: (n, n_genes) with ``diag``, else (n, n, n_genes); 0 when off."""
        vp = self._variance_predictor
        if vp is None:
            return 0.0
        X = np.asarray(X, np.float64)
        if not diag:
            return _as_array(vp.predict(X, diag=False, progress=progress) if hasattr(vp, "predict")
                             else vp(X, diag=False))
        X, slices = self._blocks(X, batch_size, progress, "sample variance")
        parts = []
        for s in slices:
            out = vp.predict(X[s], diag=True, progress=False) if hasattr(vp, "predict") else vp(X[s], diag=True)
            parts.append(_as_array(out))
        return np.concatenate(parts, axis=0)

    def total_variance(self, X, diag=True, batch_size=None, progress=True):
        """Posterior + empirical + sample variance.

        ``diag=True``: (n, n_genes). Otherwise (n, n, n_genes), with the
        empirical variance on the diagonal only.
        """
        cov = self.covariance(X, diag=diag, batch_size=batch_size, progress=progress)
        obs = self.obs_variance(X, batch_size=batch_size, progress=progress)
        sample = self.sample_variance(X, diag=diag, batch_size=batch_size, progress=progress)
        if diag:
            return cov[:, None] + obs + sample
        total = cov[:, :, None] + sample
        if np.ndim(obs):
            idx = np.arange(cov.shape[0])
            total = np.broadcast_to(total, (cov.shape[0], cov.shape[0], obs.shape[1])).copy()
            total[idx, idx, :] += obs
        return total

    def std(self, X, batch_size=None, progress=True) -> np.ndarray:
        """``sqrt(total_variance + eps)``, shape (n, n_genes)."""
        return np.sqrt(self.total_variance(X, diag=True, batch_size=batch_size, progress=progress) + self.eps)

    # ------------------------------------------------------ fused blocks
    def _shares_basis_with(self, other: ExpressionModel) -> bool:
        """Whether both are kompot fits with the same kernel, landmarks and ``Lp``.

        Then ``k(X, U)`` and ``Lp^{-1} k(U, X)`` can be computed once for both.
        """
        a, b = self._fit, other._fit
        if a is None or b is None:
            return False
        same_kernel = a.cov_func is b.cov_func or (
            type(a.cov_func) is type(b.cov_func)
            and getattr(a.cov_func, "ls", None) == getattr(b.cov_func, "ls", None)
            and getattr(a.cov_func, "active_dims", None) is None
            and getattr(b.cov_func, "active_dims", None) is None
        )
        return (
            same_kernel
            and np.array_equal(a.landmarks, b.landmarks)
            and np.array_equal(a.Lp, b.Lp)
        )

    def _mean_and_std(self, X, K, As, mean_out, std_out) -> None:
        """Mean and std at a block of points, written into ``mean_out`` and ``std_out``.

        Takes a precomputed kernel ``K`` and ``As = Lp^{-1} K^T``, so that
        DifferentialExpression evaluates both conditions from one kernel per
        block; only valid for kompot's own fits. Works in place because at
        atlas scale these blocks dominate memory traffic.
        """
        fit = self._fit
        np.matmul(K, fit.weights, out=mean_out)
        mean_out += fit.mu
        if self.has_empirical_variance and self._obs_variance_predictor is None and not (
            isinstance(self._variance_predictor, SampleVarianceEstimator)
        ):
            np.matmul(K, fit.variance_weights, out=std_out)
            np.maximum(std_out, self.eps, out=std_out)
        elif self.has_empirical_variance:
            std_out[:] = self.obs_variance(X, progress=False)
        else:
            std_out[:] = 0.0
        std_out += fit.covariance_diag(X, K, As)[:, None] + self.eps
        if self.has_sample_variance:
            std_out += self.sample_variance(X, progress=False)
        np.sqrt(std_out, out=std_out)
