"""Expression read one block of cells at a time, from wherever it is stored.

:class:`CellRows` stands for a cells x genes matrix without copying it: an
in-memory array (dense numpy, scipy sparse), a matrix on disk (an h5py
dataset or anndata's backed sparse dataset of ``read_h5ad(backed="r")``) or a
dask array (``anndata.experimental.read_elem_lazy``). It holds only the
indices of its rows and genes; taking rows, genes or both conditions' rows
together gives another view of the same storage, and only
:meth:`CellRows.block` reads values, as a dense float64 block of the rows
asked for. The fits, the replicate fits and the permutation null read their
expression through it, so that memory grows with a block of cells times
genes, never with all cells times genes.

The helpers :func:`dense_rows`, :func:`take_rows`, :func:`take_genes` and
:func:`stack_rows` accept plain arrays too, which they treat as before.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy import sparse

# A stored matrix is read as one contiguous span of rows when the span is at
# most this many times the rows wanted (disks and chunked stores read spans
# far faster than scattered rows); otherwise only the rows wanted are read.
SPAN_FACTOR = 4
# Rows read at once by the scans over all rows (finiteness, projection).
SCAN_ROWS = 4096


class CellRows:
    """Some rows (cells) and columns (genes) of an expression matrix, read block by block.

    Parameters
    ----------
    matrix
        Cells x genes: a dense array, a scipy sparse matrix or array, an
        h5py dataset, anndata's backed sparse dataset or a dask array.
        Sparse matrices in memory other than CSR, and backed CSC files, are
        converted to CSR once (of the selected genes only, sparse), so that
        rows can be taken quickly.
    rows
        Rows of ``matrix`` in this view, in order (boolean mask or indices);
        ``None`` takes all.
    genes
        Columns of ``matrix`` in this view (boolean mask or indices); ``None`` takes all.
    """

    ndim = 2

    def __init__(self, matrix, rows=None, genes=None):
        n_rows, n_genes = matrix.shape
        genes = None if genes is None else _indices(genes, n_genes)
        if getattr(matrix, "format", None) == "csc" and not sparse.issparse(matrix):
            # A backed CSC file has no fast rows: its selected genes are read once.
            matrix = matrix[:, slice(None) if genes is None else genes]
            genes = None
        if sparse.issparse(matrix) and matrix.format != "csr":
            # Rows of CSC (or COO) cost a scan of every column; one CSR copy
            # of the selected genes, sparse like the original, avoids that.
            matrix = (matrix if genes is None else matrix[:, genes]).tocsr()
            genes = None
        self._matrix = matrix
        self._genes = genes
        self._rows = np.arange(n_rows) if rows is None else _indices(rows, n_rows)
        self.in_memory = isinstance(matrix, np.ndarray) or sparse.issparse(matrix)

    @property
    def shape(self) -> tuple[int, int]:
        n_genes = self._matrix.shape[1] if self._genes is None else self._genes.size
        return (self._rows.size, n_genes)

    @property
    def dtype(self):
        """The stored values' dtype (blocks are read as float64)."""
        return self._matrix.dtype

    def _view(self, rows=None, genes=None) -> CellRows:
        view = copy.copy(self)
        view._rows = self._rows if rows is None else rows
        view._genes = self._genes if genes is None else genes
        return view

    def take(self, rows) -> CellRows:
        """The view of some of these rows (boolean mask or indices into this view)."""
        return self._view(rows=self._rows[_indices(rows, self._rows.size)])

    def take_genes(self, genes) -> CellRows:
        """The view of some of these genes (boolean mask or indices into this view)."""
        genes = _indices(genes, self.shape[1])
        return self._view(genes=genes if self._genes is None else self._genes[genes])

    def same_storage(self, other) -> bool:
        """Whether ``other`` is a view of the same matrix and genes."""
        return (isinstance(other, CellRows) and other._matrix is self._matrix
                and np.array_equal(_all_if_none(other._genes, other.shape[1]),
                                   _all_if_none(self._genes, self.shape[1])))

    def with_rows_of(self, other: CellRows) -> CellRows:
        """This view's rows followed by ``other``'s (a view of the same storage)."""
        return self._view(rows=np.concatenate([self._rows, other._rows]))

    def storage_order(self, rows=None) -> np.ndarray:
        """Positions (within ``rows``, default all) that visit the rows in storage order."""
        stored = self._rows if rows is None else self._rows[_indices(rows, self._rows.size)]
        return np.argsort(stored, kind="stable")

    def block(self, rows=slice(None)) -> np.ndarray:
        """The rows ``rows`` of this view (slice, mask or indices) as a dense float64 array."""
        return _dense64(self._read(self._rows[rows]))

    def all_finite(self) -> bool:
        """Whether every value is finite; reads :data:`SCAN_ROWS` rows at a time, never densifies sparse ones."""
        for part in self._scan():
            values = part.data if sparse.issparse(part) else part
            if not np.isfinite(np.asarray(values, np.float64)).all():
                return False
        return True

    def project(self, vector: np.ndarray) -> np.ndarray:
        """``Y @ vector`` (float64, one value per row), read block by block."""
        vector = np.asarray(vector, np.float64)
        out = np.empty(self._rows.size)
        order = self.storage_order()
        for start in range(0, order.size, SCAN_ROWS):
            at = order[start:start + SCAN_ROWS]
            out[at] = _dense64(self._read(self._rows[at])) @ vector
        return out

    def _scan(self):
        order = self.storage_order()
        for start in range(0, order.size, SCAN_ROWS):
            yield self._read(self._rows[order[start:start + SCAN_ROWS]])

    def _read(self, rows: np.ndarray):
        """Stored rows ``rows`` of the view's genes, dense or sparse, in the order asked."""
        if self.in_memory:
            part = self._matrix[rows]
            return part if self._genes is None else part[:, self._genes]
        return _read_stored(self._matrix, rows, self._genes)


