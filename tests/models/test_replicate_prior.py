"""Moderated replicate covariance in DE: the distances, and one prior for all gene blocks."""

import numpy as np
import pytest
from model_testing import C1, C2, toy_arrays

import kompot
from kompot import DifferentialExpression
from kompot.core.replicate_moderation import moderated_terms, reference_variance
from kompot.models import replicate_prior, run_differential_expression
from kompot.models.replicate_prior import learn_replicate_prior, pilot_genes, replicate_distances


@pytest.fixture(scope="module")
def data():
    return toy_arrays(kompot.datasets.toy(n_cells=300, n_genes=40, n_de_genes=8, seed=5))


@pytest.fixture(scope="module")
def model(data):
    X, m1, m2, Y, s = data
    de = DifferentialExpression(n_landmarks=25, random_state=0)
    de.fit(X[m1], Y[m1], X[m2], Y[m2], condition1_sample_indices=s[m1],
           condition2_sample_indices=s[m2])
    return de


def test_moderated_distances_equal_a_dense_solve(model):
    prior = learn_replicate_prior(model)
    assert prior is not None and 0.0 <= prior.weight < 1.0
    got = replicate_distances(model, prior)
    delta, shared, low_rank, diag = model.mahalanobis_terms(model.landmarks_)
    B, (P, c) = moderated_terms(low_rank, reference_variance(diag, low_rank.shape[0]), prior)
    for g in range(delta.shape[1]):
        cov = shared + np.diag(diag[:, g]) + B[g] @ B[g].T + c[g] * P
        want = np.sqrt(delta[:, g] @ np.linalg.solve(cov, delta[:, g]))
        assert got[g] == pytest.approx(want, rel=1e-8)
    np.testing.assert_array_equal(model.mahalanobis_distances, got)
    # Moderation moves the distances: genes whose samples agreed by chance lose most.
    plain = model.compute_mahalanobis_distances(model.landmarks_, progress=False)
    assert not np.allclose(plain, got, rtol=1e-3)


def test_without_samples_there_is_nothing_to_moderate(data):
    X, m1, m2, Y, _ = data
    de = DifferentialExpression(n_landmarks=25, random_state=0)
    de.fit(X[m1], Y[m1], X[m2], Y[m2])
    assert learn_replicate_prior(de) is None
    np.testing.assert_array_equal(replicate_distances(de, None),
                                  de.compute_mahalanobis_distances(de.landmarks_, progress=False))


@pytest.mark.parametrize("pilot", [None, 10], ids=["pilot-all-genes", "pilot-10-of-40"])
def test_every_gene_block_uses_one_prior(data, monkeypatch, pilot):
    """One block learns the prior from the pilot genes of its own fit, blocks of 7 genes
    from a fit of the pilot alone: the results are the same either way."""
    if pilot is not None:
        monkeypatch.setattr(replicate_prior, "PILOT_GENES", pilot)
    X, m1, m2, Y, s = data
    kwargs = dict(condition1_sample_indices=s[m1], condition2_sample_indices=s[m2],
                  n_landmarks=25, n_permutations=3, n_null_genes=20, layers=False)
    run = run_differential_expression(X, m1, m2, Y[m1], Y[m2], **kwargs)
    one = run.values
    blocks = run_differential_expression(X, m1, m2, Y[m1], Y[m2], gene_block_size=7,
                                         **kwargs)
    for name in ("mahalanobis", "pvalue", "tail_fdr"):
        np.testing.assert_allclose(blocks.values[name], one[name], rtol=1e-10, err_msg=name)
    recorded = run.fitted["replicate_prior"]
    assert blocks.fitted["replicate_prior"] == pytest.approx(recorded, rel=1e-12)
    assert 0.0 <= recorded["weight"] < 1.0 and recorded["scale"] > 0
    plain = run_differential_expression(X, m1, m2, Y[m1], Y[m2], moderate_replicates=False,
                                        **kwargs).values
    assert not np.allclose(plain["mahalanobis"], one["mahalanobis"], rtol=1e-3)


def test_the_run_records_its_prior(data):
    import anndata as ad
    import pandas as pd

    X, m1, m2, Y, s = data
    adata = ad.AnnData(Y.astype(np.float32), obs=pd.DataFrame(
        {"condition": np.where(m2, C2, C1), "sample": s}, index=[str(i) for i in range(len(Y))]))
    adata.obsm["DM_EigenVectors"] = X
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, sample_col="sample",
                                              n_landmarks=25, n_permutations=2,
                                              store_layers=False, progress=False)
    record = adata.uns["kompot_de"]
    assert set(record["replicate_prior"]) == {"df", "scale", "residual_df", "weight"}
    assert record["params"]["moderate_replicates"] is True
    with pytest.raises(ValueError, match="moderate_replicates"):
        kompot.tl.compute_differential_expression(adata, "condition", C1, C2,
                                                  sample_col="sample", moderate_replicates="yes")


def test_pilot_genes_spread_over_the_panel():
    np.testing.assert_array_equal(pilot_genes(5, size=10), np.arange(5))
    picked = pilot_genes(10_000, size=500)
    assert len(picked) == 500 and picked[0] == 0 and picked[-1] == 9_999
    assert np.all(np.diff(picked) >= 19)
