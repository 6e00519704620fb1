"""Analyses on a Dask cluster give what they give in this process."""

import sys
import warnings

import distributed  # in the test extra: these tests run wherever the suite runs
import numpy as np
import pytest
from model_testing import C1, C2, toy_arrays

import kompot
from kompot.models import (
    abundance_analysis,
    run_differential_abundance,
    run_differential_expression,
)
from kompot.models.gene_blocks import gene_block_size
from kompot.parallel import DaskExecutor

OPTIONS = dict(n_landmarks=30, n_permutations=3, n_null_genes=25, random_state=0)
BLOCK = 8  # genes per block on the cluster: 40 genes make 5 tasks


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def adata():
    return kompot.datasets.toy(n_cells=300, n_genes=40, n_de_genes=8, seed=3)


def _assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, expected in want.items():
        if np.asarray(expected).dtype == bool:
            np.testing.assert_array_equal(got[name], expected, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], expected, rtol=1e-10, atol=1e-12,
                                       err_msg=name)


@pytest.mark.parametrize("replicates", [False, True], ids=["cells", "samples"])
def test_gene_blocks_on_a_cluster_equal_one_block_in_process(client, adata, replicates):
    X, mask1, mask2, Y, samples = toy_arrays(adata)
    kwargs = dict(OPTIONS)
    if replicates:
        kwargs.update(condition1_sample_indices=samples[mask1],
                      condition2_sample_indices=samples[mask2])
    here = run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=False,
                                       **kwargs)
    with distributed.get_task_stream(client) as stream:
        there = run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=client,
                                            gene_block_size=BLOCK, **kwargs)
    tasks = [t for t in stream.data if "fit_gene_block" in t["key"]]
    assert len(tasks) == Y.shape[1] // BLOCK
    assert "pvalue" in there and "condition1_smoothed" in there
    assert here.model is not None and there.model is None
    _assert_same(dict(there.values), dict(here.values))
    np.testing.assert_array_equal(there.fitted["landmarks"], here.fitted["landmarks"])


def test_workers_write_layers_to_disk(client, adata, tmp_path):
    """Blocks on workers write their own zarr stores; read back, the layers are those in memory."""
    X, mask1, mask2, Y, _ = toy_arrays(adata)
    here = run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=False,
                                       layer_store=False, fdr=False, **OPTIONS)
    there = run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=client,
                                        layer_store=tmp_path, gene_block_size=BLOCK, fdr=False,
                                        **OPTIONS)
    (run_dir,) = tmp_path.iterdir()
    assert len(list(run_dir.glob("condition1_std.genes*.zarr"))) == Y.shape[1] // BLOCK
    for name in ("condition1_smoothed", "condition2_std", "fold_change"):
        assert not isinstance(there.values[name], np.ndarray)
        np.testing.assert_allclose(there.values[name].compute(), here.values[name],
                                   rtol=1e-6, atol=1e-7, err_msg=name)


def test_tl_follows_the_setting_and_an_address(client, adata):
    key = f"kompot_de_{C1}_to_{C2}"
    here = kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, sample_col="sample", copy=True, progress=False,
        client=False, **OPTIONS)
    before = kompot.settings.dask_client
    try:
        kompot.settings.dask_client = client
        with distributed.get_task_stream(client) as stream:
            by_setting = kompot.tl.compute_differential_expression(
                adata, "condition", C1, C2, sample_col="sample", copy=True, progress=False,
                **OPTIONS)
        assert any("fit_gene_block" in t["key"] for t in stream.data)
    finally:
        kompot.settings.dask_client = before
    by_address = kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, sample_col="sample", copy=True, progress=False,
        client=client.scheduler.address, **OPTIONS)
    for other in (by_setting, by_address):
        _assert_same({c: other.var[c].to_numpy() for c in here.var if c.startswith(key)},
                     {c: here.var[c].to_numpy() for c in here.var if c.startswith(key)})
        np.testing.assert_array_equal(other.layers[f"{key}_fold_change"],
                                      here.layers[f"{key}_fold_change"])
        assert "client" not in other.uns["kompot_de"]["params"]


