"""Fits of the pooled cells under any labels, from what all labellings share.

A DE run fits both conditions -- and, with replicates, every sample -- to
the pooled cells of the two conditions: once with the real labels and once
per permutation of the null (:func:`~kompot.models.gene_blocks.fit_gene_block`,
:func:`~kompot.models.null.expression_null_distances`), always with the same
landmarks, length scale and pooled prior; only the labels differ.
:class:`PooledRefits` computes once what does not depend on the labels: the
whitened kernel of every cell (:class:`~kompot.core.cell_basis.CellBasis`),
the sums ``A A^T`` and ``A Y`` over all cells or over each sample, each
sample's own factor and leverages, and from them the pooled fit (the prior
of every other fit). A labelling then needs no kernel, no whitening solve
and no first pass over the cells:

* whole samples are assigned, so a condition's sums are the sum of its
  samples' sums, and a sample with more cells than landmarks keeps its own
  system ``I + A A^T / sigma^2`` in every labelling (only its prior mean,
  its condition's fit, changes);
* cells labelled one by one: the sums of the smaller condition are taken
  over its cells, the other condition's are the total minus them.

Only the empirical-variance pass, whose squared residuals depend on each
fit, still visits the cells, once for both a condition and its samples.
The fits equal those of :meth:`DifferentialExpression.fit` up to the order
of summation (``tests/models/test_pooled_refits.py``); fits this does not
cover (covariates, predictors given, a condition with fewer than two
samples, ...) are left to :meth:`DifferentialExpression.fit`.
"""

from __future__ import annotations

import numpy as np

from .._settings import settings
from ..core.blocks import block_slices
from ..core.cell_basis import CellBasis, columns
from ..core.cell_rows import CellRows, dense_rows, take_genes, take_rows
from ..core.function_gp import (
    fit_from_sums,
    gram_and_products,
    landmark_cholesky,
    leverages,
    set_empirical_variance,
    smoothed_squared_residuals,
)
from ..core.kernel import matern52
from ..core.linalg import safe_cholesky
from ..core.replicate_fits import ReplicateBases, fit_replicate, uses_cell_space
from ..parallel import thread_map
from .differential_expression import DifferentialExpression
from .sample_variance import MIN_SAMPLE_CELLS, SampleVarianceEstimator

# Share of kompot.settings.memory_budget that the kept whitened kernel and
# the samples' sums may take (a gene block's data take GENE_BLOCK_SHARE).
CACHE_SHARE = 0.25
# Cells per block of the passes over the cells, at least: each block is one
# task of the passes' threads, and products of fewer cells run slower.
MIN_BLOCK_CELLS = 2000
_DE_KWARGS = {"n_landmarks", "use_empirical_variance", "random_state", "batch_size", "eps",
              "use_sample_variance"}
_FIT_KWARGS = {"sigma", "ls", "ls_factor", "landmarks", "allow_single_condition_variance",
               "mean_weights", "variance_mean_weights", "jitter"}


def pooled_refits(X, Y, samples, de_kwargs: dict, fit_kwargs: dict, genes: np.ndarray,
                  bases: ReplicateBases | None = None):
    """:class:`PooledRefits` of the pooled cells, or ``None`` where fits need the general path.

    ``X``, ``Y`` and ``samples`` (a label per cell, or ``None``) are the
    pooled cells in the order the labellings' masks refer to; ``genes``
    (sorted) every gene that some labelling fits; ``bases`` the cache of
    the cell-space samples' factors (shared with fits of the general path).
    The shortcut needs the run's landmarks and length scale in
    ``fit_kwargs``, the empirical variance on, and no other options. The
    pooled prior (``mean_weights`` and ``variance_mean_weights``) is taken
    from ``fit_kwargs`` when both are given there, else fitted to the cells.
    """
    if set(de_kwargs) - _DE_KWARGS or set(fit_kwargs) - _FIT_KWARGS:
        return None
    if not de_kwargs.get("use_empirical_variance", True):
        return None
    if any(fit_kwargs.get(name) is None for name in ("landmarks", "ls")):
        return None
    given = [fit_kwargs.get(name) is not None for name in ("mean_weights", "variance_mean_weights")]
    if given[0] != given[1]:
        return None  # a prior mean without its variance prior: the general path's own case
    wanted = de_kwargs.get("use_sample_variance")
    if wanted is False:
        samples = None
    elif samples is None and wanted:
        return None  # DifferentialExpression.fit explains what is missing
    if samples is not None and np.unique(samples, return_counts=True)[1].min() < MIN_SAMPLE_CELLS:
        return None  # the general path skips those samples, with a warning
    return PooledRefits(X, Y, samples, de_kwargs, fit_kwargs, genes, bases)


