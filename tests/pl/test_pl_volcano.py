"""kompot.pl.volcano_de and volcano_da draw exactly the stored results."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text

import kompot.pl as kpl
import kompot.tl
from kompot._keys import DIRECTION_COLORS


def _offsets(ax, i):
    return np.asarray(ax.collections[i].get_offsets(), dtype=np.float64)


# ------------------------------------------------------------------ volcano_de
def test_volcano_de_points_are_the_stored_genes(result, de_keys):
    ax = kpl.volcano_de(result, n_top_labels=0)
    assert isinstance(ax, Axes)
    var = result.var
    lfc = var[de_keys.mean_lfc].to_numpy()
    distance = var[de_keys.mahalanobis].to_numpy()
    called = var[de_keys.is_de].to_numpy()
    groups = {0: ~called, 1: called & (lfc < 0), 2: called & (lfc >= 0)}
    assert called.any() and (~called).any()
    for i, mask in groups.items():
        np.testing.assert_array_equal(_offsets(ax, i), np.column_stack([lfc[mask], distance[mask]]))
    # Called genes in the direction colours, the rest grey.
    for i, color in zip((1, 0, 2), DIRECTION_COLORS, strict=True):
        assert to_hex(ax.collections[i].get_facecolor()[0]) == color
    assert ax.get_xlabel().startswith("mean log fold change")
    assert "Mahalanobis" in ax.get_ylabel()


@pytest.mark.parametrize("score", ["tail_fdr", "local_fdr", "pvalue"])
def test_volcano_de_fdr_scores_as_neg_log10(result, de_keys, score):
    ax = kpl.volcano_de(result, score=score, n_top_labels=0)
    y = np.concatenate([_offsets(ax, i)[:, 1] for i in range(3)])
    stored = result.var[getattr(de_keys, score)].to_numpy()
    np.testing.assert_allclose(np.sort(y), np.sort(-np.log10(stored)))


def test_volcano_de_draws_the_fdr_threshold(result):
    ax = kpl.volcano_de(result, score="tail_fdr", n_top_labels=0)
    levels = [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert levels == [pytest.approx(-np.log10(0.05))]


def test_volcano_de_fdr_threshold_recalls_genes(result, de_keys):
    ax = kpl.volcano_de(result, fdr_threshold=0.5, n_top_labels=0)
    called = result.var[de_keys.tail_fdr].to_numpy() <= 0.5
    assert len(ax.collections[0].get_offsets()) == (~called).sum()


def test_volcano_de_labels_top_genes_without_overlap(result, de_keys, assert_no_overlap):
    ax = kpl.volcano_de(result, n_top_labels=10)
    expected = result.var[de_keys.mahalanobis].sort_values(ascending=False).index[:10]
    assert sorted(t.get_text() for t in ax.texts) == sorted(expected)
    ax.figure.canvas.draw()
    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the text, not its leader line
    assert_no_overlap(boxes)
    # Each label stays clear of every labelled point and inside the axes.
    frame = ax.get_window_extent()
    labelled = ax.transData.transform([t.xy for t in ax.texts])
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 <= box.y1 <= frame.y1
        assert not any(box.contains(px, py) for px, py in labelled)


def test_volcano_de_labels_many_genes_without_overlap(result, assert_no_overlap):
    ax = kpl.volcano_de(result, n_top_labels=40)
    assert len(ax.texts) == 40
    ax.figure.canvas.draw()
    assert_no_overlap([Text.get_window_extent(t) for t in ax.texts])


def test_volcano_de_ax_and_return_fig(result):
    fig, (left, right) = plt.subplots(1, 2)
    assert kpl.volcano_de(result, ax=right, n_top_labels=2) is right
    assert len(right.collections) == 3 and not left.collections
    assert isinstance(kpl.volcano_de(result, return_fig=True, n_top_labels=0), Figure)


def test_volcano_de_scatter_kwargs(result):
    ax = kpl.volcano_de(result, s=3, alpha=0.5, n_top_labels=0)
    assert ax.collections[0].get_sizes()[0] == 3
    assert ax.collections[0].get_alpha() == 0.5


def test_volcano_de_errors(result, de_keys):
    with pytest.raises(KeyError, match="kompot.tl"):
        kpl.volcano_de(result, key="no_such_run")
    with pytest.raises(KeyError, match="differential-expression"):
        kpl.volcano_de(result, key="kompot_da")
    with pytest.raises(ValueError, match="score"):
        kpl.volcano_de(result, score="fold")
    with pytest.raises(ValueError, match="fdr_threshold"):
        kpl.volcano_de(result, fdr_threshold=2)
    without_fdr = result.copy()
    del without_fdr.var[de_keys.tail_fdr]
    with pytest.raises(KeyError, match="fdr=True"):
        kpl.volcano_de(without_fdr, score="tail_fdr")


# ------------------------------------------------------------------ volcano_da
def test_volcano_da_points_by_direction(result, da_keys):
    ax = kpl.volcano_da(result)
    obs = result.obs
    colors = dict(zip(["down", "neutral", "up"], result.uns[da_keys.direction_colors], strict=True))
    for i, call in enumerate(["down", "neutral", "up"]):
        mask = (obs[da_keys.direction] == call).to_numpy()
        expected = np.column_stack([obs[da_keys.lfc][mask], -np.log10(obs[da_keys.lfc_fdr][mask])])
        np.testing.assert_array_equal(_offsets(ax, i), expected)
        assert to_hex(ax.collections[i].get_facecolor()[0]) == colors[call]
    # Neutral cells lie underneath the calls.
    assert ax.collections[1].get_zorder() < ax.collections[0].get_zorder()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.split()[0] for t in legend[:3]] == ["down", "neutral", "up"]
    assert legend[3:] == ["FDR 0.05"]  # the rule's line


def _threshold_lines(ax):
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    xs = sorted(line.get_xdata()[0] for line in dashed if line.get_xdata()[0] == line.get_xdata()[1])
    ys = [line.get_ydata()[0] for line in dashed if line.get_ydata()[0] == line.get_ydata()[1]]
    return xs, ys


def test_volcano_da_draws_the_rule_of_the_calls(result, da_keys):
    # The default run calls by FDR alone: the y axis is -log10 FDR, one line at its level,
    # and every called cell lies above it, every other cell below or on it.
    ax = kpl.volcano_da(result)
    xs, ys = _threshold_lines(ax)
    assert xs == [] and ys == [pytest.approx(-np.log10(0.05))]
    assert "FDR" in ax.get_ylabel() and "ln" in ax.get_xlabel()
    for i, call in enumerate(["down", "neutral", "up"]):
        y = _offsets(ax, i)[:, 1]
        assert np.all(y <= ys[0] + 1e-12) if call == "neutral" else np.all(y > ys[0])


def test_volcano_da_draws_the_ptp_rule_of_a_ptp_run(result):
    adata = result.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", "control", "treated",
                                             direction_by="ptp", n_landmarks=100,
                                             progress=False)
    ax = kpl.volcano_da(adata)
    xs, ys = _threshold_lines(ax)
    assert xs == [-1.0, 1.0] and ys == [pytest.approx(-np.log10(0.05))]
    assert ax.get_ylabel() == "\u2212log10 PTP"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[3:] == ["|log fold change| 1", "PTP 0.05"]
    ax = kpl.volcano_da(adata, lfc_threshold=2.0, ptp_threshold=0.01)
    assert _threshold_lines(ax) == ([-2.0, 2.0], [pytest.approx(2.0)])


def test_volcano_da_categorical_colours_from_uns(result, da_keys):
    ax = kpl.volcano_da(result, color="cell_type")
    categories = list(result.obs["cell_type"].cat.categories)
    for i, (category, color) in enumerate(zip(categories, result.uns["cell_type_colors"], strict=True)):
        mask = (result.obs["cell_type"] == category).to_numpy()
        assert len(ax.collections[i].get_offsets()) == mask.sum()
        assert to_hex(ax.collections[i].get_facecolor()[0]) == color


def test_volcano_da_signed_numeric_colour_is_centred(result, da_keys, assert_centred, sorted_rows):
    ax = kpl.volcano_da(result, color="true_log_density_ratio")
    collection = ax.collections[0]
    assert_centred(collection.norm)
    obs = result.obs
    drawn = np.column_stack([collection.get_offsets(), collection.get_array()])
    expected = np.column_stack(
        [obs[da_keys.lfc], -np.log10(obs[da_keys.lfc_fdr]), obs["true_log_density_ratio"]]
    )
    np.testing.assert_array_equal(sorted_rows(drawn), sorted_rows(expected))


def test_volcano_da_errors(result):
    with pytest.raises(KeyError, match="obs"):
        kpl.volcano_da(result, color="nope")
    with pytest.raises(KeyError, match="differential-abundance"):
        kpl.volcano_da(result, key="kompot_de")
