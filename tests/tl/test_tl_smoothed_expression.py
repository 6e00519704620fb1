"""kompot.tl.compute_smoothed_expression on the toy data."""

import numpy as np
import pytest
from scipy import sparse
from tl_testing import C1, FAST, assert_adata_equal

import kompot.tl
from kompot._keys import SmoothKeys

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


def test_is_the_expression_model_of_that_condition(smooth, small):
    """Fitted on one condition's cells, it is an ExpressionModel of those cells."""
    record = smooth.uns["kompot_smooth"]
    cells = (small.obs["condition"] == C1).to_numpy()
    X = small.obsm["DM_EigenVectors"]
    model = kompot.ExpressionModel(n_landmarks=None)
    model.fit(X[cells], np.asarray(small.X[cells], np.float64), ls=record["ls"],
              landmarks=np.asarray(record["landmarks"]))
    np.testing.assert_allclose(smooth.layers[KEYS.smoothed], model.predict(X, progress=False),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(smooth.layers[KEYS.std], model.std(X, progress=False),
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
