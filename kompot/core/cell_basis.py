"""The whitened kernel of fixed cells, computed once for many refits of the same cells.

A landmark GP fit (:func:`~kompot.core.function_gp.fit_function_parts`)
needs from each cell, besides its expression, only the whitened kernel
column ``a_i = Lp^{-1} k(U, x_i)``, which depends on the cell, the landmarks
and the kernel alone. Refits of the same cells under other labels (the
permutation null) can therefore share it: :class:`CellBasis` computes it
once per block of cells and keeps the blocks within a byte budget (blocks
beyond it are recomputed when used). Sums over a group of cells are
products with the kept blocks, taken column by column (:func:`columns`).
"""

from __future__ import annotations

import threading

import numpy as np

from . import backend
from .function_gp import _whitened
from .kernel import _is_plain_matern52


class CellBasis:
    """``A = Lp^{-1} k(U, X)`` of fixed cells, block by block, kept while within ``max_bytes``.

    Parameters
    ----------
    X
        States of all the cells (n, d).
    landmarks, cov_func, Lp
        The landmarks, the kernel and ``chol(K_uu + jitter I)``.
    blocks
        Row indices into ``X`` of each block of cells.
    max_bytes
        Bytes the kept blocks may take; later blocks are recomputed on each use.
    """

    def __init__(self, X, landmarks, cov_func, Lp, blocks: list[np.ndarray], max_bytes: int):
        self.X, self.landmarks, self.cov_func, self.Lp = X, landmarks, cov_func, Lp
        self.blocks = blocks
        # With JAX the blocks stay on its device (as the fits' blocks do).
        self._device_cache = {} if backend.uses_jax() and _is_plain_matern52(cov_func) else None
        self._kept: dict[int, object] = {}
        self._room = int(max_bytes)
        self._lock = threading.Lock()  # the null's permutations may run in threads

    @property
    def on_device(self) -> bool:
        """Whether the blocks are kept on the JAX device."""
        return self._device_cache is not None

    @property
    def kept_bytes(self) -> int:
        """Bytes of the blocks kept."""
        return sum(A.nbytes for A in self._kept.values())

    def whitened(self, b: int):
        """Block ``b``'s ``A`` (m, cells of the block): a numpy array or a JAX :class:`KernelBlock`."""
        A = self._kept.get(b)
        if A is None:
            A = _whitened(self.X[self.blocks[b]], self.Lp, self.cov_func, self.landmarks,
                          self._device_cache)
            with self._lock:
                if b not in self._kept and A.nbytes <= self._room:
                    self._kept[b] = A
                    self._room -= A.nbytes
        return A


def columns(A, idx: np.ndarray):
    """The columns ``idx`` (cells) of a whitened block, numpy or on the JAX device."""
    if isinstance(A, backend.KernelBlock):
        return A.columns(idx)
    return A[:, idx]
