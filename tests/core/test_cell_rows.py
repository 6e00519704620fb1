"""CellRows: blocks of any stored expression matrix equal the dense numpy slices."""

import anndata as ad
import h5py
import numpy as np
import pytest
from scipy import sparse

from kompot.core import cell_rows
from kompot.core.cell_rows import CellRows, dense_rows, project_rows, stack_rows, take_rows

N_CELLS, N_GENES = 300, 12


@pytest.fixture(scope="module")
def dense():
    rng = np.random.default_rng(0)
    values = rng.gamma(1.0, 1.0, (N_CELLS, N_GENES)) * (rng.random((N_CELLS, N_GENES)) < 0.3)
    return values.astype(np.float32)


@pytest.fixture(scope="module")
def h5_path(tmp_path_factory, dense):
    """One file with the matrix stored as CSR, CSC and dense."""
    path = tmp_path_factory.mktemp("cell_rows") / "x.h5ad"
    adata = ad.AnnData(sparse.csr_matrix(dense))
    adata.layers["csc"] = sparse.csc_matrix(dense)
    adata.layers["dense"] = dense
    adata.write_h5ad(path)
    return path


STORAGES = ["dense", "csr", "csc", "csr_array", "backed_csr", "backed_csc", "backed_dense",
            "dask_dense", "dask_sparse"]


def _stored(kind, dense, h5_path, stack):
    if kind == "dense":
        return dense
    if kind in ("csr", "csc"):
        return sparse.csr_matrix(dense) if kind == "csr" else sparse.csc_matrix(dense)
    if kind == "csr_array":
        return sparse.csr_array(dense)
    if kind == "backed_csr":
        return stack.enter_context(_backed(h5_path)).X
    if kind == "backed_csc":
        try:
            from anndata.io import sparse_dataset
        except ImportError:  # anndata < 0.11
            from anndata.experimental import sparse_dataset
        return sparse_dataset(stack.enter_context(h5py.File(h5_path, "r"))["layers/csc"])
    if kind == "backed_dense":
        return stack.enter_context(h5py.File(h5_path, "r"))["layers/dense"]
    da = pytest.importorskip("dask.array")
    if kind == "dask_dense":
        return da.from_array(dense, chunks=(40, N_GENES))
    from anndata.experimental import read_elem_lazy

    return read_elem_lazy(stack.enter_context(h5py.File(h5_path, "r"))["X"], chunks=(40, N_GENES))


class _backed:
    def __init__(self, path):
        self.adata = ad.read_h5ad(path, backed="r")

    def __enter__(self):
        return self.adata

    def __exit__(self, *exc):
        self.adata.file.close()


@pytest.fixture(params=STORAGES)
def stored(request, dense, h5_path):
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield _stored(request.param, dense, h5_path, stack)


def test_blocks_equal_dense_slices(stored, dense):
    genes = np.array([0, 3, 4, 9, 11])
    cells = CellRows(stored, genes=genes)
    assert cells.shape == (N_CELLS, genes.size) and cells.ndim == 2
    rng = np.random.default_rng(1)
    contiguous = np.arange(100, 140)
    scattered = rng.choice(N_CELLS, 30, replace=False)  # spans far more than 4x its rows
    repeated = np.array([5, 5, 2, 290])
    for rows in (contiguous, scattered, repeated, slice(10, 60), np.array([], int)):
        block = cells.block(rows)
        assert block.dtype == np.float64
        np.testing.assert_array_equal(block, dense[rows][:, genes].astype(np.float64))


def test_views_compose_without_reading(stored, dense):
    mask = np.arange(N_CELLS) % 3 == 1
    view = CellRows(stored).take(mask).take_genes([1, 2, 7]).take(np.array([4, 0, 50]))
    expected = dense[mask][:, [1, 2, 7]][[4, 0, 50]]
    np.testing.assert_array_equal(view.block(slice(None)), expected)
    assert view.shape == expected.shape


def test_scans_and_projection(stored, dense):
    cells = CellRows(stored).take(np.arange(N_CELLS)[::-1])
    assert cells.all_finite()
    vector = np.linspace(-1, 1, N_GENES)
    np.testing.assert_allclose(cells.project(vector), dense[::-1].astype(np.float64) @ vector,
                               rtol=1e-12)


def test_scans_cover_every_block(dense, monkeypatch):
    monkeypatch.setattr(cell_rows, "SCAN_ROWS", 7)
    bad = dense.copy()
    bad[N_CELLS - 1, 3] = np.nan
    assert not CellRows(sparse.csr_matrix(bad)).all_finite()
    assert not CellRows(bad).all_finite()
    assert CellRows(bad).take(np.arange(N_CELLS - 1)).all_finite()
    assert CellRows(bad, genes=[0, 1]).all_finite()


def test_stacked_views_share_storage(dense):
    csc = sparse.csc_matrix(dense)
    cells = CellRows(csc, genes=[2, 5])
    assert cells._matrix.format == "csr"  # CSC converted once, selected genes only
    first, second = cells.take([3, 1]), cells.take([7])
    both = stack_rows(first, second)
    assert isinstance(both, CellRows) and both._matrix is cells._matrix
    np.testing.assert_array_equal(both.block(slice(None)), dense[[3, 1, 7]][:, [2, 5]])
    other = stack_rows(first, CellRows(dense, genes=[2, 5]).take([7]))  # other storage: copied
    np.testing.assert_array_equal(other, dense[[3, 1, 7]][:, [2, 5]])


def test_plain_arrays_keep_their_behaviour(dense):
    csr = sparse.csr_matrix(dense)
    rows = np.array([4, 2, 9])
    np.testing.assert_array_equal(dense_rows(csr, rows), dense[rows].astype(np.float64))
    assert sparse.issparse(take_rows(csr, rows))
    np.testing.assert_array_equal(take_rows(dense, np.isin(np.arange(N_CELLS), rows)),
                                  dense[np.sort(rows)])
    np.testing.assert_allclose(project_rows(csr, np.ones(N_GENES)), dense.sum(axis=1),
                               rtol=1e-6)
