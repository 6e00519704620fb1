"""Differential expression over blocks of genes: the shared plan, one block's task, the null's pooling.

Given the landmarks, the length scale and the permuted condition labels,
every per-gene quantity of a DE run depends on that gene alone: both
conditions' fits and their pooled prior (the kernel factorisations depend on
the cells' states only), the replicate variance, the Mahalanobis distance,
the per-cell layers and each permutation's null distance. The driver fixes
what the genes share once (:func:`plan_gene_blocks`, drawing the null's
permutations and genes from the same random stream as
:func:`~kompot.models.null.expression_null_distances`), :func:`fit_gene_block`
computes one block -- in this process or on a Dask worker, see
:mod:`kompot.parallel` -- and the driver pools what needs every gene: the
null's median rescaling (:func:`pooled_null`) and the FDR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from .._settings import settings
from ..core import precision
from ..core.blocks import block_slices
from ..core.cell_rows import stack_rows, take_genes, take_rows
from ..core.covariates import identifiable
from ..core.replicate_fits import ReplicateBases
from ..core.replicate_moderation import ReplicatePrior
from .covariate_adjustment import adjust_for_covariates, adjusted_pair, state_groups
from .differential_expression import DifferentialExpression
from .layer_store import LayerStore, read_layers, store_chunk_rows
from .null import (
    MIN_GENES_FOR_RESCALING,
    _median_ratio,
    _reading_order,
    _reorder,
    canonical_rows,
    label_partitions,
    state_strata,
)
from .pooled_refits import pooled_refits
from .replicate_prior import learn_replicate_prior, pilot_genes, replicate_distances

logger = logging.getLogger("kompot")

# Share of kompot.settings.memory_budget one gene block may take on a
# cluster's worker; the genes per block follow from it (gene_block_size).
GENE_BLOCK_SHARE = 0.5

LAYERS = ("condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std",
          "fold_change")


def gene_block_size(n_cells: int, n_genes: int, layers: bool, slots: int = 1,
                    budget: int | None = None) -> int:
    """Genes per block on a cluster: within the memory ``budget``, and one block per slot at least.

    ``budget`` defaults to half of ``kompot.settings.memory_budget``.

    Per gene and cell a block holds the float64 expression, its copy in the
    null's canonical order and one permutation's rows (3 x 8 bytes), plus the
    float32 layers when they are kept. Each block also repeats the kernel
    factorisations of all cells, whose cost does not shrink with the block,
    so blocks are no smaller than these two limits need.
    """
    if budget is None:
        budget = int(settings.memory_budget * GENE_BLOCK_SHARE)
    n_genes = max(n_genes, 1)
    per_gene = max(n_cells, 1) * (3 * 8 + (4 * len(LAYERS) if layers else 0))
    return int(max(1, min(n_genes, budget // per_gene, -(-n_genes // max(slots, 1)))))


@dataclass(frozen=True)
class NullPlan:
    """The permutation null's draws, shared by all gene blocks.

    ``order1``/``order2`` put each condition's cells in canonical order,
    ``X`` holds the states in that order (condition 1 first), ``partitions``
    the permuted labels ``(mask, samples1, samples2)`` and ``genes`` the
    genes (sorted indices) each permutation refits.
    """

    order1: np.ndarray
    order2: np.ndarray
    X: np.ndarray
    partitions: list
    genes: list
    covariates: np.ndarray | None = None  # design rows in the same order as X
    state_groups: np.ndarray | None = None  # of the cells of X, for the covariate strata


@dataclass(frozen=True)
class GeneBlockPlan:
    """Everything a gene block's task shares with the others (scattered once to a cluster)."""

    X: np.ndarray
    mask1: np.ndarray
    mask2: np.ndarray
    samples: tuple
    de_kwargs: dict
    fit_kwargs: dict
    layers: bool
    predict_chunk: int
    null: NullPlan | None = None
    layer_store: LayerStore | None = None  # write the layers there (zarr), not into memory
    covariates: tuple | None = None  # (design of condition 1, of condition 2, column names)
    keep_model: bool = False
    progress: bool = False
    replicate_prior: ReplicatePrior | None = None  # moderates every gene's replicate covariance
    precision: str = "double"  # of the empirical-variance passes (kompot.core.precision)
    # Learn that prior from the pilot genes of the block's own fit (the one block holds all genes).
    learn_replicate_prior: bool = False


