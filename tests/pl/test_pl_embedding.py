"""kompot.pl.embedding draws stored fields through scanpy, signed ones centred at 0."""

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import kompot.pl as kpl

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")


def _scatter(ax):
    return ax.collections[0]


def test_lfc_panel_draws_stored_values_centred(result, da_keys, assert_centred, sorted_rows):
    ax = kpl.embedding(result, "X_umap", color="lfc")
    assert isinstance(ax, Axes)
    scatter = _scatter(ax)
    lfc = result.obs[da_keys.lfc].to_numpy()
    drawn = np.column_stack([scatter.get_offsets(), scatter.get_array()])
    expected = np.column_stack([result.obsm["X_umap"], lfc])
    np.testing.assert_array_equal(sorted_rows(drawn), sorted_rows(expected))
    assert_centred(scatter.norm)
    assert scatter.norm.vmax == pytest.approx(np.abs(lfc).max())
    # The strongest changes of either sign are drawn last (on top).
    magnitude = np.abs(np.asarray(scatter.get_array()))
    assert np.all(np.diff(magnitude) >= 0)
    assert "log fold change" in ax.get_title() and ax.get_xlabel() == "UMAP1"


def test_direction_panel_uses_stored_colours(result, da_keys):
    ax = kpl.embedding(result, "umap", color="direction")
    colors = dict(zip(["down", "neutral", "up"], result.uns[da_keys.direction_colors], strict=True))
    order = np.lexsort(result.obsm["X_umap"].T[::-1])
    coords = result.obsm["X_umap"][order]
    calls = result.obs[da_keys.direction].astype(str).to_numpy()[order]
    scatter = _scatter(ax)
    drawn = np.asarray(scatter.get_offsets())
    drawn_order = np.lexsort(drawn.T[::-1])
    np.testing.assert_array_equal(drawn[drawn_order], coords)
    facecolors = [to_hex(c) for c in scatter.get_facecolors()[drawn_order]]
    assert facecolors == [colors[c] for c in calls]
    # Neutral cells first, underneath the calls.
    first_called = np.argmax(np.asarray([to_hex(c) for c in scatter.get_facecolors()]) != colors["neutral"])
    assert {to_hex(c) for c in scatter.get_facecolors()[:first_called]} <= {colors["neutral"]}


def test_several_panels_in_a_grid(result):
    axes = kpl.embedding(result, "X_umap", color=["lfc", "direction", "neg_log10_ptp", "cell_type"],
                         ncols=2)
    assert isinstance(axes, list) and len(axes) == 4
    assert axes[3].get_title() == "cell_type"
    fig = kpl.embedding(result, "X_umap", color=["lfc", "zscore"], return_fig=True)
    assert isinstance(fig, Figure)


def test_gene_fold_change_and_smoothed(result, de_keys, assert_centred, sorted_rows):
    gene = "gene_0"
    ax = kpl.embedding(result, "X_umap", color=gene)
    fold = result.layers[de_keys.fold_change][:, 0].astype(np.float64)
    drawn = np.sort(np.asarray(_scatter(ax).get_array(), dtype=np.float64))
    np.testing.assert_array_equal(drawn, np.sort(fold))
    assert_centred(_scatter(ax).norm)

    control, treated = kpl.embedding(result, "X_umap", color=gene, values="smoothed")
    for panel_ax, condition in ((control, "control"), (treated, "treated")):
        stored = result.layers[de_keys.smoothed(condition)][:, 0].astype(np.float64)
        drawn = np.sort(np.asarray(_scatter(panel_ax).get_array(), dtype=np.float64))
        np.testing.assert_array_equal(drawn, np.sort(stored))
        assert condition in panel_ax.get_title()
    # One colour scale for both conditions.
    assert _scatter(control).norm.vmin == _scatter(treated).norm.vmin
    assert _scatter(control).norm.vmax == _scatter(treated).norm.vmax

    ax = kpl.embedding(result, "X_umap", color=gene, values="observed")
    np.testing.assert_array_equal(
        np.sort(np.asarray(_scatter(ax).get_array(), dtype=np.float64)),
        np.sort(np.asarray(result.X[:, 0], dtype=np.float64)),
    )


def test_obs_columns_pass_through(result, da_keys, assert_centred):
    ax = kpl.embedding(result, "X_umap", color=da_keys.lfc)  # the full column name: still signed
    assert_centred(_scatter(ax).norm)
    ax = kpl.embedding(result, "X_umap", color="cell_type")
    assert {to_hex(c) for c in _scatter(ax).get_facecolors()} == set(result.uns["cell_type_colors"])


def test_scanpy_options_and_user_limits(result, assert_centred):
    ax = kpl.embedding(result, "X_umap", color="lfc", size=5, vmax=2.0, title="mine")
    assert _scatter(ax).norm.vmax == 2.0 and ax.get_title() == "mine"
    assert_centred(_scatter(ax).norm)  # a user's vmax stays symmetric about 0
    assert np.all(_scatter(ax).get_sizes() == 5)
    # Lists give one value per panel, as in scanpy.
    lfc_ax, ptp_ax = kpl.embedding(result, "X_umap", color=["lfc", "neg_log10_ptp"],
                                   vmax=[3.0, 10.0], title=["first"])
    assert _scatter(lfc_ax).norm.vmin == -3.0 and _scatter(ptp_ax).norm.vmax == 10.0
    assert lfc_ax.get_title() == "first" and "PTP" in ptp_ax.get_title()
    # An obs column as mask: masked cells are drawn in the na colour.
    ax = kpl.embedding(result, "X_umap", color="lfc", mask_obs="da_region")
    assert len(_scatter(ax).get_offsets()) == result.n_obs


def test_plots_leave_adata_untouched(result):
    before = (list(result.obs.columns), sorted(result.uns), list(result.layers))
    kpl.embedding(result, "X_umap", color=["lfc", "direction", "gene_1", "sample"])
    assert (list(result.obs.columns), sorted(result.uns), list(result.layers)) == before


def test_errors(result):
    with pytest.raises(KeyError, match="neither a kompot field"):
        kpl.embedding(result, "X_umap", color="nothing")
    with pytest.raises(KeyError, match="adata.obsm"):
        kpl.embedding(result, "X_tsne", color="lfc")
    with pytest.raises(KeyError, match="var_names|kompot.tl"):
        kpl.embedding(result, "X_umap", color="gene_0", key="missing_run")
    with pytest.raises(ValueError, match="single panel"):
        fig_ax = kpl.embedding(result, "X_umap", color="lfc")
        kpl.embedding(result, "X_umap", color=["lfc", "direction"], ax=fig_ax)
    with pytest.raises(ValueError, match="values"):
        kpl.embedding(result, "X_umap", color="gene_0", values="raw")
    with pytest.raises(ValueError, match="edges"):
        kpl.embedding(result, "X_umap", color="lfc", edges=True)
