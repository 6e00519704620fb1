"""DE reads expression where it is stored, a block of cells at a time.

Every storage (dense, CSR, CSC, a backed h5ad, a dask array) gives the dense
run's results, and a sparse run's memory stays far below one dense copy.
"""

import tracemalloc

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from threadpoolctl import threadpool_limits
from tl_testing import C1, C2

import kompot.tl
from kompot._keys import DEKeys
from kompot.tl import _differential_expression as tl_de

KEYS = DEKeys("kompot_de", C1, C2)
FIELDS = ("mean_lfc", "mahalanobis", "pvalue", "local_fdr", "tail_fdr")
RUN = dict(sample_col="sample", store_layers=False, n_landmarks=60, n_permutations=4,
           progress=False)


@pytest.fixture(scope="module")
def reference(small):
    """The dense run, and a copy of the data whose X is CSR (written to h5ad by the tests)."""
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **RUN)
    stored = small.copy()
    stored.X = sparse.csr_matrix(stored.X)
    return adata.var, stored


def _same(var, expected):
    for field in FIELDS:
        np.testing.assert_allclose(var[getattr(KEYS, field)], expected[getattr(KEYS, field)],
                                   rtol=1e-10, err_msg=field)
    np.testing.assert_array_equal(var[KEYS.is_de], expected[KEYS.is_de])


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense_float64"])
def test_in_memory_storages_equal_the_dense_run(reference, fmt):
    expected, stored = reference
    adata = stored.copy()
    if fmt == "csc":
        adata.X = adata.X.tocsc()
    elif fmt == "dense_float64":
        adata.X = adata.X.toarray().astype(np.float64)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **RUN)
    _same(adata.var, expected)


@pytest.mark.parametrize("x_format", ["csr", "dense"])
def test_backed_h5ad_equals_the_dense_run(reference, tmp_path, x_format):
    expected, stored = reference
    adata = stored.copy()
    if x_format == "dense":
        adata.X = adata.X.toarray()
    adata.write_h5ad(tmp_path / "backed.h5ad")
    backed = ad.read_h5ad(tmp_path / "backed.h5ad", backed="r")
    try:
        kompot.tl.compute_differential_expression(backed, "condition", C1, C2, **RUN)
        _same(backed.var, expected)
    finally:
        backed.file.close()


def test_dask_array_equals_the_dense_run(reference, tmp_path):
    pytest.importorskip("dask.array")
    from anndata.experimental import read_elem_lazy

    expected, stored = reference
    stored.write_h5ad(tmp_path / "lazy.h5ad")
    adata = stored.copy()
    with h5py.File(tmp_path / "lazy.h5ad", "r") as f:
        adata.X = read_elem_lazy(f["X"], chunks=(100, adata.n_vars))  # CSR chunks on disk
        kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **RUN)
    _same(adata.var, expected)


def _tall_sparse_data(n_cells=60_000, n_genes=300):
    """Many cells at 5 % density; a dense float64 copy would take 144 MB."""
    rng = np.random.default_rng(0)
    X = sparse.random(n_cells, n_genes, density=0.05, format="csr", dtype=np.float32,
                      random_state=rng, data_rvs=lambda k: rng.uniform(0.1, 3.0, k))
    adata = ad.AnnData(X)
    adata.obsm["X_state"] = rng.normal(size=(n_cells, 3))
    condition = np.where(np.arange(n_cells) % 2 == 0, C1, C2)
    adata.obs["condition"] = pd.Categorical(condition)
    adata.obs["sample"] = pd.Categorical([f"{c}_{i % 3}" for i, c in enumerate(condition)])
    return adata


def _de_run(adata):
    kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, obsm_key="X_state", sample_col="sample",
        store_layers=False, n_landmarks=10, n_permutations=2, n_null_genes=50, progress=False,
    )


def test_sparse_run_stays_far_below_one_dense_copy(monkeypatch):
    adata = _tall_sparse_data()
    dense_copy = adata.n_obs * adata.n_vars * 8
    monkeypatch.setattr(tl_de, "_PREDICT_CHUNK", 500)
    _de_run(_tall_sparse_data(600))  # imports what the run needs before tracing
    tracemalloc.start()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # fast also on a busy machine
            _de_run(adata)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak traced memory {peak / 1e6:.1f} MB; one dense float64 copy {dense_copy / 1e6:.0f} MB")
    assert np.isfinite(adata.var[KEYS.mahalanobis]).all()
    # The dense copies this replaces (both conditions in float64, and the
    # null's stacked copy) took more than one dense copy on their own.
    assert peak < 0.3 * dense_copy
