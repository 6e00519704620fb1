"""Every plot names what it shows: log quantities with their base, rules, counts and calls."""

import warnings

import numpy as np
import pytest

import kompot
import kompot.pl as kpl
import kompot.tl

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")

MINUS = "\u2212"
VERSUS = "treated vs control"


def _colorbar_label(ax):
    """The label of the colour bar drawn next to ``ax`` (the figure's other Axes)."""
    others = [a for a in ax.figure.axes if a is not ax]
    assert len(others) == 1
    return others[0].get_ylabel()


def _dashed(ax):
    return [line for line in ax.lines if line.get_linestyle() == "--"]


def test_volcano_de_labels_and_rule(result):
    ax = kpl.volcano_de(result, n_top_labels=0)
    assert ax.get_xlabel() == f"mean log fold change (ln), {VERSUS}"
    assert ax.get_ylabel() == "Mahalanobis distance"
    ax = kpl.volcano_de(result, score="tail_fdr", n_top_labels=0)
    assert ax.get_ylabel() == f"{MINUS}log10 tail FDR"
    (rule,) = _dashed(ax)
    assert rule.get_ydata()[0] == pytest.approx(-np.log10(0.05))
    assert rule.get_label() == "FDR 0.05"
    assert "FDR 0.05" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_volcano_da_labels_rule_and_colorbar(result, da_keys):
    ax = kpl.volcano_da(result)
    assert ax.get_xlabel() == f"log fold change of abundance (ln), {VERSUS}"
    assert ax.get_ylabel() == f"{MINUS}log10 FDR (Benjamini–Hochberg)"
    (rule,) = _dashed(ax)
    assert rule.get_ydata()[0] == pytest.approx(-np.log10(0.05)) and rule.get_label() == "FDR 0.05"
    ax = kpl.volcano_da(result, color=da_keys.lfc)
    assert _colorbar_label(ax) == "log fold change of abundance (ln)"
    ax = kpl.volcano_da(result, color="true_log_density_ratio")
    assert _colorbar_label(ax) == "true_log_density_ratio"  # a user's column, by its name


def test_embedding_titles_name_the_quantity(result):
    lfc, ptp, gene = kpl.embedding(result, "X_umap", color=["lfc", "neg_log10_ptp", "gene_0"])
    assert lfc.get_title() == f"log fold change of abundance (ln)\n({VERSUS})"
    assert ptp.get_title().startswith(f"{MINUS}log10 PTP")
    assert gene.get_title() == f"gene_0 log fold change (ln)\n{VERSUS}"
    control, _ = kpl.embedding(result, "X_umap", color="gene_0", values="smoothed")
    assert control.get_title() == "gene_0 smoothed, control\nlog expression (ln)"


def test_expression_titles(result):
    titles = [ax.get_title() for ax in kpl.expression(result, "gene_0")]
    assert titles == [
        "gene_0 observed\nlog expression (ln), adata.X",
        "gene_0 smoothed, control\nlog expression (ln)",
        "gene_0 smoothed, treated\nlog expression (ln)",
        f"gene_0 log fold change (ln)\n{VERSUS}",
    ]


def test_heatmap_marks_calls_and_counts_cells(result, de_keys):
    ax = kpl.heatmap(result, groupby="cell_type", n_genes=40)
    assert _colorbar_label(ax) == f"mean log fold change (ln)\n{VERSUS}"
    assert ax.get_ylabel() == "genes (* tail FDR \u2264 0.05)"
    called = result.var[de_keys.is_de]
    for tick in ax.get_yticklabels():
        name = tick.get_text().removesuffix(" *")
        assert tick.get_text().endswith(" *") == bool(called[name])
    assert called.any() and (~called).any()
    counts = result.obs["cell_type"].value_counts()
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        f"{g} (n={counts[g]})" for g in result.obs["cell_type"].cat.categories
    ]
    ax = kpl.heatmap(result, groupby="cell_type", values="smoothed", n_genes=3)
    assert _colorbar_label(ax) == "smoothed log expression (ln)"
    ax = kpl.heatmap(result, groupby="cell_type", values="smoothed", standard_scale="gene")
    assert _colorbar_label(ax) == "smoothed expression, scaled 0-1 per gene"