def plan_null(X1, Y1, X2, Y2, samples, landmarks, *, n_permutations, n_null_genes,
              random_state, covariates=None) -> NullPlan:
    """The null's permutations and genes, drawn as :func:`expression_null_distances` draws them.

    The random stream is the same (permutations first, then each
    permutation's genes in turn), so blocked runs reproduce its null. With
    ``covariates`` (both conditions' designs) only permutations in which
    the covariates' effects can still be learned are kept (a split of the
    samples that lines up with a batch cannot be adjusted for it); more are
    drawn to make up for those left out.
    """
    rng = np.random.default_rng(random_state)
    o1, o2 = canonical_rows(X1, Y1), canonical_rows(X2, Y2)
    X = np.vstack([np.asarray(X1, np.float64)[o1], np.asarray(X2, np.float64)[o2]])
    draw = n_permutations if covariates is None else 4 * n_permutations + 10
    partitions = label_partitions(
        len(X1), len(X), _reorder(samples[0], o1), _reorder(samples[1], o2), draw,
        rng, strata=state_strata(X, landmarks),
    )
    Z = groups = None
    if covariates is not None:
        Z = np.vstack([np.asarray(covariates[0], np.float64)[o1],
                       np.asarray(covariates[1], np.float64)[o2]])
        groups = state_groups(X)
        partitions = [p for p in partitions if identifiable(Z, groups * 2 + ~p[0])]
        partitions = partitions[:n_permutations]
    n_genes = Y1.shape[1]
    genes = []
    for _ in partitions:
        drawn = np.arange(n_genes)
        if n_null_genes is not None and n_null_genes < n_genes:
            drawn = np.sort(rng.choice(n_genes, size=n_null_genes, replace=False))
        genes.append(drawn)
    return NullPlan(o1, o2, X, partitions, genes, Z, groups)


def gene_blocks(Y1, Y2, size: int) -> list[tuple[slice, object, object]]:
    """``(genes, Y1 block, Y2 block)`` per block of at most ``size`` consecutive genes."""
    return [(s, take_genes(Y1, s), take_genes(Y2, s)) for s in block_slices(Y1.shape[1], size)]


def fit_gene_block(plan: GeneBlockPlan, block) -> dict:
    """Everything per gene for one block: fits, per-gene results, layers, null distances.

    A pure function of the plan and the block (it runs on Dask workers as it
    does here). Returns ``mean_lfc``, ``mahalanobis``, ``layers`` (a dict,
    empty without layers; with a layer store the paths of the block's zarr
    arrays), ``null`` (the block's distances per permutation,
    with a null plan) and ``model`` (the fitted model, when the plan keeps it).
    """
    with precision.using(plan.precision):
        return _computed_block(plan, *block)


def _computed_block(plan: GeneBlockPlan, genes: slice, Y1, Y2) -> dict:
    X, mask1, mask2 = plan.X, plan.mask1, plan.mask2
    refits = _pooled_refits(plan, Y1, Y2)
    model = _fitted_model(plan, Y1, Y2, refits)
    terms = model.mahalanobis_terms(model.landmarks_)  # once, for the prior and the distances
    prior = (learn_replicate_prior(model, terms, pilot_genes(Y1.shape[1]))
             if plan.learn_replicate_prior else plan.replicate_prior)
    mean_lfc, layers = predict_in_chunks(model, X, mask1 | mask2, plan.layers, plan.progress,
                                         plan.predict_chunk, plan.layer_store, genes)
    out = dict(mean_lfc=mean_lfc, layers=layers, replicate_prior=prior,
               mahalanobis=replicate_distances(model, prior, plan.progress, terms))
    if plan.null is not None:
        out["null"] = _block_null(plan, model, Y1, Y2, genes, prior, refits)
    if plan.keep_model:
        out["model"] = model
    return out


