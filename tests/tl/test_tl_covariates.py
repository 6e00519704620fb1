"""``covariates=`` of kompot.tl.compute_differential_expression."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from tl_testing import C1, C2, FAST

import kompot
import kompot.tl
from kompot._keys import DEKeys
from kompot.models.covariate_adjustment import state_groups
from kompot.tl._input_meaning import informative_columns

KEYS = DEKeys("kompot_de", C1, C2)


@pytest.fixture(scope="module")
def batched(small):
    return kompot.datasets.with_batch_effect(small, n_genes=10, strength=1.5, seed=0)


def _dense_adjusted(adata):
    """The expression with the batch's effect removed, by a dense least-squares fit."""
    X, _ = informative_columns(adata, "DM_EigenVectors", adata.obsm["DM_EigenVectors"])
    cond = (adata.obs["condition"] == C2).to_numpy()
    order = np.r_[np.flatnonzero(~cond), np.flatnonzero(cond)]  # condition 1's cells first
    strata = np.empty(adata.n_obs, int)
    strata[order] = state_groups(X[order]) * 2 + cond[order]
    onehot = (strata[:, None] == np.unique(strata)[None, :]).astype(float)
    z = (adata.obs["batch"] == "B").to_numpy(float)[:, None]
    Y = np.asarray(adata.X, np.float64)
    gamma = np.linalg.lstsq(np.hstack([onehot, z]), Y, rcond=None)[0][-1:]
    return Y - (z - z.mean()) @ gamma


def test_covariates_equal_a_run_on_expression_adjusted_by_least_squares(batched):
    ours = batched.copy()
    kompot.tl.compute_differential_expression(ours, "condition", C1, C2, covariates=["batch"],
                                              fdr=False, **FAST)
    reference = batched.copy()
    reference.X = _dense_adjusted(batched)
    kompot.tl.compute_differential_expression(reference, "condition", C1, C2, fdr=False, **FAST)
    for field in ("mahalanobis", "mean_lfc"):
        np.testing.assert_allclose(ours.var[getattr(KEYS, field)],
                                   reference.var[getattr(KEYS, field)], rtol=1e-7, atol=1e-9)
    assert ours.uns["kompot_de"]["params"]["covariates"] == ["batch"]
    assert ours.obs.equals(batched.obs)


def test_batch_genes_change_less_once_the_batch_is_removed(batched):
    adata = batched.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, fdr=False, **FAST)
    raw = adata.var[KEYS.mean_lfc].abs()
    raw_distance = adata.var[KEYS.mahalanobis].to_numpy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, fdr=False,
                                              covariates="batch", **FAST)
    adjusted = adata.var[KEYS.mean_lfc].abs()
    batch_genes = adata.var["is_batch_gene"].to_numpy()
    # Control holds 2/3 of its samples in batch A, treated 1/3: without the
    # adjustment a batch gene's fold change carries a third of the batch effect.
    assert adjusted[batch_genes].mean() < 0.5 * raw[batch_genes].mean()
    # With the batch genes no longer standing out, the planted genes rank higher.
    de = adata.var["is_de"].to_numpy()
    distance = adata.var[KEYS.mahalanobis].to_numpy()
    assert roc_auc_score(de, distance) > roc_auc_score(de, raw_distance)


@pytest.mark.parametrize(
    ("covariates", "error", "match"),
    [
        (["nope"], KeyError, "nope"),
        (["condition"], ValueError, "cannot also be a covariate"),
        (["site"], ValueError, "nested"),
        (["with_nan"], ValueError, "missing for 1"),
        ([], ValueError, "empty"),
    ],
)
def test_bad_covariates_raise_before_anything_is_written(batched, covariates, error, match):
    adata = batched.copy()
    adata.obs["site"] = adata.obs["condition"].astype(str) + "_site"
    adata.obs["with_nan"] = np.r_[np.nan, np.ones(adata.n_obs - 1)]
    before = adata.copy()
    with pytest.raises(error, match=match):
        kompot.tl.compute_differential_expression(adata, "condition", C1, C2,
                                                  covariates=covariates, **FAST)
    assert list(adata.var.columns) == list(before.var.columns)
    assert "kompot_de" not in adata.uns
