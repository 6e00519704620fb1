"""Per-cell prediction of a gene block: the mean fold change without layers, layers on disk."""

import shutil
import tempfile

import numpy as np
import pytest
from model_testing import toy_arrays

import kompot
from kompot import DifferentialExpression
from kompot.models import run_differential_expression
from kompot.models.gene_blocks import LAYERS, mean_fold_change, predict_in_chunks
from kompot.models.layer_store import predict_chunk_size


@pytest.fixture(scope="module")
def data():
    return toy_arrays(kompot.datasets.toy(n_cells=400, n_genes=30, n_de_genes=6, seed=5))


def _fitted(data, replicates: bool) -> DifferentialExpression:
    X, mask1, mask2, Y, samples = data
    kwargs = {}
    if replicates:
        kwargs = dict(condition1_sample_indices=samples[mask1],
                      condition2_sample_indices=samples[mask2])
    return DifferentialExpression(n_landmarks=40, random_state=0).fit(
        X[mask1], Y[mask1], X[mask2], Y[mask2], **kwargs)


@pytest.mark.parametrize("replicates", [False, True], ids=["cells", "samples"])
def test_mean_fold_change_without_layers_equals_the_full_prediction(data, replicates):
    X, mask1, mask2, _, _ = data
    model = _fitted(data, replicates)
    in_pair = mask1 | mask2
    in_pair[::7] = False  # rows of neither condition are predicted but not averaged
    # Independent reference: the fold change of predict() at every cell, averaged.
    want = model.predict(X, progress=False)["fold_change"][in_pair].mean(axis=0)
    got, layers = predict_in_chunks(model, X, in_pair, False, False, 37)
    assert layers == {}
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with_layers, _ = predict_in_chunks(model, X, in_pair, True, False, 37)
    np.testing.assert_allclose(got, with_layers, rtol=1e-12, atol=1e-12)


def test_mean_fold_change_of_given_predictors(data):
    """Models built on given mean predictors (no kompot fit) are evaluated as they are."""
    X, mask1, mask2, _, _ = data
    fitted = _fitted(data, False)
    given = DifferentialExpression(function_predictor1=fitted.model1_.predict,
                                   function_predictor2=fitted.model2_.predict,
                                   use_empirical_variance=False)
    want = (fitted.model2_.predict(X, progress=False)
            - fitted.model1_.predict(X, progress=False)).mean(axis=0)
    np.testing.assert_allclose(mean_fold_change(given, X, 50), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ layers on disk
@pytest.fixture
def settings_restored():
    s = kompot.settings
    before = (s.memory_budget, s.layers_on_disk, s.layers_dir)
    yield s
    s.memory_budget, s.layers_on_disk, s.layers_dir = before


def _run(data, **kwargs):
    X, mask1, mask2, Y, samples = data
    return run_differential_expression(
        X, mask1, mask2, Y[mask1], Y[mask2], condition1_sample_indices=samples[mask1],
        condition2_sample_indices=samples[mask2], n_landmarks=40, n_permutations=2,
        n_null_genes=10, predict_chunk=64, client=False, **kwargs)


def _assert_same_layers(got, want):
    import dask.array as da

    for name in LAYERS:
        assert isinstance(got.values[name], da.Array), name
        assert got.values[name].dtype == np.float32
        # The same float64 predictions rounded to float32 the same way.
        np.testing.assert_array_equal(got.values[name].compute(), want.values[name], err_msg=name)
    for name in ("mean_lfc", "mahalanobis", "pvalue", "tail_fdr"):
        np.testing.assert_allclose(got.values[name], want.values[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block", [None, 7], ids=["one block", "blocks of 7 genes"])
def test_layers_on_disk_equal_layers_in_memory(data, tmp_path, block):
    in_memory = _run(data, layer_store=False)
    on_disk = _run(data, layer_store=tmp_path, gene_block_size=block)
    assert isinstance(in_memory.values["fold_change"], np.ndarray)
    _assert_same_layers(on_disk, in_memory)
    (run_dir,) = tmp_path.iterdir()  # one new directory per run
    n_blocks = 1 if block is None else -(-data[3].shape[1] // block)
    assert len(list(run_dir.glob("fold_change.genes*.zarr"))) == n_blocks
    # A fold change read back from disk is the difference of the smoothed layers.
    fc = on_disk.values["fold_change"][:, :5].compute()
    diff = (on_disk.values["condition2_smoothed"] - on_disk.values["condition1_smoothed"])
    np.testing.assert_allclose(fc, diff[:, :5].compute(), atol=1e-5)


def test_settings_choose_where_layers_go(data, tmp_path, settings_restored, monkeypatch):
    X, _, _, Y, _ = data
    layers_bytes = 4 * X.shape[0] * Y.shape[1] * len(LAYERS)
    settings_restored.memory_budget = layers_bytes  # they fit: in memory
    assert isinstance(_run(data).values["condition1_std"], np.ndarray)
    settings_restored.memory_budget = layers_bytes - 1  # over the budget: to disk
    settings_restored.layers_dir = tmp_path / "mine"
    assert not isinstance(_run(data).values["condition1_std"], np.ndarray)
    assert len(list((tmp_path / "mine").iterdir())) == 1
    settings_restored.layers_on_disk = False  # forced into memory, whatever the budget
    assert isinstance(_run(data).values["condition1_std"], np.ndarray)
    # No directory set: a temporary one, named in a warning.
    settings_restored.layers_on_disk, settings_restored.layers_dir = True, None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.warns(kompot.KompotWarning, match="temporary directory .*kompot-layers-"):
        result = _run(data)
    assert result.values["fold_change"].compute().shape == (X.shape[0], Y.shape[1])
    assert len(list((tmp_path / "tmp").glob("kompot-layers-*"))) == 1


def test_layers_on_disk_fail_early_without_room_or_dask(data, tmp_path, monkeypatch):
    from kompot.models import layer_store

    monkeypatch.setattr(layer_store.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**6, 10**6, 100))
    with pytest.raises(ValueError, match="layers_dir to a directory with room"):
        _run(data, layer_store=tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr(layer_store.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"kompot\[dask\]"):
        _run(data, layer_store=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_prediction_chunks_follow_the_budget():
    assert predict_chunk_size(10**6, 2000, True, budget=4 * 1024**3) == \
        4 * 1024**3 // 4 // (8 * 2000 * 7)
    assert predict_chunk_size(10**6, 2000, False, budget=4 * 1024**3) > \
        predict_chunk_size(10**6, 2000, True, budget=4 * 1024**3)
    assert predict_chunk_size(500, 2000, True, budget=4 * 1024**3) == 500
    assert predict_chunk_size(10**6, 10**6, True, budget=2**20) == 1
    # Without layers the kernel rows to the landmarks bound the chunk too.
    assert predict_chunk_size(10**6, 100, False, budget=2**30, n_landmarks=5000) == \
        2**30 // 4 // (8 * (100 + 4 * 5000))


def test_stores_this_process_cannot_see_raise_naming_the_fix(tmp_path):
    from kompot.models.layer_store import read_layers

    with pytest.raises(FileNotFoundError, match="layers_dir to a directory on a filesystem"):
        read_layers([{"fold_change": str(tmp_path / "elsewhere.zarr")}])
