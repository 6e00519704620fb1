"""Null distributions for DE and DA, by permuting condition labels.

Under the null hypothesis a gene's expression at a given cell state does not
depend on the condition. Permuting which cells (or, with replicates, which
whole samples) belong to which condition keeps every gene's structure over
cell states and breaks only its link to the condition; refitting and
recomputing the distances gives draws from the null. Shuffling a gene's
values across cells instead (as kompot 0.8.0 does) destroys that structure
and makes the null far too narrow.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings

import numpy as np
from tqdm.auto import tqdm

from .._warnings import KompotRuntimeWarning
from ..core.cell_rows import CellRows, project_rows, stack_rows, take_genes, take_rows
from ..core.landmarks import canonical_order, select_landmarks
from .differential_abundance import DifferentialAbundance
from .differential_expression import DifferentialExpression
from .pooled_refits import pooled_refits

logger = logging.getLogger("kompot")

# Average number of cells per group of similar states within which the DE
# null shuffles labels (see state_strata).
# Larger groups shuffle more labels (more power where cells are few) but keep
# each condition's composition less closely. Toy data, 2,000 cells, no
# replicates: at 200 genes 4, 8 and 16 gave the same FDP; at 500 genes (5
# seeds, 500 landmarks) 8 gave FDP 0.04 / 0.10 at q 0.05 / 0.10 where 4 gave
# 0.00 / 0.03.
MIN_CELLS_PER_STRATUM = 4

# Below this many genes per permutation the median over genes is too noisy to
# read a split's scale from, and the null distances are used as they are.
MIN_GENES_FOR_RESCALING = 20


# Above this many possible splits of the samples, splits are drawn at random
# (seeded) instead of enumerated: 10 vs 10 samples already have 92,378.
MAX_ENUMERATED_SPLITS = 10_000


def sample_splits(
    samples1: np.ndarray, samples2: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reassignments of whole samples to the two conditions, excluding the observed one.

    Keeps the number of samples per condition. When the two conditions have
    equally many samples, a split and its mirror image give the same
    distances, so only one of each pair is used. With few samples the splits
    are enumerated and ``n_permutations`` of them drawn; with many
    (more than :data:`MAX_ENUMERATED_SPLITS`) distinct random splits are drawn.
    """
    labels1, labels2 = np.unique(samples1), np.unique(samples2)
    pooled = np.concatenate([labels1, labels2])
    k1, total = len(labels1), len(pooled)
    if math.comb(total, k1) > MAX_ENUMERATED_SPLITS:
        chosen = _random_splits(k1, total, n_permutations, rng)
    else:
        chosen = _enumerated_splits(k1, total, n_permutations, rng)
    return [(pooled[c], np.setdiff1d(pooled, pooled[c])) for c in chosen]


def _canonical_split(members: frozenset, k1: int, total: int) -> frozenset | None:
    """The split as counted once (mirror pairs folded), or ``None`` for the observed one."""
    observed = frozenset(range(k1))
    if 2 * k1 == total and 0 not in members:
        members = frozenset(range(total)) - members  # one of each mirror pair
    return None if members == observed else members


def _enumerated_splits(k1, total, n_permutations, rng) -> list[list[int]]:
    candidates = sorted({c for combo in itertools.combinations(range(total), k1)
                         if (c := _canonical_split(frozenset(combo), k1, total)) is not None},
                        key=sorted)
    if not candidates:
        return []
    take = rng.choice(len(candidates), size=min(n_permutations, len(candidates)), replace=False)
    return [sorted(candidates[i]) for i in sorted(take)]


