"""Plots read the run named by ``key`` (never "the latest"), also after an h5ad round trip."""

import anndata as ad
import numpy as np
import pytest
from matplotlib.text import Text

import kompot
import kompot.pl as kpl
import kompot.tl
from kompot._keys import DAKeys, DEKeys

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")

FAST = {"n_landmarks": 100, "progress": False}


@pytest.fixture(scope="module")
def two_runs(result):
    """The session result plus a swapped DA run and a DE run on some genes without FDR."""
    adata = result.copy()
    adata.obs["condition"] = adata.obs["condition"].cat.rename_categories({"treated": "drug A"})
    kompot.tl.compute_differential_abundance(
        adata, "condition", "drug A", "control", key_added="swapped", **FAST
    )
    kompot.tl.compute_differential_expression(
        adata, "condition", "control", "drug A", key_added="partial", fdr=False,
        genes=adata.var_names[:30], **FAST,
    )
    return adata


def test_key_selects_the_run(two_runs, da_keys, sorted_rows):
    swapped = DAKeys("swapped", "drug A", "control")
    ax = kpl.volcano_da(two_runs, key="swapped")
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    expected = np.column_stack([two_runs.obs[swapped.lfc],
                                -np.log10(two_runs.obs[swapped.lfc_fdr])])
    np.testing.assert_array_equal(sorted_rows(drawn), sorted_rows(expected))
    assert "control vs drug A" in ax.get_title()
    # The default key still reads the first run, written before the swapped one.
    ax = kpl.embedding(two_runs, "X_umap", color="lfc")
    stored = two_runs.obs[da_keys.lfc].to_numpy()
    np.testing.assert_array_equal(np.sort(ax.collections[0].get_array()), np.sort(stored))
    ax = kpl.embedding(two_runs, "X_umap", color="lfc", key="swapped")
    np.testing.assert_allclose(np.sort(ax.collections[0].get_array()), np.sort(-stored), atol=1e-8)


def test_run_without_fdr_and_with_some_genes(two_runs):
    keys = DEKeys("partial", "control", "drug A")
    ax = kpl.volcano_de(two_runs, key="partial", n_top_labels=5)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 30
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["genes (no FDR computed) (30)"]
    assert {t.get_text() for t in ax.texts} <= set(two_runs.var_names[:30])
    with pytest.raises(KeyError, match="fdr=True"):
        kpl.volcano_de(two_runs, key="partial", score="local_fdr")
    with pytest.raises(ValueError, match="not analysed"):
        kpl.expression(two_runs, "gene_35", key="partial")
    with pytest.raises(ValueError, match="not analysed"):
        kpl.heatmap(two_runs, groupby="cell_type", key="partial", genes=["gene_35"])
    ax = kpl.heatmap(two_runs, groupby="cell_type", key="partial", n_genes=50)
    assert len(ax.get_yticklabels()) == 30 and keys.mahalanobis in two_runs.var


def test_after_h5ad_round_trip(two_runs, tmp_path, assert_no_overlap):
    path = tmp_path / "result.h5ad"
    two_runs.write_h5ad(path)
    back = ad.read_h5ad(path)
    ax = kpl.volcano_de(back)
    ax.figure.canvas.draw()
    assert_no_overlap([Text.get_window_extent(t) for t in ax.texts])
    kpl.volcano_da(back, key="swapped", color="cell_type")
    kpl.direction_barplot(back, "cell_type")
    kpl.expression(back, "gene_1", key="partial")
    axes = kpl.embedding(back, "X_umap", color=["direction", "gene_1"], key=None)
    assert len(axes) == 2
