"""Fits from the pooled cells' shared sums (:mod:`kompot.models.pooled_refits`) equal fits
from the cells.

The reference fits each labelling the way the analysis did before the
shortcut: a fresh :class:`DifferentialExpression` fitted to the cells (for a
permutation: with the pooled prior, landmarks and length scale of the real
run), its distances moderated by the real run's replicate prior.
"""

import numpy as np
import pytest
from model_testing import toy_arrays
from scipy import sparse

import kompot
from kompot import DifferentialExpression
from kompot.core.cell_rows import CellRows
from kompot.models import gene_blocks, run_differential_expression
from kompot.models.null import label_partitions
from kompot.models.pooled_refits import pooled_refits
from kompot.models.replicate_prior import learn_replicate_prior, replicate_distances

DE_KWARGS = dict(n_landmarks=30, random_state=0, batch_size=500)


@pytest.fixture(scope="module")
def data():
    adata = kompot.datasets.toy(n_cells=360, n_genes=16, n_de_genes=4, n_samples=3, seed=3)
    X, _, treated, Y, samples = toy_arrays(adata)
    # Samples of unequal sizes: some below the 30 landmarks (fitted in the
    # space of their cells), some above (fitted on the landmarks).
    small = np.flatnonzero(samples == samples[0])[20:]
    samples[small[: len(small) // 2]] = "tiny"
    order = np.r_[np.flatnonzero(~treated), np.flatnonzero(treated)]
    return X[order], treated[order], Y[order], samples[order]


def _real_fit(data, with_samples):
    X, treated, Y, samples = data
    kwargs = {}
    if with_samples:
        kwargs = dict(condition1_sample_indices=samples[~treated],
                      condition2_sample_indices=samples[treated])
    de = DifferentialExpression(**DE_KWARGS).fit(X[~treated], Y[~treated], X[treated],
                                                Y[treated], ls=0.8, **kwargs)
    fit_kwargs = dict(sigma=1.0, ls=0.8, landmarks=de.landmarks_,
                      mean_weights=de.prior_mean_weights_,
                      variance_mean_weights=de.prior_variance_weights_)
    return de, fit_kwargs


def _reference(data, fit_kwargs, mask, genes, with_samples, prior):
    """A permutation refitted from its cells, as the null did before the shortcut."""
    X, _, Y, samples = data
    kwargs = {**fit_kwargs, **{k: fit_kwargs[k][:, genes]
                               for k in ("mean_weights", "variance_mean_weights")}}
    if with_samples:
        kwargs.update(condition1_sample_indices=samples[mask],
                      condition2_sample_indices=samples[~mask])
    de = DifferentialExpression(**DE_KWARGS).fit(X[mask], Y[mask][:, genes], X[~mask],
                                                Y[~mask][:, genes], **kwargs)
    return de, replicate_distances(de, prior)


def _partitions(data, with_samples, n=3):
    X, treated, _, samples = data
    rng = np.random.default_rng(1)
    s = (samples[~treated], samples[treated]) if with_samples else (None, None)
    return label_partitions(int((~treated).sum()), len(X), *s, n, rng)


def _check_equal(de, distances, want_de, want):
    np.testing.assert_allclose(distances, want, rtol=1e-10, atol=1e-12)
    for got_model, want_model in ((de.model1_, want_de.model1_), (de.model2_, want_de.model2_)):
        for name in ("weights", "variance_weights"):
            np.testing.assert_allclose(getattr(got_model._fit, name),
                                       getattr(want_model._fit, name), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("storage", ["dense", "cell rows"])
@pytest.mark.parametrize("with_samples", [False, True], ids=["cells", "samples"])
def test_shared_refits_equal_refits_from_cells(data, with_samples, storage):
    X, treated, Y, samples = data
    real, fit_kwargs = _real_fit(data, with_samples)
    prior = learn_replicate_prior(real) if with_samples else None
    genes_per_permutation = [np.arange(16), np.arange(0, 16, 2), np.array([1, 5, 7, 14])]
    stored = Y if storage == "dense" else CellRows(sparse.csr_matrix(Y))
    refits = pooled_refits(X, stored, samples if with_samples else None, DE_KWARGS, fit_kwargs,
                         np.arange(16))
    assert refits is not None
    for (mask, s1, s2), genes in zip(_partitions(data, with_samples), genes_per_permutation,
                                     strict=True):
        de = refits.fit(mask, s1, s2, genes)
        want_de, want = _reference(data, fit_kwargs, mask, genes, with_samples, prior)
        _check_equal(de, replicate_distances(de, prior), want_de, want)
        if with_samples:  # the same samples, with the same fits
            for got_m, want_m in ((de.model1_, want_de.model1_), (de.model2_, want_de.model2_)):
                got_v, want_v = got_m.variance_estimator, want_m.variance_estimator
                assert list(got_v._fits) == list(want_v._fits)
                np.testing.assert_allclose(got_v.low_rank_factor(X[:40]),
                                           want_v.low_rank_factor(X[:40]), rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("storage", ["dense", "cell rows"])
@pytest.mark.parametrize("with_samples", [False, True], ids=["cells", "samples"])
def test_real_labels_fit_with_its_own_pooled_prior_equals_the_fit(data, with_samples, storage):
    """Without a prior given, the pooled fit comes from the shared sums too, as fit() makes it."""
    X, treated, Y, samples = data
    want_de, fit_kwargs = _real_fit(data, with_samples)
    stored = Y if storage == "dense" else CellRows(sparse.csr_matrix(Y))
    no_prior = {k: v for k, v in fit_kwargs.items()
                if k not in ("mean_weights", "variance_mean_weights")}
    refits = pooled_refits(X, stored, samples if with_samples else None, DE_KWARGS, no_prior,
                           np.arange(16))
    s = (samples[~treated], samples[treated]) if with_samples else (None, None)
    de = refits.fit(~treated, *s, np.arange(16))
    np.testing.assert_allclose(de.prior_mean_weights_, want_de.prior_mean_weights_,
                               rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(de.prior_variance_weights_, want_de.prior_variance_weights_,
                               rtol=1e-9, atol=1e-11)
    prior = learn_replicate_prior(want_de) if with_samples else None
    _check_equal(de, replicate_distances(de, prior), want_de, replicate_distances(want_de, prior))
    if with_samples:
        for got_m, want_m in ((de.model1_, want_de.model1_), (de.model2_, want_de.model2_)):
            np.testing.assert_allclose(got_m.variance_estimator.low_rank_factor(X[:40]),
                                       want_m.variance_estimator.low_rank_factor(X[:40]),
                                       rtol=1e-8, atol=1e-11)


def test_blocks_beyond_the_memory_budget_are_recomputed(data, monkeypatch):
    """With no room to keep the whitened kernel or the samples' sums, the refits are the same."""
    X, treated, Y, samples = data
    real, fit_kwargs = _real_fit(data, True)
    mask, s1, s2 = _partitions(data, True, n=1)[0]
    genes = np.arange(16)
    roomy = pooled_refits(X, Y, samples, DE_KWARGS, fit_kwargs, genes)
    monkeypatch.setattr(kompot.settings, "memory_budget", 2**10)
    tight = pooled_refits(X, Y, samples, DE_KWARGS, fit_kwargs, genes)
    assert roomy.basis.kept_bytes > 0 and tight.basis.kept_bytes == 0
    assert all(a is not None for a in roomy.AY) and all(a is None for a in tight.AY)
    a = replicate_distances(roomy.fit(mask, s1, s2, genes), None)
    b = replicate_distances(tight.fit(mask, s1, s2, genes), None)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_refits_it_cannot_share_are_left_to_the_general_path(data):
    X, treated, Y, samples = data
    _, fit_kwargs = _real_fit(data, True)
    genes = np.arange(16)
    assert pooled_refits(X, Y, samples, {**DE_KWARGS, "use_empirical_variance": False},
                       fit_kwargs, genes) is None
    assert pooled_refits(X, Y, samples, DE_KWARGS, {**fit_kwargs, "mu": 1.0}, genes) is None
    assert pooled_refits(X, Y, samples, DE_KWARGS, {**fit_kwargs, "mean_weights": None},
                       genes) is None
    one_cell = samples.copy()
    one_cell[0] = "alone"  # the general path skips it, with a warning
    assert pooled_refits(X, Y, one_cell, DE_KWARGS, fit_kwargs, genes) is None
    refits = pooled_refits(X, Y, samples, DE_KWARGS, fit_kwargs, genes)
    mask = np.isin(samples, np.unique(samples[~treated])[:1])  # one sample against the rest
    assert refits.fit(mask, samples[mask], samples[~mask], genes) is None
    split = ~treated & (np.arange(len(X)) % 2 == 0)  # samples split across the conditions
    assert refits.fit(split, samples[split], samples[~split], genes) is None


@pytest.mark.parametrize("with_samples", [False, True], ids=["cells", "samples"])
def test_analysis_null_equals_refits_from_cells(data, with_samples, monkeypatch):
    """End to end: the real fit and the null with the shortcut equal the general path's."""
    X, treated, Y, samples = data
    nulls = []
    pooled_null = gene_blocks.pooled_null
    monkeypatch.setattr(gene_blocks, "pooled_null",
                        lambda parts, rescale: nulls.append(pooled_null(parts, rescale)) or nulls[-1])
    kwargs = {}
    if with_samples:
        kwargs = dict(condition1_sample_indices=samples[~treated],
                      condition2_sample_indices=samples[treated])

    def run():
        return run_differential_expression(X, ~treated, treated, Y[~treated], Y[treated],
                                           n_landmarks=30, n_permutations=2, n_null_genes=10,
                                           layers=False, client=False, **kwargs)

    shared = run()
    used = []
    real_refits = gene_blocks.pooled_refits
    monkeypatch.setattr(gene_blocks, "pooled_refits",
                        lambda *a, **k: used.append(real_refits(*a, **k)) and None)
    general = run()
    assert used and used[0] is not None  # the shortcut applied, and was switched off
    np.testing.assert_allclose(nulls[0], nulls[1], rtol=1e-10)
    for name in ("mahalanobis", "mean_lfc", "pvalue"):
        np.testing.assert_allclose(shared.values[name], general.values[name], rtol=1e-10,
                                   atol=1e-13, err_msg=name)


def test_expression_null_distances_equal_refits_from_cells(data, monkeypatch):
    from kompot.models import null

    X, treated, Y, samples = data
    _, fit_kwargs = _real_fit(data, True)

    def distances():
        return null.expression_null_distances(
            X[~treated], Y[~treated], X[treated], Y[treated], n_permutations=2,
            n_null_genes=12, condition1_sample_indices=samples[~treated],
            condition2_sample_indices=samples[treated], de_kwargs=DE_KWARGS,
            fit_kwargs=fit_kwargs)

    shared = distances()
    monkeypatch.setattr(null, "pooled_refits", lambda *args, **kwargs: None)
    np.testing.assert_allclose(shared, distances(), rtol=1e-10)



@pytest.mark.parametrize("mixed", [False, True], ids=["double", "auto-mixed"])
@pytest.mark.parametrize("with_samples", [False, True], ids=["cells", "samples"])
def test_passes_over_cell_blocks_in_threads_equal_one_block_at_a_time(data, monkeypatch,
                                                                       with_samples, mixed):
    """The real fit's and every permutation's passes over the cells, split into blocks of 50
    cells computed in threads, give the analysis's results of a plain loop over the blocks.

    The blocks' sums are taken in block order whatever the threads, so only the
    threads' single-threaded BLAS may sum a block's products in another order
    (1e-12, amplified by the distances' solves). The threads must be handed the
    run's precision: in double instead of mixed they would differ by 1e-7.
    """
    from kompot import parallel
    from kompot.core import precision
    from kompot.models import pooled_refits as module

    X, treated, Y, samples = data
    monkeypatch.setattr(precision, "AUTO_MIXED_CELLS", 100 if mixed else 10**9)
    monkeypatch.setattr(module, "MIN_BLOCK_CELLS", 50)
    blocks = []
    monkeypatch.setattr(gene_blocks, "pooled_refits", _counting(gene_blocks.pooled_refits, blocks))
    sample_kwargs = {}
    if with_samples:
        sample_kwargs = dict(condition1_sample_indices=samples[~treated],
                             condition2_sample_indices=samples[treated])
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(parallel, "thread_count", lambda threads=threads: threads)
        runs.append(run_differential_expression(
            X, ~treated, treated, Y[~treated], Y[treated], n_landmarks=30, n_permutations=3,
            batch_size=50, layers=False, client=False, **sample_kwargs).values)
    assert min(blocks) >= 6  # several blocks, so the threads had work to share
    for column in ("mahalanobis", "mean_lfc", "pvalue"):
        np.testing.assert_allclose(runs[0][column], runs[1][column], rtol=1e-10, err_msg=column)


def _counting(factory, blocks: list):
    """``factory`` recording how many blocks of cells each refits object made."""
    def counted(*args, **kwargs):
        refits = factory(*args, **kwargs)
        if refits is not None:
            blocks.append(len(refits.basis.blocks))
        return refits
    return counted
