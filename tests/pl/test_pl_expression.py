"""kompot.pl.expression: observed, smoothed per condition and fold change of one gene."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import kompot.pl as kpl

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")


def test_expression_panels(result, de_keys, assert_centred):
    panels = kpl.expression(result, "gene_2")
    assert isinstance(panels, list) and len(panels) == 4
    fig = kpl.expression(result, "gene_2", return_fig=True)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [p.get_title() for p in panels]
    column = result.var_names.get_loc("gene_2")
    stored = [
        np.asarray(result.X[:, column]),
        result.layers[de_keys.smoothed("control")][:, column],
        result.layers[de_keys.smoothed("treated")][:, column],
        result.layers[de_keys.fold_change][:, column],
    ]
    for ax, values in zip(panels, stored, strict=True):
        drawn = np.asarray(ax.collections[0].get_array(), dtype=np.float64)
        np.testing.assert_array_equal(np.sort(drawn), np.sort(values.astype(np.float64)))
    assert [p.get_title().split("\n")[0] for p in panels] == [
        "gene_2 observed", "gene_2 smoothed, control", "gene_2 smoothed, treated",
        "gene_2 log fold change (ln)",
    ]
    smoothed = [p.collections[0].norm for p in panels[1:3]]
    assert (smoothed[0].vmin, smoothed[0].vmax) == (smoothed[1].vmin, smoothed[1].vmax)
    assert_centred(panels[3].collections[0].norm)


def test_expression_errors(result):
    with pytest.raises(KeyError, match="var_names"):
        kpl.expression(result, "GAPDH")
    with pytest.raises(KeyError, match="adata.obsm"):
        kpl.expression(result, "gene_2", basis="X_pca")
    with pytest.raises(KeyError, match="kompot.tl"):
        kpl.expression(result, "gene_2", key="kompot_de2")


def test_expression_single_panel_into_given_axes(result, de_keys):
    fig, (left, right) = plt.subplots(1, 2)
    assert kpl.expression(result, "gene_2", values="fold_change", ax=right) is right
    assert not left.collections and right.collections
    assert right.get_title().startswith("gene_2 log fold change (ln)")
    axes = kpl.expression(result, "gene_2", values=["observed", "fold_change"])
    assert [a.get_title().split("\n")[0] for a in axes] == ["gene_2 observed",
                                                            "gene_2 log fold change (ln)"]
    with pytest.raises(ValueError, match="single panel"):
        kpl.expression(result, "gene_2", ax=left)
    with pytest.raises(ValueError, match="values"):
        kpl.expression(result, "gene_2", values="raw")
