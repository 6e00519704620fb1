"""kompot.tl.compute_differential_expression on the toy data."""

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score
from tl_testing import C1, C2, FAST, assert_adata_equal

import kompot.tl
from kompot._keys import DEKeys

KEYS = DEKeys("kompot_de", C1, C2)
FLOAT_VAR = ("mean_lfc", "mahalanobis", "pvalue", "local_fdr", "tail_fdr")
# Fields that do not depend on the permutation null (which pools over the analysed genes).
DETERMINISTIC_VAR = ("mean_lfc", "mahalanobis")


@pytest.fixture(scope="module")
def de(small):
    """The toy data with one DE run at the default key."""
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **FAST)
    return adata


def _var(keys, field):
    return getattr(keys, field)


def test_fields_dtypes_and_shapes(de):
    for field in FLOAT_VAR:
        col = de.var[_var(KEYS, field)]
        assert col.dtype == np.float64, field
        assert np.isfinite(col).all(), field
    assert de.var[KEYS.is_de].dtype == bool
    for name in KEYS.layer_names():
        layer = de.layers[name]
        assert layer.shape == de.shape and layer.dtype == np.float32, name
        assert np.isfinite(layer).all(), f"{name} must be defined at every cell"
    assert (de.layers[KEYS.std(C1)] > 0).all()
    assert ((de.var[KEYS.pvalue] > 0) & (de.var[KEYS.pvalue] <= 1)).all()
    assert ((de.var[KEYS.tail_fdr] >= 0) & (de.var[KEYS.tail_fdr] <= 1)).all()


def test_values_are_consistent(de):
    fc = de.layers[KEYS.fold_change]
    np.testing.assert_allclose(fc, de.layers[KEYS.smoothed(C2)] - de.layers[KEYS.smoothed(C1)],
                               atol=1e-5)
    np.testing.assert_allclose(de.var[KEYS.mean_lfc], fc.mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(de.var[KEYS.is_de], de.var[KEYS.tail_fdr] <= 0.05)


def test_cells_of_other_conditions_get_values(small):
    adata = small.copy()
    condition = adata.obs["condition"].astype(str).to_numpy().copy()
    condition[:60] = "other"
    adata.obs["condition"] = pd.Categorical(condition)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, fdr=False, **FAST)
    for name in KEYS.layer_names():
        assert np.isfinite(adata.layers[name]).all(), name
    # The mean fold change runs over the two conditions' cells only.
    fc = adata.layers[KEYS.fold_change]
    pair = adata.obs["condition"].isin([C1, C2]).to_numpy()
    np.testing.assert_allclose(adata.var[KEYS.mean_lfc], fc[pair].mean(axis=0), atol=1e-5)
    assert not np.allclose(adata.var[KEYS.mean_lfc], fc.mean(axis=0), atol=1e-5)


def test_planted_genes(de):
    auroc = roc_auc_score(de.var["is_de"], de.var[KEYS.mahalanobis])
    print(f"DE AUROC of the Mahalanobis distance for the planted genes: {auroc:.3f}")
    assert auroc >= 0.87  # measured 0.895
    called = de.var[KEYS.is_de]
    assert called.sum() > 0
    assert called[de.var["is_de"]].mean() > called[~de.var["is_de"]].mean()


def test_record(de):
    record = de.uns["kompot_de"]
    assert record["condition1"] == C1 and record["condition2"] == C2
    assert record["landmarks"].shape[0] == 100 and record["ls"] > 0
    assert record["params"]["fdr"] is True and record["params"]["genes"] == "None"
    assert sorted(record["fields"]["var"]) == sorted(KEYS.var_columns())
    assert sorted(record["fields"]["layers"]) == sorted(KEYS.layer_names())
    assert list(record["fields"]["obs"]) == []


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_gives_the_same_results(de, fmt):
    adata = de.copy()
    adata.X = sparse.csr_matrix(adata.X) if fmt == "csr" else sparse.csc_matrix(adata.X)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **FAST)
    for field in FLOAT_VAR:
        np.testing.assert_allclose(adata.var[_var(KEYS, field)], de.var[_var(KEYS, field)],
                                   rtol=1e-10, err_msg=field)
    np.testing.assert_array_equal(adata.var[KEYS.is_de], de.var[KEYS.is_de])
    for name in KEYS.layer_names():
        np.testing.assert_allclose(adata.layers[name], de.layers[name], rtol=1e-6, err_msg=name)


def test_layer_and_float64_input(de):
    adata = de.copy()
    adata.layers["lognorm"] = adata.X.astype(np.float64)
    adata.X = np.zeros_like(adata.X)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, layer="lognorm",
                                              fdr=False, **FAST)
    np.testing.assert_allclose(adata.var[KEYS.mahalanobis], de.var[KEYS.mahalanobis], rtol=1e-10)
    assert adata.uns["kompot_de"]["params"]["layer"] == "lognorm"


