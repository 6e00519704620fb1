"""One condition's expression Gaussian process, with its variance components."""

from __future__ import annotations

import warnings

import numpy as np

from .._warnings import KompotInputWarning, warn_inert_parameters
from ..core.backend import KernelBlock
from ..core.blocks import block_slices
from ..core.function_gp import FunctionFit, fit_function
from ..core.kernel import kernel_diag, matern52
from ..core.landmarks import shared_hyperparameters
from ._fitted import not_fitted
from .sample_variance import SampleVarianceEstimator, call_variance_predictor

_FUNCTION_KWARGS = {"mu", "mean_weights", "variance_mean_weights", "jitter", "cov_func",
                    "replicate_bases"}


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
        Have no effect (kompot holds only landmark-sized factors); kept so
        that kompot 0.8.0 code runs. Setting them warns.
    function_predictor
        A fitted mellon predictor (or any callable ``X -> (n, G)``) to use as
        the mean; ``fit`` then fits no mean, and the model predicts without
        ``fit``.
    obs_variance_predictor
        A fitted callable ``X -> (n, G)`` empirical variance, used as given.
    variance_predictor
        A fitted :class:`~kompot.SampleVarianceEstimator`, or a callable
        ``variance_predictor(X, diag=True)``, used as given.

    Attributes
    ----------
    landmarks_, ls_, sigma_, cov_func_
        What :meth:`fit` used (the properties without ``_`` also fall back on
        a given ``function_predictor``).
    variance_predictor_
        The sample-variance estimator in use after :meth:`fit` (the given
        one, the fitted one, or ``None``).
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
        self.function_predictor = function_predictor
        self.obs_variance_predictor = obs_variance_predictor
        self.variance_predictor = variance_predictor
        warn_inert_parameters(
            "ExpressionModel",
            dict(store_arrays_on_disk=store_arrays_on_disk, disk_storage_dir=disk_storage_dir),
            dict(store_arrays_on_disk=None, disk_storage_dir=None),
        )
        self._reset()

    def _reset(self) -> None:
        """Forget everything a previous :meth:`fit` learned."""
        self._fitted = False
        self._fit: FunctionFit | None = None
        self.landmarks_ = self.ls_ = self.sigma_ = self.cov_func_ = None
        self.variance_predictor_ = None
        self._jitter = None
        self._predictor = None  # the mellon predictor of _fit, built on first access
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
        ``cov_func`` (a covariance object, e.g. one of mellon's, replacing
        Matérn-5/2 with length scale ``ls``) and ``replicate_bases`` (a
        :class:`~kompot.core.replicate_fits.ReplicateBases` cache of the
        replicate samples' kernel factors, for refits of the same samples).
        Replicate samples' fits (mean and empirical variance) revert to this
        condition's fit where a sample has few cells.

        With ``sample_indices`` a :class:`SampleVarianceEstimator` is fitted
        on the replicate samples (unless ``variance_predictor`` was given);
        if fewer than 2 samples qualify this raises, unless
        ``allow_single_condition_variance`` is set, in which case the model
        carries no sample variance (a paired model may lend its own).
        Everything learned by an earlier call is discarded first.
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
        self._reset()
        jitter = function_kwargs.get("jitter", 1e-6)
        cov_func = function_kwargs.get("cov_func")
        if cov_func is not None and ls is None:
            ls = getattr(cov_func, "ls", None)
        landmarks, ls = shared_hyperparameters(
            [X], n_landmarks=self.n_landmarks, landmarks=landmarks, ls=ls,
            ls_factor=ls_factor, random_state=self.random_state,
        )
        cov_func = cov_func if cov_func is not None else matern52(ls)
        self.sigma_, self.ls_, self.landmarks_, self.cov_func_ = float(sigma), ls, landmarks, cov_func
        self._jitter = jitter
        if self.function_predictor is None:
            want_obs = self.use_empirical_variance and self.obs_variance_predictor is None
            self._fit = fit_function(
                X, y, landmarks, cov_func, sigma=sigma, mu=function_kwargs.get("mu", 0.0),
                mean_weights=function_kwargs.get("mean_weights"),
                variance_mean_weights=function_kwargs.get("variance_mean_weights"),
                jitter=jitter, obs_variance=want_obs, batch_size=max(self.batch_size, 2000),
            )
        self.variance_predictor_ = self.variance_predictor
        if sample_indices is not None and self.variance_predictor is None:
            self.variance_predictor_ = self._fit_sample_variance(
                X, y, sample_indices, sample_estimator_ls, allow_single_condition_variance,
                mu=function_kwargs.get("mu", 0.0), bases=function_kwargs.get("replicate_bases"),
            )
        self._fitted = True
        return self

    def _adopt(self, fit: FunctionFit, ls: float, jitter: float, variance_estimator=None):
        """This model, fitted with ``fit`` computed elsewhere (and that sample variance).

        For refits whose sums are known already (the permutation null,
        :mod:`kompot.models.pooled_refits`); leaves the model as :meth:`fit`
        would with the same fit.
        """
        self._reset()
        self.sigma_, self.ls_, self.landmarks_ = fit.sigma, ls, fit.landmarks
        self.cov_func_, self._jitter, self._fit = fit.cov_func, jitter, fit
        self.variance_predictor_ = variance_estimator
        self._fitted = True
        return self

    def _fit_sample_variance(self, X, y, sample_indices, sample_ls, allow_single, mu, bases):
        """A :class:`SampleVarianceEstimator` on this condition's samples, or ``None``."""
        # The samples' fits read the expression in blocks as large as this fit's.
        kwargs = {"landmarks": self.landmarks_, "sigma": self.sigma_, "jitter": self._jitter,
                  "mu": mu, "batch_size": max(self.batch_size, 2000), "replicate_bases": bases}
        if self._fit is not None and not sample_ls:
            # A sample with few cells in some state then reverts to its
            # condition there, instead of to a constant: it adds no
            # spurious between-sample variance, and its empirical variance
            # does not shrink towards 0.
            kwargs["mean_weights"] = self._fit.weights
            kwargs["variance_mean_weights"] = self._fit.variance_weights
        kwargs["cov_func"] = matern52(sample_ls) if sample_ls else self.cov_func_
        estimator = SampleVarianceEstimator(eps=self.eps, estimator_type="function")
        try:
            return estimator.fit(X, y, sample_indices, estimator_kwargs=kwargs)
        except ValueError:
            if not allow_single:
                raise
            warnings.warn(
                "Fewer than 2 usable samples in this condition; it carries no sample variance.",
                KompotInputWarning, stacklevel=4,
            )
            return None

    # ----------------------------------------------------------- properties
    @property
    def predictor(self):
        """The mellon predictor of the mean (callable on cell states).

        For kompot's own fit it is built on first access, which imports mellon.
        """
        if self._fit is None:
            return self.function_predictor
        if self._predictor is None:
            from ..core.mellon_bridge import function_predictor

            self._predictor = function_predictor(self._fit, self._jitter)
        return self._predictor

    @property
    def landmarks(self):
        """Landmarks of the GP, or ``None`` when an external predictor has none."""
        if self.landmarks_ is not None:
            return self.landmarks_
        return getattr(self.function_predictor, "landmarks", None)

    @property
    def ls(self):
        """Length scale of the Matérn kernel."""
        if self.ls_ is not None:
            return self.ls_
        return getattr(getattr(self.function_predictor, "cov_func", None), "ls", None)

    @property
    def sigma(self):
        """Observation noise level used when fitting."""
        return self.sigma_ if self.sigma_ is not None else getattr(self.function_predictor, "sigma", None)

    @property
    def cov_func(self):
        """Covariance function of the GP."""
        if self.cov_func_ is not None:
            return self.cov_func_
        return getattr(self.function_predictor, "cov_func", None)

    @property
    def has_empirical_variance(self) -> bool:
        """Whether an empirical (observation) variance is available."""
        if not self.use_empirical_variance:
            return False
        if self.obs_variance_predictor is not None:
            return True
        if isinstance(self.variance_estimator, SampleVarianceEstimator):
            return True
        if self._fit is not None:
            return self._fit.variance_weights is not None
        return hasattr(self.function_predictor, "variance_weights")

    @property
    def has_sample_variance(self) -> bool:
        """Whether a between-replicate variance is available."""
        return self.variance_estimator is not None

    @property
    def estimator(self):
        """A mellon ``FunctionEstimator`` configured like this fit, holding its predictor.

        Built on first access (importing mellon; mellon logs when an estimator
        is created); ``None`` unless kompot fitted the mean.
        """
        if self._estimator is None and self._fit is not None:
            from ..core.mellon_bridge import function_estimator

            self._estimator = function_estimator(
                self.predictor, self.landmarks_, self.cov_func_, sigma=self.sigma_,
                ls=self.ls_, jitter=self._jitter,
            )
        return self._estimator

    @property
    def variance_estimator(self):
        """The sample variance estimator (or callable) in use, if any."""
        return self.variance_predictor_ if self._fitted else self.variance_predictor

    # -------------------------------------------------------------- predict
    def _check(self):
        if self._fit is None and self.function_predictor is None:
            raise not_fitted("ExpressionModel", "call fit(X, y) first or pass function_predictor")

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
                out = _as_array(self.function_predictor(X[s]))
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
            return _as_array(self.function_predictor.covariance(X, diag=False))
        X, slices = self._blocks(X, batch_size, progress, "expression covariance")
        parts = []
        for s in slices:
            if self._fit is not None:
                parts.append(self._fit.covariance_diag(X[s]))
            else:
                parts.append(_as_array(self.function_predictor.covariance(X[s], diag=True)))
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
            if self.obs_variance_predictor is not None:
                out = _as_array(self.obs_variance_predictor(X[s]))
            elif isinstance(self.variance_estimator, SampleVarianceEstimator):
                out = self.variance_estimator.obs_variance(X[s])
            elif self._fit is not None:
                out = self._fit.obs_variance(X[s])
            else:
                out = _as_array(self.function_predictor.obs_variance(X[s]))
            parts.append(np.maximum(out[:, None] if out.ndim == 1 else out, self.eps))
        return np.concatenate(parts, axis=0)

    def sample_variance(self, X, diag=True, batch_size=None, progress=True):
        """Between-replicate variance: (n, n_genes) with ``diag``, else (n, n, n_genes); 0 when off."""
        vp = self.variance_estimator
        if vp is None:
            return 0.0
        X = np.asarray(X, np.float64)
        if not diag:
            return call_variance_predictor(vp, X, diag=False, progress=progress)
        X, slices = self._blocks(X, batch_size, progress, "sample variance")
        parts = [call_variance_predictor(vp, X[s], diag=True) for s in slices]
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
        _times_into(K, fit.weights, mean_out)
        mean_out += fit.mu
        if self.has_empirical_variance and self.obs_variance_predictor is None and not (
            isinstance(self.variance_estimator, SampleVarianceEstimator)
        ):
            _times_into(K, fit.variance_weights, std_out)
            np.maximum(std_out, self.eps, out=std_out)
        elif self.has_empirical_variance:
            std_out[:] = self.obs_variance(X, progress=False)
        else:
            std_out[:] = 0.0
        if isinstance(K, KernelBlock):
            std_out += K.posterior_variance(fit.LB, kernel_diag(fit.cov_func, X))[:, None] + self.eps
        else:
            std_out += fit.covariance_diag(X, K, As)[:, None] + self.eps
        if self.has_sample_variance:
            std_out += self.sample_variance(X, progress=False)
        np.sqrt(std_out, out=std_out)


def _times_into(K, W: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = K @ W`` for a numpy kernel block or a :class:`KernelBlock` on the JAX device."""
    if isinstance(K, KernelBlock):
        K.times_into(W, out)
    else:
        np.matmul(K, W, out=out)
