"""``covariates=`` of kompot.tl.compute_differential_abundance (the ratio model)."""

import numpy as np
import pytest
from _allowance import mean_allowance
from tl_testing import C1, C2, FAST

import kompot
import kompot.tl
from kompot._keys import DAKeys
from kompot.core.landmarks import canonical_order
from kompot.core.log_ratio import fit_log_ratio
from kompot.models import run_differential_abundance
from kompot.tl._input_meaning import informative_columns

KEYS = DAKeys("kompot_da", C1, C2)
Q = 0.1


@pytest.fixture(scope="module")
def batched(small):
    return kompot.datasets.with_batch_abundance(small, strength=3.0, seed=0)


def test_without_covariates_the_results_are_those_of_the_model_without_them(batched):
    adata = batched.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    assert adata.uns["kompot_da"]["params"]["covariates"] == "None"  # as DE records it
    X, _ = informative_columns(adata, "DM_EigenVectors", adata.obsm["DM_EigenVectors"])
    cond = adata.obs["condition"].to_numpy()
    result = run_differential_abundance(X, cond == C1, cond == C2, n_landmarks=100)
    np.testing.assert_array_equal(adata.obs[KEYS.lfc], result.values["lfc"])
    np.testing.assert_array_equal(adata.obs[KEYS.lfc_std], result.values["lfc_std"])
    # ... and that model runs the label GP without covariate columns.
    model = result.model
    assert model.covariates_ is None and model.covariate_effects_ == {}
    assert model.fit_.w.shape == (len(model.landmarks_),)
    X_fit = np.vstack([X[cond == C1], X[cond == C2]])
    y = np.r_[np.zeros((cond == C1).sum()), np.ones((cond == C2).sum())]
    order = canonical_order(X_fit)
    blocks = model.basis_.blocks(X_fit[order], None)
    direct = fit_log_ratio(blocks, y[order], amplitude=model.amplitude_,
                           offset=model.fit_.offset, n_landmarks=len(model.landmarks_))
    np.testing.assert_allclose(model.fit_.w, direct.w, atol=1e-6)


def test_covariates_are_recorded_and_only_the_results_are_written(batched):
    adata = batched.copy()
    before = adata.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, covariates="batch",
                                             sample_col="sample", **FAST)
    record = adata.uns["kompot_da"]
    assert record["params"]["covariates"] == ["batch"]
    assert set(record["covariate_effects"]) == {"batch=B"}
    assert record["covariate_effects"]["batch=B"] > 0  # batch B holds more treated samples
    new = set(adata.obs.columns) - set(before.obs.columns)
    assert all(c.startswith("kompot_da_") for c in new) and KEYS.lfc in new
    for column in before.obs.columns:
        np.testing.assert_array_equal(adata.obs[column], before.obs[column])
    assert np.isfinite(adata.obs[KEYS.lfc]).all() and (adata.obs[KEYS.lfc_std] > 0).all()


@pytest.mark.parametrize(
    ("covariates", "method", "match"),
    [
        ("batch", "density", "method='ratio'"),
        ("site", "ratio", "one condition only"),
        ("dose", "ratio", "nested"),
        (["condition"], "ratio", "cannot also be a covariate"),
    ],
)
def test_bad_covariates_raise_naming_the_fix(batched, covariates, method, match):
    adata = batched.copy()
    adata.obs["site"] = adata.obs["condition"].astype(str) + "_site"
    adata.obs["dose"] = (adata.obs["condition"] == C2).astype(float)  # numeric, confounded
    with pytest.raises(ValueError, match=match):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2,
                                                 covariates=covariates, method=method, **FAST)
    assert "kompot_da" not in adata.uns


def _batch_region_calls(seed):
    """Per run (without, with covariates): batch-region calls / calls, region share, TPR."""
    toy = kompot.datasets.toy(3000, 10, n_de_genes=2, n_samples=4, replicate_effects=False,
                              seed=seed)
    adata = kompot.datasets.with_batch_abundance(toy, strength=3.0, seed=seed)
    region, planted = adata.obs["batch_region"].to_numpy(), adata.obs["da_region"].to_numpy()
    out = []
    for covariates in (None, "batch"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2,
                                                 covariates=covariates, fdr_threshold=Q,
                                                 n_landmarks=150, progress=False)
        called = (adata.obs[KEYS.direction] != "neutral").to_numpy()
        out.append((called[region].sum() / max(called.sum(), 1), called[region].mean(),
                    called[planted].mean()))
    return out


def _check_batch_is_adjusted(seeds):
    runs = np.array([_batch_region_calls(seed) for seed in seeds])  # seeds x 2 x 3
    without, with_ = runs[:, 0], runs[:, 1]
    # Without covariates the pooled conditions differ in the batch region (a log ratio
    # up to log 3): many of its cells are called, on every seed.
    assert np.all(without[:, 1] > 0.2)
    # With the batch as a covariate its cells are false calls like any other: their share
    # of the calls, averaged over seeds, is within the Monte Carlo allowance of the FDR
    # level (tests/_allowance.py: a procedure at level Q passes with probability 0.99).
    share = with_[:, 0]
    assert share.mean() <= (mean_allowance(share, Q) if share.size > 1 else Q)
    # The planted changes are still found.
    assert with_[:, 2].mean() >= 0.6


def test_a_batch_that_shifts_composition_is_not_called_once_it_is_a_covariate():
    _check_batch_is_adjusted([0])


@pytest.mark.slow
def test_a_batch_that_shifts_composition_is_not_called_over_many_seeds():
    _check_batch_is_adjusted(range(1, 5))