@pytest.mark.parametrize("by", ["names", "mask"])
def test_gene_subset_matches_full_run(de, by):
    adata = de.copy()
    picked = np.zeros(adata.n_vars, dtype=bool)
    picked[[1, 5, 7, 20, 33]] = True
    genes = list(adata.var_names[picked][::-1]) if by == "names" else picked
    kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, genes=genes, key_added="sub", fdr=by == "names", **FAST
    )
    sub = DEKeys("sub", C1, C2)
    for field in DETERMINISTIC_VAR:
        np.testing.assert_allclose(adata.var[_var(sub, field)][picked],
                                   de.var[_var(KEYS, field)][picked], rtol=1e-8, err_msg=field)
    written = list(adata.uns["sub"]["fields"]["var"])
    assert len(written) == (6 if by == "names" else 2)
    for name in written:
        col = adata.var[name]
        assert (~col[~picked]).all() if col.dtype == bool else col[~picked].isna().all(), name
    for full_name, sub_name in zip(KEYS.layer_names(), sub.layer_names(), strict=True):
        np.testing.assert_allclose(adata.layers[sub_name][:, picked],
                                   de.layers[full_name][:, picked], rtol=1e-6, atol=1e-8)
        assert np.isnan(adata.layers[sub_name][:, ~picked]).all()
    assert list(adata.uns["sub"]["params"]["genes"]) == list(adata.var_names[picked])


def test_swapping_conditions(de):
    adata = de.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C2, C1, key_added="swap",
                                              fdr=False, **FAST)
    back = DEKeys("swap", C2, C1)
    np.testing.assert_allclose(adata.var[back.mean_lfc], -adata.var[KEYS.mean_lfc], atol=1e-8)
    np.testing.assert_allclose(adata.var[back.mahalanobis], adata.var[KEYS.mahalanobis], rtol=1e-8)
    np.testing.assert_allclose(adata.layers[back.fold_change], -adata.layers[KEYS.fold_change],
                               atol=1e-6)
    for c in (C1, C2):
        np.testing.assert_allclose(adata.layers[back.smoothed(c)], adata.layers[KEYS.smoothed(c)],
                                   atol=1e-6)
        np.testing.assert_allclose(adata.layers[back.std(c)], adata.layers[KEYS.std(c)], atol=1e-6)


def test_replicates_and_no_fdr(de):
    adata = de.copy()
    kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, sample_col="sample", key_added="reps", n_permutations=2,
        store_layers=False, **FAST,
    )
    reps = DEKeys("reps", C1, C2)
    for field in FLOAT_VAR:
        assert np.isfinite(adata.var[_var(reps, field)]).all(), field
    assert not any(name in adata.layers for name in reps.layer_names())
    assert list(adata.uns["reps"]["fields"]["layers"]) == []
    # Without FDR only the deterministic per-gene fields are written.
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, fdr=False,
                                              key_added="reps", **FAST)
    assert reps.mean_lfc in adata.var and reps.pvalue not in adata.var
    assert reps.is_de not in adata.var
    assert sorted(adata.uns["reps"]["fields"]["var"]) == sorted([reps.mean_lfc, reps.mahalanobis])


def test_null_genes_set_the_p_value_resolution(de):
    # The smallest possible p-value is 1 / (N + 1) for N pooled null distances:
    # all genes by default, n_null_genes per permutation when given.
    adata = de.copy()
    n_genes = adata.n_vars
    for n_null, key in ((None, "all"), (3, "few")):
        kompot.tl.compute_differential_expression(
            adata, "condition", C1, C2, key_added=key, n_permutations=2, n_null_genes=n_null,
            store_layers=False, **FAST,
        )
        pvalue = adata.var[DEKeys(key, C1, C2).pvalue]
        n_pooled = 2 * (n_genes if n_null is None else n_null)
        assert pvalue.min() >= 1 / (n_pooled + 1) - 1e-12
        # p-values are multiples of 1 / (N + 1).
        np.testing.assert_allclose(pvalue * (n_pooled + 1), np.round(pvalue * (n_pooled + 1)),
                                   atol=1e-9)


def test_copy_and_log_line(small, caplog, info_verbosity):
    adata = small.copy()
    before = small.copy()
    with caplog.at_level(logging.INFO, logger="kompot"):
        out = kompot.tl.compute_differential_expression(
            adata, "condition", C1, C2, copy=True, fdr=False, **FAST
        )
    assert_adata_equal(adata, before)
    assert KEYS.fold_change in out.layers
    lines = [r for r in caplog.records if r.name == "kompot" and "wrote" in r.getMessage()]
    assert len(lines) == 1
    assert all(name in lines[0].getMessage() for name in [KEYS.mean_lfc, KEYS.fold_change])


def test_chunked_prediction_matches_one_pass(de, monkeypatch):
    """Cells are predicted in chunks; the chunk size changes nothing."""
    from kompot.tl import _differential_expression as module

    adata = de.copy()
    monkeypatch.setattr(module, "_PREDICT_CHUNK", 97)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, fdr=False,
                                              key_added="chunked", **FAST)
    chunked = DEKeys("chunked", C1, C2)
    np.testing.assert_allclose(adata.var[chunked.mean_lfc], de.var[KEYS.mean_lfc], rtol=1e-10)
    np.testing.assert_array_equal(adata.layers[chunked.fold_change], de.layers[KEYS.fold_change])
    np.testing.assert_array_equal(adata.layers[chunked.std(C1)], de.layers[KEYS.std(C1)])


def test_fewer_cells_than_landmarks_still_finds_planted_genes():
    # With the default 500 landmarks and 400 cells every cell is a landmark;
    # the null's groups of similar states must still hold both conditions,
    # or the permutations leave the labels unchanged and nothing is called.
    adata = kompot.datasets.toy(n_cells=400, n_genes=40, seed=1, replicate_effects=False,
                                de_strength=2.5)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, store_layers=False,
                                              progress=False)
    called = adata.var[KEYS.is_de].to_numpy()
    planted = adata.var["is_de"].to_numpy()
    print(f"{called.sum()} calls, {(called & planted).sum()} of {planted.sum()} planted")
    assert (called & planted).sum() >= planted.sum() // 2
    assert (called & ~planted).sum() <= 2