@pytest.mark.parametrize("replicates", [False, True], ids=["cells", "samples"])
def test_abundance_ratio_on_cell_blocks_of_a_cluster(client, adata, replicates, monkeypatch):
    X, mask1, mask2, _, samples = toy_arrays(adata)
    mask1 = mask1.copy()
    mask1[:20] = False  # cells of neither condition: predicted, but outside the FDR
    kwargs = dict(n_landmarks=30, random_state=0)
    if replicates:
        kwargs.update(condition1_sample_indices=samples[mask1],
                      condition2_sample_indices=samples[mask2])
    here = run_differential_abundance(X, mask1, mask2, client=False, **kwargs)
    monkeypatch.setattr(abundance_analysis, "CELLS_PER_TASK", 64)
    with distributed.get_task_stream(client) as stream:
        there = run_differential_abundance(X, mask1, mask2, client=client, **kwargs)
    # 280 compared cells in 5 blocks, 20 others in 1
    assert sum("ratio_moments" in t["key"] for t in stream.data) == 6
    assert ("lfc_sample_std" in there) == replicates
    for name in there:
        if there[name].dtype == object:
            np.testing.assert_array_equal(there[name], here[name], err_msg=name)
        else:
            np.testing.assert_allclose(there[name], here[name], rtol=1e-10, atol=1e-12,
                                       err_msg=name)


def test_warnings_on_workers_are_issued_here_once(client):
    # warnings.warn(shared, item): each of the three tasks warns the same
    with pytest.warns(UserWarning, match="from a worker") as caught:
        out = DaskExecutor(client).map(warnings.warn, "from a worker", [UserWarning] * 3)
    assert out == [None] * 3
    assert len([w for w in caught if "from a worker" in str(w.message)]) == 1


@pytest.mark.parametrize("value", [42, object(), ["tcp://x:1"]])
def test_a_bad_client_is_refused_by_name(value, adata):
    with pytest.raises(TypeError, match="distributed.Client or a scheduler address"):
        kompot.settings.dask_client = value
    assert kompot.settings.dask_client is None
    X, mask1, mask2, Y, _ = toy_arrays(adata)
    with pytest.raises(TypeError, match="client must be None"):
        run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=value,
                                    fdr=False, **OPTIONS)


def test_a_client_without_distributed_says_what_to_install(monkeypatch, adata):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import now fails
    X, mask1, mask2, Y, _ = toy_arrays(adata)
    with pytest.raises(ImportError, match=r"kompot\[dask\]"):
        run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2],
                                    client="tcp://127.0.0.1:8786", fdr=False, **OPTIONS)


def test_gene_block_size_follows_the_memory_budget_and_the_slots(monkeypatch):
    per_gene = 1_000_000 * (3 * 8 + 5 * 4)
    half_budget = kompot.settings.memory_budget // 2
    assert gene_block_size(1_000_000, 5000, layers=True) == half_budget // per_gene
    monkeypatch.setattr(kompot.settings, "memory_budget", "16GiB")
    assert gene_block_size(1_000_000, 5000, layers=True) == 8 * 1024**3 // per_gene
    assert gene_block_size(1_000_000, 5000, layers=False) > gene_block_size(
        1_000_000, 5000, layers=True)
    assert gene_block_size(300, 40, layers=True) == 40  # a small run on one slot: one block
    assert gene_block_size(300, 40, layers=True, slots=3) == 14  # 14 + 14 + 12
    assert gene_block_size(10**9, 40, layers=True) == 1


def test_a_cluster_gets_one_block_per_worker_thread_by_default(client, adata):
    X, mask1, mask2, Y, _ = toy_arrays(adata)
    with distributed.get_task_stream(client) as stream:
        run_differential_expression(X, mask1, mask2, Y[mask1], Y[mask2], client=client,
                                    fdr=False, layers=False, **OPTIONS)
    assert sum("fit_gene_block" in t["key"] for t in stream.data) == 2


def test_threads_of_a_task_share_the_cores_with_the_workers_other_tasks():
    """A worker that runs two tasks at once gives each half the cores for its threads."""
    from kompot import parallel

    def threads_here():
        return parallel._dask_worker_threads(), parallel.thread_count()

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        worker_threads, threads = c.submit(threads_here, pure=False).result()
    assert worker_threads == 2
    assert threads == max(1, parallel.available_cores() // 2)