def test_heatmap_without_fdr_marks_nothing(result, de_keys):
    adata = result.copy()
    for column in (de_keys.is_de, de_keys.tail_fdr):
        del adata.var[column]
    ax = kpl.heatmap(adata, groupby="cell_type", n_genes=10)
    assert not any(t.get_text().endswith("*") for t in ax.get_yticklabels())
    assert ax.get_ylabel() == "genes (no FDR computed)"


def test_barplot_labels(result):
    ax = kpl.direction_barplot(result, "cell_type")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("cell_type", "share of cells")
    assert all(" (n=" in t.get_text() for t in ax.get_xticklabels())
    assert kpl.direction_barplot(result, "cell_type", normalize=False).get_ylabel() == "cells"


def test_log_base_of_the_expression(result):
    adata = result.copy()
    assert adata.uns["kompot_de"]["log_base"] == pytest.approx(np.e)  # recorded by the run
    adata.uns["kompot_de"]["log_base"] = 2.0
    assert kpl.volcano_de(adata, n_top_labels=0).get_xlabel().startswith("mean log fold change (log2)")
    # A run without the record (older kompot) reads scanpy's log1p entry.
    del adata.uns["kompot_de"]["log_base"]
    adata.uns["log1p"] = {"base": 10}  # as sc.pp.log1p(adata, base=10) records it
    assert "(log10)" in kpl.volcano_de(adata, n_top_labels=0).get_xlabel()
    del adata.uns["log1p"]
    assert "(ln)" in kpl.volcano_de(adata, n_top_labels=0).get_xlabel()


# ------------------------------------------------------------------ smoothed expression
@pytest.fixture(scope="module")
def smoothed(result):
    adata = result.copy()
    kompot.tl.compute_smoothed_expression(adata, groupby="condition", condition="control",
                                          n_landmarks=100, progress=False)
    return adata


def test_smoothed_run_on_embedding(smoothed):
    ax = kpl.embedding(smoothed, "X_umap", color="gene_3", key="kompot_smooth")
    stored = smoothed.layers["kompot_smooth_smoothed"][:, 3].astype(np.float64)
    drawn = np.asarray(ax.collections[0].get_array(), dtype=np.float64)
    np.testing.assert_array_equal(np.sort(drawn), np.sort(stored))
    assert ax.get_title() == "gene_3 smoothed, fit on control\nlog expression (ln)"
    with pytest.raises(ValueError, match="no fold change"):
        kpl.embedding(smoothed, "X_umap", color="gene_3", key="kompot_smooth", values="fold_change")


def test_smoothed_run_in_expression(smoothed):
    observed, smooth = kpl.expression(smoothed, "gene_3", key="kompot_smooth")
    assert observed.get_title().startswith("gene_3 observed")
    assert smooth.get_title().startswith("gene_3 smoothed, fit on control")
    ax = kpl.expression(smoothed, "gene_3", key="kompot_smooth", values="smoothed")
    assert ax.get_title().startswith("gene_3 smoothed")


# ------------------------------------------------------------------ duplicate gene names
@pytest.fixture(scope="module")
def duplicated(result):
    adata = result.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: names not unique
        adata.var_names = ["gene_0", *result.var_names[1:-1], "gene_0"]
    return adata


def test_duplicate_var_names(duplicated):
    ax = kpl.volcano_de(duplicated, n_top_labels=5)  # per-gene points need no lookup by name
    assert sum(len(c.get_offsets()) for c in ax.collections) == duplicated.n_vars
    kpl.expression(duplicated, "gene_1")  # a unique name still works
    for plot in (lambda: kpl.expression(duplicated, "gene_0"),
                 lambda: kpl.embedding(duplicated, "X_umap", color="gene_0"),
                 lambda: kpl.heatmap(duplicated, groupby="cell_type", genes=["gene_0"])):
        with pytest.raises(ValueError, match=r"more than once.*var_names_make_unique\(\)"):
            plot()