def _fitted_model(plan: GeneBlockPlan, Y1, Y2, refits=None) -> DifferentialExpression:
    """Both conditions fitted to these genes with the real labels (covariates removed first).

    With the block's :class:`~kompot.models.pooled_refits.PooledRefits` the fit
    comes from the sums it shares with the null's refits, where it can; the
    pooled cells put condition 1 first.
    """
    X, mask1, mask2 = plan.X, plan.mask1, plan.mask2
    if refits is not None and (plan.samples[0] is None) == (plan.samples[1] is None):
        first = np.arange(int(mask1.sum() + mask2.sum())) < mask1.sum()
        model = refits.fit(first, *plan.samples, np.arange(Y1.shape[1]))
        if model is not None:
            return model
    if plan.covariates is not None:
        Z1, Z2, names = plan.covariates
        Y1, Y2, _ = adjust_for_covariates(X[mask1], Y1, Z1, X[mask2], Y2, Z2, names=names)
    model = DifferentialExpression(**plan.de_kwargs)
    model.fit(X[mask1], Y1, X[mask2], Y2, condition1_sample_indices=plan.samples[0],
              condition2_sample_indices=plan.samples[1], **plan.fit_kwargs)
    return model


def with_replicate_prior(plan: GeneBlockPlan, Y1, Y2, n_blocks: int) -> GeneBlockPlan:
    """The plan with the prior that moderates every gene's replicate covariance.

    The prior is learned from a pilot of the genes with the real labels, so
    that every block and every permutation uses the same prior however the
    genes are split. When one block holds all genes, that block learns it
    from the pilot genes of its own fit instead of fitting them twice.
    Without samples there is nothing to moderate and the plan is returned.
    """
    if plan.samples[0] is None and plan.samples[1] is None:
        return plan
    if n_blocks == 1:
        return replace(plan, learn_replicate_prior=True)
    Y1, Y2 = (take_genes(Y, pilot_genes(Y1.shape[1])) for Y in (Y1, Y2))
    with precision.using(plan.precision):
        pilot = _fitted_model(plan, Y1, Y2, _pooled_refits(plan, Y1, Y2))
    return replace(plan, replicate_prior=learn_replicate_prior(pilot))


def predict_in_chunks(model, X, in_pair, layers, progress, chunk, store=None, genes=None):
    """Mean fold change over the two conditions' cells, and float32 per-cell results.

    Predicting in chunks of cells keeps only one chunk in float64 at a time, so
    that without layers memory does not grow with the number of cells times genes.
    Without layers only the posterior means enter (:func:`mean_fold_change`).
    With a :class:`~kompot.models.layer_store.LayerStore` each chunk is
    written into the block's zarr arrays (``genes``: the block's slice), and
    the paths are returned instead of the layers.
    """
    if not layers:
        return mean_fold_change(model, X[in_pair], chunk), {}
    if store is not None:
        # Whole zarr chunks per write: no chunk is read back to be completed.
        rows = store_chunk_rows(chunk, genes.stop - genes.start)
        chunk = chunk // rows * rows
    per_cell = {}
    fc_sum = None
    for s in block_slices(X.shape[0], chunk, progress=progress, desc="predict expression"):
        part = model.predict(X[s], progress=False)
        in_chunk = part["fold_change"][in_pair[s]].sum(axis=0)
        fc_sum = in_chunk if fc_sum is None else fc_sum + in_chunk
        for name in LAYERS:
            if name not in per_cell:
                shape = (X.shape[0], part[name].shape[1])
                per_cell[name] = (np.empty(shape, np.float32) if store is None
                                  else store.create(name, genes, shape[0], chunk))
            # numpy casts in place; zarr is handed float32 to store.
            per_cell[name][s] = part[name] if store is None else part[name].astype(np.float32)
    if store is not None:
        per_cell = {name: store.path(name, genes) for name in per_cell}
    return fc_sum / in_pair.sum(), per_cell


