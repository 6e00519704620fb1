"""Between-replicate variance of a smoothed quantity (expression or log density).

One Gaussian process per replicate sample, all on the same landmarks and
length scale; the variance between their predictions (Bessel-corrected)
measures how much the biological replicates disagree at each cell state.
The covariance between cell states is kept as its low-rank factor
``B = [f_k - f̄]_k / sqrt(K - 1)`` (rank at most K - 1), never as an
``n x n x G`` tensor unless a caller explicitly asks for one.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._warnings import KompotInputWarning, KompotRuntimeWarning, warn_inert_parameters
from ..core.blocks import block_slices
from ..core.cell_rows import take_rows
from ..core.density import fit_density, prior_mean
from ..core.function_gp import fit_function, landmark_cholesky
from ..core.kernel import kernel_matrix, matern52
from ..core.landmarks import (
    DEFAULT_N_LANDMARKS,
    length_scale_of,
    nearest_neighbor_distances,
    select_landmarks,
)
from ..core.replicate_fits import (
    fit_replicate,
    replicate_predictions,
    share_prior,
    uses_cell_space,
)
from ._fitted import not_fitted

_ESTIMATOR_TYPES = ("function", "density")
# Refuse to materialise a dense n x n x G covariance above this size.
_MAX_DENSE_BYTES = 4 * 1024**3
_SUPPORTED_KWARGS = {"landmarks", "ls", "sigma", "mu", "mean_weights", "variance_mean_weights",
                     "d", "jitter", "cov_func", "n_landmarks", "random_state", "obs_variance",
                     "batch_size", "replicate_bases"}
# Cells a sample needs to enter the sample variance.
MIN_SAMPLE_CELLS = 2


class SampleVarianceEstimator:
    """Local variance between replicate samples of a smoothed quantity.

    Parameters
    ----------
    eps
        Added to variances before they are used as denominators downstream.
    jit_compile
        Has no effect (kompot's numerics are BLAS calls that need no JIT);
        kept so that kompot 0.8.0 code runs. Setting it warns.
    estimator_type
        ``"function"`` for gene expression (one output per gene) or
        ``"density"`` for the log density of cell states.
    store_arrays_on_disk, disk_storage_dir
        Have no effect (only low-rank factors are kept, nothing needs to go
        to disk); kept for compatibility. Setting them warns.
    dask_num_workers
        Has no effect; kept for compatibility. Setting it warns.

    Attributes
    ----------
    group_predictors
        ``{group: mellon predictor}`` for each sample with enough cells
        (built from the fit on first access; this imports mellon).
    n_groups
        Number of samples that received an estimator (at least 2); 0 before
        :meth:`fit`.
    groups_
        The labels of those samples.
    landmarks_, cov_func_
        Landmarks and covariance shared by all samples' fits.
    """

    def __init__(
        self,
        eps: float = 1e-8,
        jit_compile: bool = True,
        estimator_type: str = "function",
        store_arrays_on_disk: bool | None = None,
        disk_storage_dir: str | None = None,
        dask_num_workers: int | None = None,
    ):
        if estimator_type not in _ESTIMATOR_TYPES:
            raise ValueError(
                f"estimator_type must be one of {_ESTIMATOR_TYPES}, got {estimator_type!r}."
            )
        self.eps = eps
        self.jit_compile = jit_compile
        self.estimator_type = estimator_type
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        self.dask_num_workers = dask_num_workers
        warn_inert_parameters(
            "SampleVarianceEstimator",
            dict(jit_compile=jit_compile, store_arrays_on_disk=store_arrays_on_disk,
                 disk_storage_dir=disk_storage_dir, dask_num_workers=dask_num_workers),
            dict(jit_compile=True, store_arrays_on_disk=None, disk_storage_dir=None,
                 dask_num_workers=None),
        )
        self.disk_storage = None  # the seed's attribute; nothing is ever stored on disk
        self._reset()

    def _reset(self) -> None:
        """Forget everything a previous :meth:`fit` learned."""
        self.n_groups = 0
        self.groups_ = None
        self.landmarks_ = None
        self.cov_func_ = None
        self._jitter = None
        self._fits: dict = {}
        self._predictors: dict | None = None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray = None,
        grouping_vector: np.ndarray = None,
        min_cells: int = MIN_SAMPLE_CELLS,
        ls_factor: float = 10.0,
        estimator_kwargs: dict = None,
    ) -> SampleVarianceEstimator:
        """Fit one estimator per group with at least ``min_cells`` cells.

        ``estimator_kwargs`` may set ``landmarks``, ``ls``, ``sigma``,
        ``mu``, ``mean_weights`` and ``variance_mean_weights`` (function
        estimators: prior means ``K(x, landmarks) @ weights`` of every group's
        mean and empirical variance), ``d``, ``jitter``, ``cov_func``, ``n_landmarks``,
        ``random_state`` and ``replicate_bases`` (a
        :class:`~kompot.core.replicate_fits.ReplicateBases` cache that refits
        of the same samples share); missing landmarks and length scale are
        computed from all of ``X`` so that every group shares them.

        Raises
        ------
        ValueError
            If fewer than 2 groups have ``min_cells`` cells.
        """
        self._reset()
        kwargs = dict(estimator_kwargs or {})
        unknown = set(kwargs) - _SUPPORTED_KWARGS
        if unknown:
            raise TypeError(
                f"Unsupported estimator_kwargs {sorted(unknown)}; supported: "
                f"{sorted(_SUPPORTED_KWARGS)}."
            )
        X = np.asarray(X, np.float64)
        groups = self._check_fit_inputs(X, Y, grouping_vector)
        valid = _groups_with_enough_cells(groups, min_cells)
        landmarks = kwargs.get("landmarks")
        if landmarks is None:
            m = kwargs.get("n_landmarks") or DEFAULT_N_LANDMARKS
            landmarks = select_landmarks(X, min(m, X.shape[0]), kwargs.get("random_state"))
        landmarks = np.asarray(landmarks, np.float64)
        cov_func = kwargs.get("cov_func")
        if cov_func is None:
            ls = kwargs.get("ls")
            if ls is None:
                ls = length_scale_of(X, ls_factor)
            cov_func = matern52(ls)
        jitter = kwargs.get("jitter", 1e-6)
        if self.estimator_type == "function":
            # One landmark factor for all groups (they share landmarks and kernel).
            kwargs["Lp"] = landmark_cholesky(landmarks, cov_func, jitter)
        fits = {}
        for g in valid:
            mask = groups == g
            fits[g] = self._fit_group(X[mask], None if Y is None else take_rows(Y, mask), landmarks,
                                      cov_func, jitter, {**kwargs, "label": g})
        self._fits, self.groups_, self.n_groups = fits, np.asarray(valid), len(valid)
        self.landmarks_, self.cov_func_, self._jitter = landmarks, cov_func, jitter
        return self

    def _adopt(self, fits: dict, landmarks, cov_func, jitter) -> SampleVarianceEstimator:
        """This estimator with the samples' ``fits`` (label -> fit, in label order) computed elsewhere."""
        self._reset()
        self._fits, self.groups_, self.n_groups = dict(fits), np.asarray(list(fits)), len(fits)
        self.landmarks_, self.cov_func_, self._jitter = landmarks, cov_func, jitter
        return self

    def _check_fit_inputs(self, X, Y, grouping_vector) -> np.ndarray:
        """The sample labels as an array, after checking that the inputs fit together."""
        if grouping_vector is None:
            raise ValueError("grouping_vector is required: one sample label per cell.")
        groups = np.asarray(grouping_vector)
        if groups.shape[0] != X.shape[0]:
            raise ValueError(
                f"grouping_vector has {groups.shape[0]} entries but X has {X.shape[0]} cells."
            )
        if self.estimator_type == "function":
            if Y is None:
                raise ValueError("Y (expression, cells x genes) is required for estimator_type='function'.")
            if Y.shape[0] != X.shape[0]:
                raise ValueError(f"Y has {Y.shape[0]} rows but X has {X.shape[0]} cells.")
        return groups

    def _fit_group(self, X, Y, landmarks, cov_func, jitter, kwargs):
        """One sample's fit on the shared landmarks and covariance."""
        if self.estimator_type == "function" and uses_cell_space(X.shape[0], landmarks.shape[0]):
            return fit_replicate(
                X, Y, landmarks, cov_func, kwargs["Lp"], sigma=kwargs.get("sigma", 1.0),
                mu=kwargs.get("mu", 0.0), mean_weights=kwargs.get("mean_weights"),
                variance_mean_weights=kwargs.get("variance_mean_weights"),
                obs_variance=kwargs.get("obs_variance", True),
                bases=kwargs.get("replicate_bases"), label=kwargs["label"],
            )
        if self.estimator_type == "function":
            return fit_function(
                X, Y, landmarks, cov_func,
                sigma=kwargs.get("sigma", 1.0), mu=kwargs.get("mu", 0.0),
                mean_weights=kwargs.get("mean_weights"),
                variance_mean_weights=kwargs.get("variance_mean_weights"), jitter=jitter,
                obs_variance=kwargs.get("obs_variance", True),
                batch_size=kwargs.get("batch_size", 10_000),
            )
        r = nearest_neighbor_distances(X)
        d = kwargs.get("d", X.shape[1])
        mu = kwargs.get("mu", prior_mean(r, d))
        return fit_density(X, landmarks, cov_func, d=d, mu=mu, nn_distances=r, jitter=jitter)

    @property
    def group_predictors(self) -> dict:
        """``{group: mellon predictor}`` of every fitted sample; ``{}`` before :meth:`fit`.

        Built from the fits on first access (importing mellon then, not before).
        """
        if self._predictors is None and self._fits:
            from ..core.mellon_bridge import density_predictor, function_predictor

            if self.estimator_type == "function":
                self._predictors = {g: function_predictor(f, self._jitter)
                                    for g, f in self._fits.items()}
            else:
                self._predictors = {
                    g: density_predictor(f, self.landmarks_, self.cov_func_, self._jitter)
                    for g, f in self._fits.items()
                }
        return dict(self._predictors or {})

    # ------------------------------------------------------------- predict
    def _check_fitted(self):
        if not self._fits:
            raise not_fitted("SampleVarianceEstimator", "call fit(X, Y, grouping_vector) first")

    def group_means(self, X: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        """Each group's prediction at ``X``: shape (K, n, G) (G = 1 for density)."""
        self._check_fitted()
        K = kernel_matrix(self.cov_func_, X, self.landmarks_) if K is None else K
        if self._shared_prior():
            common, parts = replicate_predictions(list(self._fits.values()), K)
            return np.stack([common + part for part in parts])
        out = []
        for fit in self._fits.values():
            if self.estimator_type == "function":
                out.append(fit.mean(X, K))
            else:  # log density normalised by the group's cell count, as mellon does
                out.append((fit.mu + K @ fit.weights - np.log(fit.n_obs))[:, None])
        return np.stack(out)

    def _shared_prior(self) -> bool:
        """Whether the groups' predictions differ only by their own parts (cell-space fits)."""
        return self.estimator_type == "function" and share_prior(list(self._fits.values()))

    def _spread(self, X: np.ndarray, K: np.ndarray | None) -> np.ndarray:
        """The groups' predictions at ``X`` less a part they share: what their spread is made of.

        That is all of them for fits without a shared prior, else only each
        sample's own part (the same deviations from the mean, exactly in
        arithmetic, at a fraction of the cost).
        """
        if not self._shared_prior():
            return self.group_means(X, K)
        K = kernel_matrix(self.cov_func_, X, self.landmarks_) if K is None else K
        return np.stack(replicate_predictions(list(self._fits.values()), K,
                                              keep=self._at_landmarks(X))[1])

    def _at_landmarks(self, X) -> bool:
        """Whether ``X`` are the landmarks, where the distances (and every null refit) look."""
        return X.shape == self.landmarks_.shape and np.array_equal(X, self.landmarks_)

    def low_rank_factor(self, X: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        """``B`` of shape (G, n, K) with ``B[g] @ B[g].T`` the covariance over ``X`` of gene g."""
        F = self._spread(X, K)
        B = (F - F.mean(axis=0, keepdims=True)) / np.sqrt(self.n_groups - 1)
        return np.transpose(B, (2, 1, 0))

    def obs_variance(self, X: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        """Mean over samples of the within-sample empirical variance, (n, G)."""
        self._check_fitted()
        K = kernel_matrix(self.cov_func_, X, self.landmarks_) if K is None else K
        if self._shared_prior():
            common, parts = replicate_predictions(list(self._fits.values()), K, variance=True,
                                                  keep=self._at_landmarks(np.asarray(X)))
            total = np.zeros((K.shape[0], parts[0].shape[1]))
            for part in parts:
                part += common
                total += np.maximum(part, 0.0)
            return total / len(parts)
        per_group = [fit.obs_variance(K=K, X=X) for fit in self._fits.values()]
        return np.mean(per_group, axis=0)

    def predict(self, X_new: np.ndarray, diag: bool = False, progress: bool = True) -> np.ndarray:
        """Bessel-corrected variance between the samples' predictions.

        With ``diag=True`` the variance at each cell, shape (n, G) (G = 1 for
        density); with ``diag=False`` the covariance between all pairs of
        cells, shape (n, n, G) — memory grows as n², so keep ``X_new`` small.
        """
        X_new = np.asarray(X_new, np.float64)
        n = X_new.shape[0]
        if diag:
            parts = []
            for s in block_slices(n, 2000, progress=progress, desc="sample variance"):
                F = self._spread(X_new[s], None)
                parts.append(np.var(F, axis=0, ddof=1))
            return np.concatenate(parts, axis=0)
        B = self.low_rank_factor(X_new)  # (G, n, K)
        n_bytes = B.shape[0] * n * n * 8
        if n_bytes > _MAX_DENSE_BYTES:
            raise ValueError(
                f"The full covariance would take {n_bytes / 1024**3:.1f} GiB "
                f"({n} x {n} x {B.shape[0]}). Use diag=True, fewer points, or "
                "low_rank_factor(), which holds the same information in rank K - 1."
            )
        if n_bytes > _MAX_DENSE_BYTES / 8:
            warnings.warn("Building a large dense covariance tensor.", KompotRuntimeWarning,
                          stacklevel=2)
        return np.einsum("gik,gjk->ijg", B, B)


def _groups_with_enough_cells(groups: np.ndarray, min_cells: int) -> list:
    """Labels with at least ``min_cells`` cells; raises unless there are 2 or more."""
    labels, counts = np.unique(groups, return_counts=True)
    valid = [g for g, c in zip(labels, counts, strict=True) if c >= min_cells]
    skipped = [g for g, c in zip(labels, counts, strict=True) if c < min_cells]
    if skipped:
        warnings.warn(f"Samples with fewer than {min_cells} cells were skipped: {[str(g) for g in skipped]}",
                      KompotInputWarning, stacklevel=3)
    if len(valid) < 2:
        raise ValueError(
            f"Sample variance needs at least 2 samples with >= {min_cells} cells; found "
            f"{len(valid)} ({dict(zip(labels.tolist(), counts.tolist(), strict=True))}). "
            "Provide more replicate samples, lower min_cells, or switch sample variance off."
        )
    return valid


def call_variance_predictor(vp, X: np.ndarray, diag: bool, progress: bool = False) -> np.ndarray:
    """Evaluate a sample-variance predictor: an estimator with ``predict`` or a plain callable.

    kompot 0.8.0 stores the bound ``SampleVarianceEstimator.predict`` as its
    variance predictors, so a callable ``vp(X, diag=...)`` is accepted too.
    """
    if isinstance(vp, SampleVarianceEstimator) or hasattr(vp, "predict"):
        return np.asarray(vp.predict(X, diag=diag, progress=progress), np.float64)
    return np.asarray(vp(X, diag=diag), np.float64)