class PooledRefits:
    """Fits of fixed pooled cells under any labels; see the module docstring.

    Build it with :func:`pooled_refits`; :meth:`fit` gives a labelling's
    fitted :class:`DifferentialExpression`.
    """

    def __init__(self, X, Y, samples, de_kwargs, fit_kwargs, genes, bases=None):
        self.de_kwargs = dict(de_kwargs)
        self.sigma = float(fit_kwargs.get("sigma", 1.0))
        self.jitter = fit_kwargs.get("jitter", 1e-6)
        self.landmarks = np.asarray(fit_kwargs["landmarks"], np.float64)
        self.ls = float(fit_kwargs["ls"])
        self.cov_func = matern52(self.ls)
        self.Lp = landmark_cholesky(self.landmarks, self.cov_func, self.jitter)
        self.genes = np.asarray(genes)
        # The pooled fit's (mean weights, variance weights) of self.genes; fitted on first use
        # when not given.
        self._priors = None
        if fit_kwargs.get("mean_weights") is not None:
            self._priors = tuple(np.asarray(fit_kwargs[name], np.float64)[:, self.genes]
                                 for name in ("mean_weights", "variance_mean_weights"))
        all_genes = np.array_equal(self.genes, np.arange(Y.shape[1]))
        self.X, self.Y = np.asarray(X, np.float64), Y if all_genes else take_genes(Y, self.genes)
        # Cell-space samples' factors, as the general path keeps them.
        self.bases = ReplicateBases() if bases is None else bases
        self._h: dict[int, np.ndarray] = {}  # leverages of landmark-space samples' blocks
        budget = int(settings.memory_budget * CACHE_SHARE)
        batch = max(int(self.de_kwargs.get("batch_size", 500)), MIN_BLOCK_CELLS)
        if samples is None:
            self.labels = self.codes = None
            blocks = _chunks(_reading_order(Y, X.shape[0]), batch)
            self.block_unit = np.zeros(len(blocks), int)
        else:
            self.labels, self.codes = np.unique(np.asarray(samples), return_inverse=True)
            self.codes = self.codes.reshape(-1)
            blocks, units = self._sample_blocks(_reading_order(Y, X.shape[0]), batch)
            self.block_unit = np.asarray(units)
        self.basis = CellBasis(self.X, self.landmarks, self.cov_func, self.Lp, blocks, budget)
        self._first_pass(budget)

    # ------------------------------------------------------------ set-up
    def _sample_blocks(self, order, batch):
        """Blocks of cells that never straddle two samples, the samples in label order."""
        blocks, units = [], []
        self.unit_rows = []
        for k in range(len(self.labels)):
            rows = order[self.codes[order] == k]
            self.unit_rows.append(rows)
            for chunk in _chunks(rows, batch):
                blocks.append(chunk)
                units.append(k)
        return blocks, units

    def _first_pass(self, budget: int) -> None:
        """Every unit's (sample's, or all cells') ``A A^T`` and ``A Y``, and the samples' own factors."""
        m, n_units = self.landmarks.shape[0], int(self.block_unit.max()) + 1
        self.AAt = [np.zeros((m, m)) for _ in range(n_units)]
        AY = [np.zeros((m, self.Y.shape[1])) for _ in range(n_units)]

        def sums(b):
            return gram_and_products(self.basis.whitened(b), dense_rows(self.Y, self.basis.blocks[b]))

        for b, (gram, products) in enumerate(self._each_block(sums)):
            self.AAt[self.block_unit[b]] += gram
            AY[self.block_unit[b]] += products
        room = budget - self.basis.kept_bytes
        self.AY = []
        for k in range(n_units):  # kept while they fit, else recomputed in each permutation
            keep = self.codes is None or AY[k].nbytes <= room
            room -= AY[k].nbytes if keep else 0
            self.AY.append(AY[k] if keep else None)
        self.n_cells = np.bincount(self.block_unit, [len(r) for r in self.basis.blocks])
        m_space = [self.codes is not None and not uses_cell_space(int(c), m) for c in self.n_cells]
        self.LB = [safe_cholesky(np.eye(m) + self.AAt[k] / self.sigma**2,
                                 what="expression GP system") if m_space[k] else None
                   for k in range(n_units)]

    # ------------------------------------------------------------ pooled
    def priors(self) -> tuple[np.ndarray, np.ndarray]:
        """The pooled fit's mean and variance weights (landmarks x ``genes``).

        Given to :func:`pooled_refits`, or fitted here once to all the cells
        together, as :meth:`DifferentialExpression.fit` fits its pooled prior.
        """
        if self._priors is None:
            fit = self._pooled_fit()
            self._priors = (fit.weights, fit.variance_weights)
        return self._priors

    def _pooled_fit(self):
        """All the cells fitted together (prior mean 0) from the units' sums, with its empirical variance."""
        pos = np.arange(len(self.genes))
        units = range(len(self.AAt))
        AAt = sum(self.AAt[k] for k in units)
        fit = self._from_sums(AAt, sum(self._unit_products(k, pos, self.Y) for k in units), None,
                              int(self.n_cells.sum()))
        whitened_weights = self.Lp.T @ fit.weights

        def block(b):
            return smoothed_squared_residuals(self.basis.whitened(b), fit.LB, whitened_weights,
                                              dense_rows(self.Y, self.basis.blocks[b]), self.sigma)

        smoothed = np.zeros(fit.weights.shape)
        for part in self._each_block(block):
            smoothed += part
        set_empirical_variance(fit, smoothed, AAt, None)
        return fit

    # -------------------------------------------------------------- refit
    def fit(self, mask: np.ndarray, samples1, samples2, genes: np.ndarray):
        """Both conditions fitted with condition 1 the cells of ``mask``, to ``genes``.

        ``genes`` (sorted) are indices into the ``genes`` this object was
        built for; ``samples1``/``samples2`` are the labelling's sample labels
        (``None`` when it labels cells one by one). Returns a fitted
        :class:`DifferentialExpression`, or ``None`` when this labelling
        needs the general path.
        """
        pos = np.searchsorted(self.genes, genes)
        Y = take_genes(self.Y, pos)
        priors = tuple(p[:, pos] for p in self.priors())
        if self.codes is None:
            return self._fit_cells(np.asarray(mask, bool), pos, Y, priors)
        if samples1 is None or samples2 is None:
            return None
        return self._fit_samples(np.asarray(mask, bool), pos, Y, priors)

    def _from_sums(self, AAt, AY, mean_weights, n_obs, LB=None):
        return fit_from_sums(AAt, AY, self.landmarks, self.cov_func, self.Lp, sigma=self.sigma,
                             mu=0.0, mean_weights=mean_weights, n_obs=n_obs, LB=LB)

    def _fit_cells(self, mask, pos, Y, priors):
        """Cells permuted one by one: the smaller condition's sums from its cells, the other's as the rest."""
        small = mask if mask.sum() <= (~mask).sum() else ~mask
        AAt, AY = self._group_sums(small, Y)
        rest = (self.AAt[0] - AAt, self.AY[0][:, pos] - AY)
        sums = ((AAt, AY), rest) if small is mask else (rest, (AAt, AY))
        fits = [self._from_sums(a, y, priors[0], int(c.sum()))
                for (a, y), c in zip(sums, (mask, ~mask), strict=True)]
        whitened_weights = [self.Lp.T @ f.weights for f in fits]

        def block(b):
            rows = self.basis.blocks[b]
            A, R = self.basis.whitened(b), dense_rows(Y, rows)
            parts = []
            for c, in_c in enumerate((mask[rows], ~mask[rows])):
                sel = np.flatnonzero(in_c)
                parts.append(smoothed_squared_residuals(columns(A, sel), fits[c].LB,
                                                        whitened_weights[c], R[sel], self.sigma)
                             if sel.size else 0.0)
            return parts

        smoothed = [np.zeros(f.weights.shape) for f in fits]
        for parts in self._each_block(block):
            for c, part in enumerate(parts):
                smoothed[c] += part
        for fit, AR2, (a, _) in zip(fits, smoothed, sums, strict=True):
            set_empirical_variance(fit, AR2, a, priors[1])
        return self._assembled(fits, (None, None), False, priors)

    def _group_sums(self, mask, Y):
        """``A A^T`` and ``A Y`` over the cells of ``mask``."""
        m = self.landmarks.shape[0]

        def sums(b):
            rows = self.basis.blocks[b]
            sel = np.flatnonzero(mask[rows])
            if not sel.size:
                return 0.0, 0.0
            return gram_and_products(columns(self.basis.whitened(b), sel), dense_rows(Y, rows[sel]))

        AAt, AY = np.zeros((m, m)), np.zeros((m, Y.shape[1]))
        for gram, products in self._each_block(sums):
            AAt += gram
            AY += products
        return AAt, AY

    def _fit_samples(self, mask, pos, Y, priors):
        """Whole samples reassigned: every sum is a sum of the samples' own."""
        units = (np.unique(self.codes[mask]), np.unique(self.codes[~mask]))
        if np.intersect1d(*units).size or min(len(u) for u in units) < 2:
            return None  # not whole samples, or too few: the general path decides
        AY = [self._unit_products(k, pos, Y) for k in range(len(self.labels))]
        fits, grams, sample_fits = [], [], []
        for in_c in units:
            grams.append(sum(self.AAt[k] for k in in_c))
            fit = self._from_sums(grams[-1], sum(AY[k] for k in in_c), priors[0],
                                  int(self.n_cells[in_c].sum()))
            fits.append(fit)
            on_landmarks = [k for k in in_c if self.LB[k] is not None]
            sample_fits.append(dict(zip(on_landmarks, thread_map(
                lambda k, fit=fit: self._from_sums(self.AAt[k], AY[k], fit.weights,
                                                   int(self.n_cells[k]), self.LB[k]),
                on_landmarks), strict=True)))
        self._smooth_samples(mask, Y, fits, grams, sample_fits, priors[1])
        estimators = [self._estimator(Y, fit, in_c, own)
                      for fit, in_c, own in zip(fits, units, sample_fits, strict=True)]
        return self._assembled(fits, estimators, True, priors)

    def _unit_products(self, k: int, pos, Y) -> np.ndarray:
        """Sample ``k``'s ``A Y`` of these genes: kept, or computed from its cells."""
        if self.AY[k] is not None:
            return self.AY[k][:, pos]

        def products(b):
            return gram_and_products(self.basis.whitened(b), dense_rows(Y, self.basis.blocks[b]))[1]

        total = 0.0
        for part in self._each_block(products, np.flatnonzero(self.block_unit == k)):
            total = total + part
        return total

    def _smooth_samples(self, mask, Y, fits, grams, sample_fits, variance_prior) -> None:
        """The empirical-variance pass of both conditions and their landmark-space samples, together."""
        ww = [self.Lp.T @ f.weights for f in fits]
        own_ww = [{k: self.Lp.T @ f.weights for k, f in s.items()} for s in sample_fits]

        def block(b):
            rows = self.basis.blocks[b]
            k, c = self.block_unit[b], 0 if mask[rows[0]] else 1
            A, R = self.basis.whitened(b), dense_rows(Y, rows)
            condition = smoothed_squared_residuals(A, fits[c].LB, ww[c], R, self.sigma)
            sample = None
            if k in own_ww[c]:
                sample = smoothed_squared_residuals(A, self.LB[k], own_ww[c][k], R, self.sigma,
                                                    self._leverages(b, A))
            return k, c, condition, sample

        smoothed = [np.zeros(f.weights.shape) for f in fits]
        own = [{k: np.zeros(f.weights.shape) for k, f in s.items()} for s in sample_fits]
        for k, c, condition, sample in self._each_block(block):
            smoothed[c] += condition
            if sample is not None:
                own[c][k] += sample
        for c, fit in enumerate(fits):
            set_empirical_variance(fit, smoothed[c], grams[c], variance_prior)
            # Each sample's solves in a thread (many samples: most of a refit's own work).
            list(thread_map(lambda k, c=c, fit=fit: set_empirical_variance(
                sample_fits[c][k], own[c][k], self.AAt[k], fit.variance_weights), sample_fits[c]))

    def _each_block(self, func, blocks=None):
        """``func(b)`` for each block ``b`` (all by default), in block order, computed in threads.

        In order, so that sums over the blocks do not depend on the number
        of threads; one at a time when the blocks live on a JAX device.
        """
        blocks = range(len(self.basis.blocks)) if blocks is None else blocks
        return thread_map(func, blocks, 1 if self.basis.on_device else None)

    def _leverages(self, b: int, A):
        """Block ``b``'s leverages in its sample's own fit (the same in every permutation)."""
        if self.basis.on_device:
            return None  # computed on the device with the residuals
        if b not in self._h:
            self._h[b] = leverages(A, self.LB[self.block_unit[b]], self.sigma)
        return self._h[b]

    def _estimator(self, Y, fit, in_c, own: dict) -> SampleVarianceEstimator:
        """The condition's sample variance: its samples' fits, in label order."""
        def cell_space_fit(k):  # as SampleVarianceEstimator makes it
            rows = self.unit_rows[k]
            return fit_replicate(
                self.X[rows], take_rows(Y, rows), self.landmarks, self.cov_func, self.Lp,
                sigma=self.sigma, mu=0.0, mean_weights=fit.weights,
                variance_mean_weights=fit.variance_weights, obs_variance=True,
                bases=self.bases, label=self.labels[k])

        in_cells = [k for k in in_c if k not in own]
        fitted = dict(zip(in_cells, thread_map(cell_space_fit, in_cells), strict=True))
        fits = {self.labels[k]: own[k] if k in own else fitted[k] for k in in_c}
        eps = self.de_kwargs.get("eps", 1e-8)
        return SampleVarianceEstimator(eps=eps, estimator_type="function")._adopt(
            fits, self.landmarks, self.cov_func, self.jitter)

    def _assembled(self, fits, estimators, use_samples: bool, priors) -> DifferentialExpression:
        de = DifferentialExpression(**self.de_kwargs)
        models = [de._new_model(i, use_samples)._adopt(fit, self.ls, self.jitter, estimator)
                  for i, (fit, estimator) in enumerate(zip(fits, estimators, strict=True), 1)]
        return de._adopt(*models, self.landmarks, use_samples, *priors)


def _reading_order(Y, n: int) -> np.ndarray:
    """The cells in the order their expression is read fastest (storage order on disk)."""
    if isinstance(Y, CellRows) and not Y.in_memory:
        return Y.storage_order()
    return np.arange(n)


def _chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[s] for s in block_slices(len(rows), size)]