def mean_fold_change(model, X, chunk: int) -> np.ndarray:
    """Per gene, the mean over the rows of ``X`` of condition 2's minus condition 1's posterior mean.

    A kompot fit's mean is ``mu + k(x, landmarks) @ weights``, linear in the
    kernel row, so its mean over cells is ``mu`` plus the mean kernel row
    times the weights: no cells x genes array, and none of the standard
    deviations (replicate variance included) that ``predict`` computes.
    Other predictors are evaluated chunk by chunk.
    """
    m1, m2 = model._models()
    if m1._fit is None or m2._fit is None:
        total = 0.0
        for s in block_slices(X.shape[0], chunk):
            total = total + (m2.predict(X[s], progress=False)
                             - m1.predict(X[s], progress=False)).sum(axis=0)
        return total / X.shape[0]
    k1 = _mean_kernel_row(m1._fit, X, chunk)
    k2 = k1 if m1._shares_basis_with(m2) else _mean_kernel_row(m2._fit, X, chunk)
    return (m2._fit.mu + k2 @ m2._fit.weights) - (m1._fit.mu + k1 @ m1._fit.weights)


def _mean_kernel_row(fit, X, chunk: int) -> np.ndarray:
    """``k(X, landmarks).mean(axis=0)``, computed a chunk of cells at a time."""
    total = 0.0
    for s in block_slices(X.shape[0], chunk):
        total = total + fit.kernel(X[s]).sum(axis=0)
    return total / X.shape[0]


def _block_null(plan: GeneBlockPlan, model, Y1, Y2, genes: slice,
                prior: ReplicatePrior | None, refits) -> list[np.ndarray]:
    """Each permutation's distances of the genes it drew from this block (in gene order).

    Refits reuse the real fit's landmarks, length scale and pooled prior
    weights: the union of the cells, and so the pooled fit, is the same under
    any relabelling. What the refits share beyond that (each cell's whitened
    kernel, the sums over each sample or over all cells, each sample's own
    factors) is computed once (``refits``, the block's
    :class:`~kompot.models.pooled_refits.PooledRefits`); refits it does not
    cover are fitted from the cells (:func:`_refit_from_cells`).
    """
    null = plan.null
    priors = dict(mean_weights=model.prior_mean_weights_,
                  variance_mean_weights=model.prior_variance_weights_)
    bases = ReplicateBases() if refits is None else refits.bases
    block_genes = [d[(d >= genes.start) & (d < genes.stop)] - genes.start for d in null.genes]
    Y = [refits.Y if refits is not None else None]  # the pooled cells' expression, once made

    def distances(draw) -> np.ndarray:
        (mask, s1, s2), local = draw
        if local.size == 0:
            return np.empty(0)
        de = None if refits is None else refits.fit(mask, s1, s2, local)
        if de is None:
            Y[0] = _pooled_rows(plan, Y1, Y2) if Y[0] is None else Y[0]
            de = _refit_from_cells(plan, Y[0], (mask, s1, s2), local, priors, bases)
        return replicate_distances(de, prior)

    draws = list(zip(null.partitions, block_genes, strict=True))
    # One permutation at a time: the shared refits spread each one's passes over
    # the cells across the cores, which keeps them all busy for any number of
    # permutations.
    return [distances(draw) for draw in tqdm(draws, total=len(draws), desc="null permutations",
                                             disable=not plan.progress, leave=False)]


def _refit_from_cells(plan: GeneBlockPlan, Y, partition, local, priors: dict, bases):
    """One permutation's :class:`DifferentialExpression` fitted to its cells (``local`` genes)."""
    null, (mask, s1, s2) = plan.null, partition
    kwargs = {**plan.fit_kwargs, "replicate_bases": bases,
              **{k: None if w is None else np.asarray(w)[:, local] for k, w in priors.items()}}
    Yg = take_genes(Y, local)
    (rows1, s1), (rows2, s2) = _reading_order(Y, mask, s1), _reading_order(Y, ~mask, s2)
    A1, A2 = take_rows(Yg, rows1), take_rows(Yg, rows2)
    if null.covariates is not None:
        # Learned again with the permuted labels, as the real run learns it with its own.
        A1, A2 = _adjusted_split(null, rows1, rows2, A1, A2)
    de = DifferentialExpression(**plan.de_kwargs)
    return de.fit(null.X[rows1], A1, null.X[rows2], A2,
                  condition1_sample_indices=s1, condition2_sample_indices=s2, **kwargs)


