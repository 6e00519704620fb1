"""DE and smoothed expression with their layers on disk: zarr-backed dask layers, as in memory."""

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from tl_testing import C1, C2, FAST, assert_adata_equal, assert_array_equal

import kompot
import kompot.tl
from kompot._keys import DEKeys

KEYS = DEKeys("kompot_de", C1, C2)
RUN = dict(sample_col="sample", n_permutations=2, n_null_genes=20, **FAST)


@pytest.fixture
def on_disk(tmp_path):
    """Layers forced to disk under ``tmp_path`` for one test; the settings restored after."""
    s = kompot.settings
    before = (s.memory_budget, s.layers_on_disk, s.layers_dir)
    s.layers_on_disk, s.layers_dir = True, tmp_path
    yield tmp_path
    s.memory_budget, s.layers_on_disk, s.layers_dir = before


def _layer_names():
    return [KEYS.smoothed(C1), KEYS.smoothed(C2), KEYS.std(C1), KEYS.std(C2), KEYS.fold_change]


@pytest.mark.parametrize("genes", [None, slice(3, 30, 2)], ids=["all genes", "a subset"])
def test_layers_on_disk_equal_layers_in_memory(small, on_disk, genes):
    genes = None if genes is None else list(small.var_names[genes])
    kompot.settings.layers_on_disk = False
    in_memory = small.copy()
    kompot.tl.compute_differential_expression(in_memory, "condition", C1, C2, genes=genes, **RUN)
    kompot.settings.layers_on_disk = True
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, genes=genes, **RUN)
    for name in _layer_names():
        assert isinstance(adata.layers[name], da.Array), name
        assert adata.layers[name].dtype == np.float32
    # Everything else (obs, var, uns, X, obsm, the other layers) as in memory; layers equal.
    assert_adata_equal(adata, in_memory)
    assert len(list(on_disk.iterdir())) == 1


def test_nothing_else_of_the_anndata_changes(small, on_disk):
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **RUN)
    assert set(adata.layers) == set(small.layers) | set(_layer_names())
    for name in small.layers:
        assert_array_equal(adata.layers[name], small.layers[name])
    assert_array_equal(adata.X, small.X)
    pd.testing.assert_frame_equal(adata.obs, small.obs)
    pd.testing.assert_frame_equal(adata.var[small.var.columns], small.var)
    assert set(adata.uns) == set(small.uns) | {"kompot_de"}


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_layers_on_disk_round_trip(small, on_disk, tmp_path_factory, fmt):
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2,
                                              genes=list(small.var_names[:12]), **RUN)
    path = tmp_path_factory.mktemp("out") / f"result.{fmt}"
    if fmt == "h5ad":
        adata.write_h5ad(path)
        back = ad.read_h5ad(path)
    else:
        adata.write_zarr(path)
        back = ad.read_zarr(path)
    for name in _layer_names():
        assert isinstance(back.layers[name], np.ndarray)
        assert back.layers[name].dtype == np.float32
        np.testing.assert_array_equal(back.layers[name], adata.layers[name].compute())
        assert np.isnan(back.layers[name][:, 12:]).all()  # genes not analysed
    pd.testing.assert_frame_equal(back.var, adata.var, check_index_type=False)


def test_plots_read_layers_on_disk(small, on_disk):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kompot.pl._heatmap import group_means

    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **RUN)
    in_memory = adata.copy()
    for name in _layer_names():
        in_memory.layers[name] = adata.layers[name].compute()
    genes = list(small.var_names[:6])
    groups = adata.obs["cell_type"].astype("category")
    pd.testing.assert_frame_equal(group_means(adata, KEYS.fold_change, genes, groups),
                                  group_means(in_memory, KEYS.fold_change, genes, groups))
    ax = kompot.pl.heatmap(adata, groupby="cell_type", genes=genes, show=False)
    assert ax is not None
    kompot.pl.expression(adata, genes[0], show=False)
    plt.close("all")


@pytest.mark.parametrize("genes", [None, slice(3, 30, 2)], ids=["all genes", "a subset"])
def test_smoothed_expression_layers_on_disk_equal_in_memory(small, on_disk, genes):
    genes = None if genes is None else list(small.var_names[genes])
    run = dict(genes=genes, sample_col="sample", **FAST)
    kompot.settings.layers_on_disk = False
    in_memory = small.copy()
    kompot.tl.compute_smoothed_expression(in_memory, "condition", C1, **run)
    kompot.settings.layers_on_disk = True
    adata = small.copy()
    kompot.tl.compute_smoothed_expression(adata, "condition", C1, **run)
    for name in ("kompot_smooth_smoothed", "kompot_smooth_std"):
        assert isinstance(adata.layers[name], da.Array), name
        assert adata.layers[name].dtype == np.float32
    assert_adata_equal(adata, in_memory)
    assert len(list(on_disk.iterdir())) == 1


def test_smoothed_expression_in_chunks_equals_one_chunk(small, monkeypatch):
    """Predicting a few cells at a time gives the layers of one prediction of all cells."""
    from kompot.models import expression_analysis

    run = dict(sample_col="sample", **FAST)
    whole = small.copy()
    kompot.tl.compute_smoothed_expression(whole, "condition", C1, **run)
    monkeypatch.setattr(expression_analysis, "predict_chunk_size", lambda *a, **k: 37)
    chunked = small.copy()
    kompot.tl.compute_smoothed_expression(chunked, "condition", C1, **run)
    for name in ("kompot_smooth_smoothed", "kompot_smooth_std"):
        np.testing.assert_allclose(chunked.layers[name], whole.layers[name], rtol=1e-6)
