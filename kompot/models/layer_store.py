"""Cells x genes layers out of core: zarr stores written a chunk of cells at a time, read lazily.

At atlas scale the five float32 layers of differential expression outgrow
memory (40 GB at a million cells and 2,000 genes). When they would exceed
``kompot.settings.memory_budget`` (or when asked), each gene block writes
every chunk of predicted cells straight into its own zarr array, one per
layer and block, and the analysis returns dask arrays reading them
(blocks side by side, joined lazily). Memory then holds one chunk of cells
at a time, and anndata writes such layers to ``.h5ad`` or ``.zarr`` chunk by
chunk.

One array per gene block, rather than regions of one array per layer, so
that blocks running at once on different Dask workers never write into the
same zarr chunk, whatever the block sizes: no locks, no alignment of blocks
to chunks. Joining them is free (``dask.array.concatenate``).

dask is imported only here, and only when layers go to disk.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from .._settings import checked_layers_dir, report, settings
from .._warnings import KompotWarning

logger = logging.getLogger("kompot")

# Share of the memory budget one chunk of predicted cells may take.
PREDICT_SHARE = 0.25
# float64 arrays of chunk x genes that predict() holds at once (both means
# and stds, the fold change and its z-scores), plus the float32 copies written.
PREDICT_ARRAYS = 7
# float64 arrays of chunk x landmarks computing a kernel block takes at once.
KERNEL_ARRAYS = 4
# Largest zarr chunk, so that reading a layer back (anndata writing it, a
# plot taking one gene) never loads much more than it needs.
MAX_STORE_CHUNK_BYTES = 64 * 1024**2


def layers_nbytes(n_cells: int, n_genes: int, n_layers: int) -> int:
    """Bytes of ``n_layers`` float32 layers of cells x genes."""
    return 4 * n_cells * n_genes * n_layers


def predict_chunk_size(n_cells: int, n_genes: int, layers: bool, budget: int | None = None,
                       n_landmarks: int = 0) -> int:
    """Cells predicted at once: a quarter of the memory budget, at least one cell.

    With layers ``predict`` holds several float64 arrays of chunk x genes;
    without them one array of chunk x genes and the kernel rows to the
    ``n_landmarks`` landmarks (with their temporaries).
    """
    budget = settings.memory_budget if budget is None else budget
    per_cell = 8 * (max(n_genes, 1) * (PREDICT_ARRAYS if layers else 1)
                    + KERNEL_ARRAYS * n_landmarks)
    return int(max(1, min(max(n_cells, 1), budget * PREDICT_SHARE // per_cell)))


def store_chunk_rows(chunk: int, n_genes: int) -> int:
    """Cells per zarr chunk: at most ``chunk``, and under ``MAX_STORE_CHUNK_BYTES``."""
    return int(max(1, min(chunk, MAX_STORE_CHUNK_BYTES // (4 * max(n_genes, 1)))))


@dataclass(frozen=True)
class LayerStore:
    """A run's directory of layer stores; every gene block writes its own arrays into it."""

    directory: str

    def path(self, name: str, genes: slice) -> str:
        return os.path.join(self.directory, f"{name}.genes{genes.start}-{genes.stop}.zarr")

    def create(self, name: str, genes: slice, n_cells: int, chunk: int):
        """A new float32 zarr array of cells x the block's genes, NaN until written."""
        import zarr

        shape = (n_cells, genes.stop - genes.start)
        chunks = (store_chunk_rows(chunk, shape[1]), max(shape[1], 1))
        path = self.path(name, genes)
        if int(zarr.__version__.split(".")[0]) >= 3:
            # Smoothed floats barely compress; writing them raw is several times faster.
            return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype="float32",
                                     fill_value=np.nan, compressors=None, overwrite=True)
        return zarr.open_array(path, mode="w", shape=shape, chunks=chunks, dtype="float32",
                               fill_value=np.nan, compressor=None)


def read_layers(parts: list[dict[str, str]]) -> dict:
    """The gene blocks' stores of each layer as one lazy dask array (blocks in gene order)."""
    import dask.array as da

    missing = [path for part in parts for path in part.values() if not os.path.exists(path)]
    if missing:
        # Workers on other machines wrote them to a directory this machine does not see.
        raise FileNotFoundError(
            f"The layer stores {missing[0]!r} (and {len(missing) - 1} more) were written where "
            "this process cannot read them. On a cluster set kompot.settings.layers_dir to a "
            "directory on a filesystem the workers and this process share."
        )
    return {name: da.concatenate([da.from_zarr(part[name]) for part in parts], axis=1)
            for name in parts[0]}


def is_lazy(values) -> bool:
    """Whether ``values`` is a dask array (checked without importing dask)."""
    return type(values).__module__.split(".")[0] == "dask"


def layer_store_for(option, n_cells: int, n_genes: int, n_layers: int) -> LayerStore | None:
    """Where a run's layers go: ``None`` (in memory) or a new directory of zarr stores.

    ``option`` is ``run_differential_expression``'s ``layer_store``: ``None``
    follows ``kompot.settings`` (``layers_on_disk``, by default on disk when
    the layers exceed ``memory_budget``; ``layers_dir``), ``False`` keeps them
    in memory, ``True`` writes them under ``settings.layers_dir``, a path
    writes them under that directory. Raises before anything is computed
    when dask is missing or the disk has no room for them.
    """
    nbytes = layers_nbytes(n_cells, n_genes, n_layers)
    directory = settings.layers_dir
    if option is None:
        on_disk = settings.layers_on_disk
        option = nbytes > settings.memory_budget if on_disk is None else on_disk
    if option is False:
        return None
    if option is not True:
        directory = checked_layers_dir(option)
    if importlib.util.find_spec("dask") is None:
        raise ImportError(
            f"The layers ({nbytes / 1e9:.1f} GB) go to disk as dask arrays, but dask is not "
            "installed: pip install 'kompot[dask]'; or keep them in memory "
            "(kompot.settings.layers_on_disk = False), or do not store them (store_layers=False)."
        )
    return LayerStore(_run_directory(directory, nbytes))


def _run_directory(parent: str | None, nbytes: int) -> str:
    """A new directory for one run's stores, under ``parent`` or the system's temporary directory."""
    temporary = parent is None
    parent = tempfile.gettempdir() if temporary else parent
    os.makedirs(parent, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if free < nbytes:
        raise ValueError(
            f"The layers take {nbytes / 1e9:.1f} GB but {parent!r} has {free / 1e9:.1f} GB free. "
            "Set kompot.settings.layers_dir to a directory with room, or do not store them "
            "(store_layers=False)."
        )
    directory = tempfile.mkdtemp(prefix="kompot-layers-", dir=parent)
    if temporary:
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        warnings.warn(
            f"kompot writes the layers ({nbytes / 1e9:.1f} GB) to the temporary directory "
            f"{directory}, removed when Python exits; write the AnnData to keep them, or set "
            "kompot.settings.layers_dir to a directory of your own.",
            KompotWarning, stacklevel=2,
        )
    else:
        report(logger, "kompot writes the layers (%.1f GB) to %s.", nbytes / 1e9, directory)
    return directory