def _random_splits(k1, total, n_permutations, rng) -> list[list[int]]:
    n_permutations = min(n_permutations, math.comb(total, k1) // 2 - 1)
    seen: set[frozenset] = set()
    while len(seen) < n_permutations:
        c = _canonical_split(frozenset(rng.choice(total, size=k1, replace=False).tolist()),
                             k1, total)
        if c is not None:
            seen.add(c)
    return sorted(sorted(c) for c in seen)


def label_partitions(
    n1: int,
    n: int,
    samples1: np.ndarray | None,
    samples2: np.ndarray | None,
    n_permutations: int,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Permuted condition assignments of the pooled cells (condition 1 first).

    Returns ``(mask, samples_of_condition1, samples_of_condition2)`` per
    permutation, where ``mask`` selects the cells of the new condition 1.
    With sample labels for both conditions, whole samples are reassigned;
    otherwise single cells, keeping the condition sizes -- and, with
    ``strata`` (one integer per cell), the number of cells of each condition
    in every stratum.
    """
    partitions = []
    if samples1 is not None and samples2 is not None:
        samples = np.concatenate([np.asarray(samples1), np.asarray(samples2)])
        splits = sample_splits(np.asarray(samples1), np.asarray(samples2), n_permutations, rng)
        if splits:
            for first, _ in splits:
                mask = np.isin(samples, first)
                partitions.append((mask, samples[mask], samples[~mask]))
            return partitions
        warnings.warn(
            "Too few replicate samples to swap between conditions; the null permutes "
            "cells instead and ignores between-sample variation.",
            KompotRuntimeWarning, stacklevel=3,
        )
    observed = np.arange(n) < n1
    if strata is not None:
        strata = np.asarray(strata)
        # Cells grouped by stratum, once in a fixed and once in a random order
        # within each stratum: both orders list every stratum with the same
        # size, so handing the fixed order's labels to the random order
        # shuffles labels inside strata only.
        fixed = np.lexsort((np.arange(n), strata))
    for _ in range(n_permutations):
        if strata is None:
            mask = np.zeros(n, dtype=bool)
            mask[rng.choice(n, size=n1, replace=False)] = True
        else:
            shuffled = np.lexsort((rng.random(n), strata))
            mask = np.empty(n, dtype=bool)
            mask[shuffled] = observed[fixed]
        partitions.append((mask, None, None))
    return partitions


def state_strata(X: np.ndarray, landmarks: np.ndarray, min_cells: int | None = None) -> np.ndarray:
    """Small groups of cells with similar states: one integer per cell.

    A group is the set of cells nearest to one landmark. With fewer than
    ``min_cells`` (default :data:`MIN_CELLS_PER_STRATUM`) cells per landmark
    on average (few cells, or as many landmarks as cells), most groups would
    hold one condition only and a shuffle within them would leave the labels
    as they are -- a "null" equal to the data, with no power. The landmarks
    are then merged by k-means into ``n // min_cells`` groups first.
    """
    from scipy.spatial import cKDTree

    min_cells = MIN_CELLS_PER_STRATUM if min_cells is None else int(min_cells)
    X = np.asarray(X, np.float64)
    centers = np.asarray(landmarks, np.float64)
    n_groups = max(1, X.shape[0] // min_cells)
    if n_groups < centers.shape[0]:
        centers = select_landmarks(centers, n_groups, random_state=0)
    return cKDTree(centers).query(X)[1]


def expression_null_distances(
    X1: np.ndarray,
    Y1,
    X2: np.ndarray,
    Y2,
    *,
    n_permutations: int = 5,
    condition1_sample_indices: np.ndarray | None = None,
    condition2_sample_indices: np.ndarray | None = None,
    de_kwargs: dict | None = None,
    fit_kwargs: dict | None = None,
    n_null_genes: int | None = None,
    rescale_to: np.ndarray | None = None,
    random_state: int | None = 0,
    progress: bool = False,
) -> np.ndarray:
    """Pooled Mahalanobis distances over label permutations.

    The permutations are drawn on the cells in a canonical order
    (:func:`canonical_rows`), so the distances do not depend on the order in
    which the cells are given.

    Parameters
    ----------
    X1, Y1, X2, Y2
        Cell states and expression of the two conditions, as given to
        :meth:`DifferentialExpression.fit`.
    n_permutations
        Number of permutations (each refits both expression models).
    condition1_sample_indices, condition2_sample_indices
        Replicate sample of each cell. When given, whole samples are swapped
        between conditions (all distinct splits if there are fewer than
        ``n_permutations``), so that between-sample variation stays in the null.
        Without them, cells are permuted within the groups of cells nearest
        to each landmark (when ``fit_kwargs`` holds ``landmarks``), which keeps
        each condition's cell-state composition.
    de_kwargs, fit_kwargs
        Passed to the :class:`DifferentialExpression` constructor and its
        ``fit``; pass the real run's ``landmarks``, ``ls``, ``mean_weights``
        and ``variance_mean_weights`` (its
        :attr:`~DifferentialExpression.prior_mean_weights_` and
        ``prior_variance_weights_``, all genes) so that the null uses exactly
        the same hyper-parameters and does not refit the pooled prior, which
        no relabelling changes.
    n_null_genes
        Genes (drawn at random for each permutation) whose distances enter
        the null; ``None`` (default) uses all. The empirical p-value resolves
        ``1 / (N + 1)`` for ``N`` pooled null distances; beyond that
        :func:`kompot.core.fdr.null_pvalues` extrapolates a generalised Pareto
        tail, so a subsample still gives small p-values, only conservatively.
    rescale_to
        The observed distances of the real run. When given (and at least
        :data:`MIN_GENES_FOR_RESCALING` genes enter each permutation), each
        permutation's distances are multiplied so that their median over
        genes equals the observed median ("genomic control"). A split of the
        cells or samples can scale the distances of *all* genes a little
        (with 3 vs 3 samples the observed/permuted median ratio varied from
        0.97 to 1.05 on the toy data), and those shared shifts would make
        the pooled p-values of one run too small or too large together.
        Most genes are null, so the median reads the split's scale; many
        real changes raise the observed median and make the test
        conservative, not liberal.

    Returns
    -------
    1-D array of null distances, ``min(n_genes, n_null_genes)`` per permutation.
    """
    de_kwargs = dict(de_kwargs or {})
    fit_kwargs = dict(fit_kwargs or {})
    rng = np.random.default_rng(random_state)
    # The permutations are drawn on the cells in a canonical order, so that
    # the null does not depend on how the caller ordered them.
    o1, o2 = canonical_rows(X1, Y1), canonical_rows(X2, Y2)
    X = np.vstack([np.asarray(X1, np.float64)[o1], np.asarray(X2, np.float64)[o2]])
    # A view of the same storage when Y1 and Y2 are CellRows views: no copy.
    Y = stack_rows(take_rows(Y1, o1), take_rows(Y2, o2))
    condition1_sample_indices = _reorder(condition1_sample_indices, o1)
    condition2_sample_indices = _reorder(condition2_sample_indices, o2)
    n1 = len(X1)

    # Permuting cells only within small groups of similar states keeps each
    # condition's cell-state composition. A differential-abundance effect
    # changes the uncertainty of each condition's fit region by region, and
    # with it the distribution of the distances: a null with the conditions'
    # compositions evened out would be too narrow wherever the real data
    # have differential abundance.
    landmarks = fit_kwargs.get("landmarks")
    strata = None if landmarks is None else state_strata(X, landmarks)
    partitions = label_partitions(
        n1, len(X), condition1_sample_indices, condition2_sample_indices, n_permutations, rng,
        strata=strata,
    )
    n_genes = Y.shape[1]
    # Drawn before any refit, from the same stream in the same order as before.
    drawn = [_null_genes(n_genes, n_null_genes, rng) for _ in partitions]
    pooled = None
    if condition1_sample_indices is not None and condition2_sample_indices is not None:
        pooled = np.concatenate([condition1_sample_indices, condition2_sample_indices])
    refits = pooled_refits(X, Y, pooled, de_kwargs, fit_kwargs, np.unique(np.concatenate(drawn))) \
        if partitions else None
    null = []
    draws = list(zip(partitions, drawn, strict=True))
    for (mask, s1, s2), genes in (tqdm(draws, desc="null permutations", leave=False)
                                  if progress else draws):
        de = None if refits is None else refits.fit(mask, s1, s2, genes)
        if de is None:
            de = _refit_from_cells(X, Y, mask, s1, s2, genes, de_kwargs, fit_kwargs)
        distances = de.compute_mahalanobis_distances(de.landmarks_, progress=False)
        if rescale_to is not None and genes.size >= MIN_GENES_FOR_RESCALING:
            distances = distances * _median_ratio(rescale_to, distances)
        null.append(distances)
    logger.info("DE null distribution from %d permutations.", len(partitions))
    return np.concatenate(null)


def _null_genes(n_genes: int, n_null_genes: int | None, rng) -> np.ndarray:
    """One permutation's genes: all, or ``n_null_genes`` drawn at random (sorted)."""
    if n_null_genes is not None and n_null_genes < n_genes:
        return np.sort(rng.choice(n_genes, size=n_null_genes, replace=False))
    return np.arange(n_genes)


def _refit_from_cells(X, Y, mask, s1, s2, genes, de_kwargs, fit_kwargs) -> DifferentialExpression:
    """Both conditions refitted to the permuted cells, the prior weights cut to ``genes``."""
    kwargs = dict(fit_kwargs)
    for name in ("mean_weights", "variance_mean_weights"):
        if kwargs.get(name) is not None:
            kwargs[name] = np.asarray(kwargs[name])[:, genes]
    Yg = take_genes(Y, genes)
    (rows1, s1), (rows2, s2) = _reading_order(Y, mask, s1), _reading_order(Y, ~mask, s2)
    de = DifferentialExpression(**de_kwargs)
    return de.fit(X[rows1], take_rows(Yg, rows1), X[rows2], take_rows(Yg, rows2),
                  condition1_sample_indices=s1, condition2_sample_indices=s2, **kwargs)


def _median_ratio(target: np.ndarray, distances: np.ndarray) -> float:
    """Factor that moves the median of ``distances`` onto the median of ``target``."""
    scale = float(np.median(distances))
    if not scale > 0:
        return 1.0  # all-zero distances carry no scale to match
    return float(np.median(np.asarray(target, np.float64))) / scale


def _reading_order(Y, mask: np.ndarray, samples):
    """The cells of ``mask`` (and their sample labels), in storage order for stored expression.

    A fit sums over its cells, so their order changes its result by rounding
    only; expression on disk or in a dask array is read far faster in the
    order it is stored than in the canonical order. In memory the canonical
    order is kept, and with it the results of earlier versions.
    """
    rows = np.flatnonzero(mask)
    if not isinstance(Y, CellRows) or Y.in_memory:
        return rows, samples
    order = Y.storage_order(rows)
    return rows[order], None if samples is None else np.asarray(samples)[order]


def _reorder(labels, order):
    return None if labels is None else np.asarray(labels)[order]


def canonical_rows(X: np.ndarray, Y=None) -> np.ndarray:
    """An order of the cells that depends only on their values, not on their positions.

    :func:`~kompot.core.landmarks.canonical_order` of the cell states; cells
    with identical states are ordered by their expression (a fixed random
    projection of ``Y``), so that permutations drawn on this order, and the
    fits that follow, are the same however the caller ordered the cells.
    """
    if Y is None:
        return _states_then(X, None)
    projection = np.random.default_rng(0).standard_normal(Y.shape[1])
    return _states_then(X, project_rows(Y, projection))


def _canonical_cells(X: np.ndarray, samples: np.ndarray | None) -> np.ndarray:
    """:func:`canonical_order` of the cell states; identical states ordered by sample."""
    codes = None if samples is None else \
        np.unique(np.asarray(samples), return_inverse=True)[1].reshape(-1)
    return _states_then(X, codes)


def _states_then(X: np.ndarray, tie_break: np.ndarray | None) -> np.ndarray:
    """Rows sorted by state (lexicographically), ties by ``tie_break`` when given."""
    X = np.asarray(X, np.float64)
    if tie_break is None:
        return canonical_order(X)
    return np.lexsort(np.vstack([tie_break[None, :], X.T[::-1]]))


def abundance_null_zscores(
    X1: np.ndarray,
    X2: np.ndarray,
    X_eval: np.ndarray,
    *,
    n_permutations: int = 5,
    condition1_sample_indices: np.ndarray | None = None,
    condition2_sample_indices: np.ndarray | None = None,
    da_kwargs: dict | None = None,
    fit_kwargs: dict | None = None,
    random_state: int | None = 0,
    progress: bool = False,
) -> np.ndarray:
    """DA z-scores at ``X_eval`` for permuted condition labels, shape (n_permutations, n_eval).

    Each permutation refits both densities on the permuted cells (whole
    samples when sample indices are given) with the same hyper-parameters;
    pass the real run's ``landmarks`` and ``ls`` in ``fit_kwargs``. The
    permutations are drawn on the cells in a canonical order, so the z-scores
    do not depend on the order in which the cells are given.
    """
    da_kwargs = dict(da_kwargs or {})
    fit_kwargs = dict(fit_kwargs or {})
    rng = np.random.default_rng(random_state)
    # Permutations drawn on the cells in a canonical order (as for DE), so
    # that the null does not depend on how the caller ordered the cells.
    o1 = _canonical_cells(X1, condition1_sample_indices)
    o2 = _canonical_cells(X2, condition2_sample_indices)
    X = np.vstack([np.asarray(X1, np.float64)[o1], np.asarray(X2, np.float64)[o2]])
    partitions = label_partitions(
        len(X1), len(X), _reorder(condition1_sample_indices, o1),
        _reorder(condition2_sample_indices, o2), n_permutations, rng,
    )
    null = []
    iterator = tqdm(partitions, desc="null permutations", leave=False) if progress else partitions
    for mask, s1, s2 in iterator:
        da = DifferentialAbundance(**da_kwargs)
        da.fit(X[mask], X[~mask], condition1_sample_indices=s1, condition2_sample_indices=s2,
               **fit_kwargs)
        null.append(da.predict(X_eval, progress=False)["log_fold_change_zscore"])
    logger.info("DA null distribution from %d permutations.", len(partitions))
    return np.stack(null)
