"""kompot.tl.compute_smoothed_expression on the toy data."""

import numpy as np
import pytest
from scipy import sparse
from tl_testing import C1, FAST, assert_adata_equal

import kompot.tl
from kompot._keys import DEKeys, SmoothKeys

KEYS = SmoothKeys("kompot_smooth")


@pytest.fixture(scope="module")
def smooth(small):
    adata = small.copy()
    kompot.tl.compute_smoothed_expression(adata, groupby="condition", condition=C1, **FAST)
    return adata


def test_fields(smooth):
    for name in KEYS.layer_names():
        layer = smooth.layers[name]
        assert layer.shape == smooth.shape and layer.dtype == np.float32, name
        assert np.isfinite(layer).all(), name
    assert (smooth.layers[KEYS.std] > 0).all()
    record = smooth.uns["kompot_smooth"]
    assert record["condition"] == C1 and record["groupby"] == "condition"
    assert sorted(record["fields"]["layers"]) == sorted(KEYS.layer_names())


def test_matches_the_condition_model_of_de(smooth):
    """Fitted on one condition's cells, it is that condition's half of a DE run."""
    adata = smooth.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, "treated", fdr=False, **FAST)
    # DE picks landmarks from both conditions; pass the same ones to compare the models.
    landmarks = adata.uns["kompot_de"]["landmarks"]
    kompot.tl.compute_smoothed_expression(
        adata, groupby="condition", condition=C1, landmarks=landmarks,
        ls=adata.uns["kompot_de"]["ls"], key_added="same", **FAST,
    )
    de = DEKeys("kompot_de", C1, "treated")
    np.testing.assert_allclose(adata.layers["same_smoothed"], adata.layers[de.smoothed(C1)],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adata.layers["same_std"], adata.layers[de.std(C1)],
                               rtol=1e-5, atol=1e-6)


def test_all_cells_sparse_and_gene_subset(small):
    adata = small.copy()
    kompot.tl.compute_smoothed_expression(adata, key_added="dense", **FAST)
    adata.X = sparse.csc_matrix(adata.X)
    genes = list(adata.var_names[:5])
    kompot.tl.compute_smoothed_expression(adata, genes=genes, key_added="sub", **FAST)
    np.testing.assert_allclose(adata.layers["sub_smoothed"][:, :5],
                               adata.layers["dense_smoothed"][:, :5], rtol=1e-6)
    assert np.isnan(adata.layers["sub_smoothed"][:, 5:]).all()
    assert adata.uns["dense"]["condition"] == "None"


def test_copy(small):
    before = small.copy()
    adata = small.copy()
    out = kompot.tl.compute_smoothed_expression(adata, copy=True, **FAST)
    assert_adata_equal(adata, before)
    assert KEYS.smoothed in out.layers