def _pooled_refits(plan: GeneBlockPlan, Y1, Y2):
    """The block's :class:`~kompot.models.pooled_refits.PooledRefits`, or ``None``.

    The pooled cells are in the null's canonical order (condition 1 first)
    or, without a null, in the conditions' own order. Covariates are learned
    again in each permutation, which changes the expression itself; those
    fits take the general path.
    """
    if plan.covariates is not None:
        return None
    both = plan.samples[0] is not None and plan.samples[1] is not None
    if plan.null is None and not both and plan.samples != (None, None):
        return None  # one condition's sample variance lent to the other: the general path
    order1, order2 = _pooled_order(plan)
    X = plan.null.X if plan.null is not None else np.vstack([plan.X[plan.mask1][order1],
                                                             plan.X[plan.mask2][order2]])
    samples = None
    if both:
        samples = np.concatenate([np.asarray(plan.samples[0])[order1],
                                  np.asarray(plan.samples[1])[order2]])
    return pooled_refits(X, _pooled_rows(plan, Y1, Y2), samples, plan.de_kwargs,
                         plan.fit_kwargs, np.arange(Y1.shape[1]), ReplicateBases())


def _pooled_order(plan: GeneBlockPlan) -> tuple[np.ndarray, np.ndarray]:
    """Each condition's rows in the pooled cells' order."""
    if plan.null is not None:
        return plan.null.order1, plan.null.order2
    return np.arange(int(plan.mask1.sum())), np.arange(int(plan.mask2.sum()))


def _pooled_rows(plan: GeneBlockPlan, Y1, Y2):
    """Both conditions' expression as the pooled cells: a view when Y1 and Y2 are CellRows views."""
    order1, order2 = _pooled_order(plan)
    return stack_rows(take_rows(Y1, order1), take_rows(Y2, order2))


def _adjusted_split(null: NullPlan, rows1, rows2, Y1, Y2):
    """Both permuted groups' expression with the covariates' effects (learned for this split) removed."""
    rows = np.r_[rows1, rows2]
    strata = null.state_groups[rows] * 2 + np.r_[np.zeros(len(rows1), int), np.ones(len(rows2), int)]
    return adjusted_pair(Y1, Y2, null.covariates[rows], strata)[:2]


def pooled_null(block_nulls: list[list[np.ndarray]], rescale_to: np.ndarray | None) -> np.ndarray:
    """The blocks' null distances joined per permutation, rescaled, then pooled.

    With ``rescale_to`` (the observed distances) each permutation's distances
    are scaled so that their median over its genes equals the observed median,
    as :func:`~kompot.models.null.expression_null_distances` does.
    """
    n_permutations = len(block_nulls[0])
    null = []
    for p in range(n_permutations):
        distances = np.concatenate([block[p] for block in block_nulls])
        if rescale_to is not None and distances.size >= MIN_GENES_FOR_RESCALING:
            distances = distances * _median_ratio(rescale_to, distances)
        null.append(distances)
    logger.info("DE null distribution from %d permutations.", n_permutations)
    return np.concatenate(null)


def joined_layers(parts: list[dict], n_cells: int, n_genes: int) -> dict:
    """The blocks' per-cell layers side by side (no copy for a single block).

    Blocks written to zarr stores (paths) are joined as lazy dask arrays.
    """
    if not parts[0]:
        return parts[0]
    if isinstance(next(iter(parts[0].values())), str):
        return read_layers(parts)
    if len(parts) == 1:
        return parts[0]
    out = {name: np.empty((n_cells, n_genes), np.float32) for name in parts[0]}
    start = 0
    for part in parts:
        width = next(iter(part.values())).shape[1]
        for name, values in part.items():
            out[name][:, start:start + width] = values
        start += width
    return out
