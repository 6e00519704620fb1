"""kompot.pl.heatmap and direction_barplot draw the stored group summaries."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

import kompot.pl as kpl


def _cell_type_means(result, layer, genes):
    columns = [result.var_names.get_loc(g) for g in genes]
    frame = pd.DataFrame(np.asarray(result.layers[layer][:, columns], dtype=np.float64),
                         columns=genes)
    return frame.groupby(result.obs["cell_type"].to_numpy()).mean().T


# ------------------------------------------------------------------ heatmap
def test_heatmap_fold_change_is_the_group_mean(result, de_keys, assert_centred):
    ax = kpl.heatmap(result, groupby="cell_type", n_genes=12)
    genes = [t.get_text().removesuffix(" *") for t in ax.get_yticklabels()]
    top = result.var[de_keys.mahalanobis].sort_values(ascending=False).index[:12]
    assert sorted(genes) == sorted(top)
    # Ordered by mean fold change, increases first.
    assert np.all(np.diff(result.var.loc[genes, de_keys.mean_lfc].to_numpy()) <= 0)
    groups = [t.get_text().split(" (n=")[0] for t in ax.get_xticklabels()]
    assert groups == list(result.obs["cell_type"].cat.categories)
    expected = _cell_type_means(result, de_keys.fold_change, genes)[groups].to_numpy()
    image = ax.images[0]
    np.testing.assert_allclose(np.asarray(image.get_array()), expected, rtol=1e-6)
    assert_centred(image.norm)
    assert image.norm.vmax == pytest.approx(np.abs(expected).max())


def test_heatmap_smoothed_alternates_conditions(result, de_keys):
    genes = ["gene_3", "gene_1"]
    ax = kpl.heatmap(result, groupby="cell_type", genes=genes, values="smoothed")
    assert [t.get_text().removesuffix(" *") for t in ax.get_yticklabels()] == genes
    drawn = np.asarray(ax.images[0].get_array())
    groups = list(result.obs["cell_type"].cat.categories)
    for k, condition in enumerate(("control", "treated")):
        expected = _cell_type_means(result, de_keys.smoothed(condition), genes)[groups]
        np.testing.assert_allclose(drawn[:, k::2], expected.to_numpy(), rtol=1e-6)
    n_first = int((result.obs["cell_type"] == groups[0]).sum())
    assert ax.get_xticklabels()[1].get_text() == f"{groups[0]} (n={n_first}) · treated"
    scaled = kpl.heatmap(result, groupby="cell_type", genes=genes, values="smoothed",
                         standard_scale="gene")
    values = np.asarray(scaled.images[0].get_array())
    np.testing.assert_allclose(values.min(axis=1), 0.0)
    np.testing.assert_allclose(values.max(axis=1), 1.0)


def test_heatmap_errors(result):
    with pytest.raises(KeyError, match="groupby"):
        kpl.heatmap(result, groupby="tissue")
    with pytest.raises(ValueError, match="values"):
        kpl.heatmap(result, groupby="cell_type", values="zscore")
    with pytest.raises(KeyError, match="var_names"):
        kpl.heatmap(result, groupby="cell_type", genes=["GAPDH"])
    with pytest.raises(ValueError, match="smoothed"):
        kpl.heatmap(result, groupby="cell_type", standard_scale="gene")
    no_layers = result.copy()
    for name in list(no_layers.layers):
        if name.startswith("kompot_de"):
            del no_layers.layers[name]
    with pytest.raises(KeyError, match="store_layers=True"):
        kpl.heatmap(no_layers, groupby="cell_type")


# ------------------------------------------------------------------ direction_barplot
def test_barplot_heights_are_the_shares(result, da_keys):
    ax = kpl.direction_barplot(result, "cell_type")
    table = pd.crosstab(result.obs["cell_type"], result.obs[da_keys.direction])
    shares = table.div(table.sum(axis=1), axis=0)
    colors = result.uns[da_keys.direction_colors]
    bottom = np.zeros(len(shares))
    for container, call, color in zip(ax.containers, ["down", "neutral", "up"], colors, strict=True):
        heights = np.array([bar.get_height() for bar in container])
        np.testing.assert_allclose(heights, shares[call].to_numpy())
        np.testing.assert_allclose([bar.get_y() for bar in container], bottom)
        assert {to_hex(bar.get_facecolor()) for bar in container} == {color}
        bottom += heights
    np.testing.assert_allclose(bottom, 1.0)
    assert ax.get_xticklabels()[0].get_text().startswith("progenitor (n=")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "neutral", "down"]


def test_barplot_counts(result, da_keys):
    ax = kpl.direction_barplot(result, "cell_type", normalize=False)
    totals = sum(np.array([bar.get_height() for bar in c]) for c in ax.containers)
    np.testing.assert_array_equal(totals, result.obs["cell_type"].value_counts(sort=False).to_numpy())


def test_barplot_errors(result):
    with pytest.raises(KeyError, match="groupby"):
        kpl.direction_barplot(result, "tissue")
    with pytest.raises(KeyError, match="kompot.tl"):
        kpl.direction_barplot(result, "cell_type", key="kompot_da_other")