def _read_stored(matrix, rows: np.ndarray, genes: np.ndarray | None):
    """Rows of a matrix on disk or in a dask array, read in increasing order, then reordered."""
    if rows.size == 0:
        return np.empty((0, matrix.shape[1] if genes is None else genes.size))
    unique, inverse = np.unique(rows, return_inverse=True)
    lo, hi = int(unique[0]), int(unique[-1]) + 1
    if hi - lo <= SPAN_FACTOR * unique.size:
        part, wanted = matrix[lo:hi], unique - lo
    elif getattr(matrix, "format", None) == "csr":
        # anndata's backed CSR reads a boolean mask as runs of rows.
        mask = np.zeros(matrix.shape[0], bool)
        mask[unique] = True
        part, wanted = matrix[mask], None
    else:
        part, wanted = matrix[unique], None
    if hasattr(part, "compute"):  # a dask array: select before computing
        part = part[wanted] if wanted is not None else part
        part = (part if genes is None else part[:, genes]).compute()
    else:
        part = part[wanted] if wanted is not None else part
        part = part if genes is None else part[:, genes]
    return part[inverse.reshape(-1)]


def _dense64(part) -> np.ndarray:
    if sparse.issparse(part):  # float64 before densifying: one dense allocation, not two
        return part.astype(np.float64).toarray()
    return np.asarray(part, dtype=np.float64)


def _indices(selection, n: int) -> np.ndarray:
    """Integer indices from a slice, a boolean mask (of length ``n``) or an index array."""
    if isinstance(selection, slice):
        return np.arange(n)[selection]
    selection = np.asarray(selection)
    if selection.dtype == bool:
        if selection.shape != (n,):
            raise ValueError(f"A boolean mask needs {n} entries, got shape {selection.shape}.")
        return np.flatnonzero(selection)
    return selection.astype(np.int64, copy=False).reshape(-1)


def _all_if_none(genes, n):
    return np.arange(n) if genes is None else genes


# ------------------------------------------------- helpers for arrays and views
def dense_rows(Y, rows) -> np.ndarray:
    """``Y[rows]`` as a dense float64 array, for a :class:`CellRows`, a dense or a sparse ``Y``."""
    if isinstance(Y, CellRows):
        return Y.block(rows)
    return _dense64(Y[rows])


def take_rows(Y, rows):
    """``Y[rows]`` for a boolean mask or an index array: a view of a :class:`CellRows`, else a copy."""
    if isinstance(Y, CellRows):
        return Y.take(rows)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    if not sparse.issparse(Y):
        Y = np.asarray(Y)
    return Y[rows]


def take_genes(Y, genes):
    """``Y[:, genes]``: a view of a :class:`CellRows`, else a copy."""
    return Y.take_genes(genes) if isinstance(Y, CellRows) else Y[:, genes]


def stack_rows(A, B):
    """The rows of ``A`` then those of ``B``: a view when both view the same storage."""
    if isinstance(A, CellRows) and A.same_storage(B):
        return A.with_rows_of(B)
    if isinstance(A, CellRows) or isinstance(B, CellRows):
        A, B = (Y.block(slice(None)) if isinstance(Y, CellRows) else Y for Y in (A, B))
    if sparse.issparse(A) or sparse.issparse(B):
        return sparse.vstack([sparse.csr_matrix(A), sparse.csr_matrix(B)]).tocsr()
    return np.vstack([np.asarray(A), np.asarray(B)])


def project_rows(Y, vector: np.ndarray) -> np.ndarray:
    """``Y @ vector`` as float64 (one value per row), block by block for a :class:`CellRows`."""
    if isinstance(Y, CellRows):
        return Y.project(vector)
    return np.asarray(Y @ vector, np.float64).reshape(-1)
