# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # kompot in ten minutes: abundance and expression changes on a toy data set
#
# This walkthrough runs both analyses of kompot on `kompot.datasets.toy()`, a
# small simulated data set whose answer is known, and shows where every
# result lands in the AnnData and how to read it.
#
# The data: 2,000 cells on a branching trajectory (a trunk splitting into
# branches A and B), half `control` and half `treated`, each condition split
# into 3 replicate samples. Treated cells are more abundant near the tip of
# branch A and less abundant near the tip of branch B (the planted
# differential abundance), and 20 of the 200 genes change their mean in
# treated cells of the late trunk (the planted differential expression).
# The cell-state representation is a 10-D array in
# `obsm["DM_EigenVectors"]`, the name palantir gives its diffusion components.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import roc_auc_score

import kompot

plt.rcParams["figure.dpi"] = 80  # keeps the stored notebook small
adata = kompot.datasets.toy(n_cells=2000, n_genes=200, seed=0)
adata

# %%
pd.crosstab(adata.obs["sample"], adata.obs["condition"])

# %% [markdown]
# `obs["da_region"]` and `var["is_de"]` hold the planted truth; a real data
# set has neither, and we use them only to check the answers.

# %% [markdown]
# ## Differential abundance
#
# `compute_differential_abundance` fits a Gaussian-process density of cell
# states to each condition's cells (on landmarks and a length scale shared by
# both) and evaluates both densities at every cell. The log fold change is
# `log density(treated) - log density(control)`.
#
# With `sample_col`, the variation between replicate samples enters the
# uncertainty, and `direction_by="fdr"` calls a cell `up` or `down` when its
# permutation FDR is below `fdr_threshold` and its |log fold change| exceeds
# `log_fold_change_threshold` (1.0 by default).

# %%
kompot.tl.compute_differential_abundance(
    adata,
    groupby="condition",
    condition1="control",
    condition2="treated",
    obsm_key="DM_EigenVectors",
    sample_col="sample",
    direction_by="fdr",
    progress=False,
)
da = "kompot_da_control_to_treated"
# The full column names are long; drop the shared prefix for display.
adata.obs.filter(like=da).rename(columns=lambda c: c.removeprefix(da + "_")).head()

# %% [markdown]
# The columns are named `kompot_da_<condition1>_to_<condition2>_<result>`:
# the log fold change (`lfc`), its z-score, the posterior tail probability of
# no change (`neg_log10_lfc_ptp`), the call (`lfc_direction`) and, with
# `direction_by="fdr"`, the permutation FDR (`lfc_fdr`). The parameters of
# the run, the landmarks and the fitted length scale are in
# `adata.uns["kompot_da"]`:

# %%
{k: v for k, v in adata.uns["kompot_da"].items() if k != "landmarks"}

# %%
print("AUROC of |z| for the planted region:",
      round(roc_auc_score(adata.obs["da_region"], adata.obs[f"{da}_lfc_zscore"].abs()), 3))
pd.crosstab(adata.obs["cell_type"], adata.obs[f"{da}_lfc_direction"])

# %% [markdown]
# Up cells sit at the tip of branch A (`A_mature`), down cells at the tip of
# branch B (`B_mature`), as planted. The plots read the run through its
# `key` (`"kompot_da"` by default):

# %%
kompot.pl.embedding(adata, "X_umap", color=["lfc", "direction"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
kompot.pl.volcano_da(adata, color="cell_type", ax=axes[0], show=False)
kompot.pl.direction_barplot(adata, "cell_type", ax=axes[1], show=False)
fig.tight_layout()

# %% [markdown]
# ## Differential expression
#
# `compute_differential_expression` fits one expression Gaussian process per
# condition (all genes at once), predicts both at every cell, and scores each
# gene by the Mahalanobis distance between the two conditions' expression
# profiles in units of their joint uncertainty (posterior, empirical and,
# with `sample_col`, between-sample variance). P-values and FDRs come from
# refitting the model under permuted conditions (whole samples are swapped
# when `sample_col` is given); `docs/significance.md` explains the null.
#
# Expression is read from `adata.X` (or `layer=`) and should be
# log-normalised: the toy data's `X` is `log1p` of library-size normalised
# counts, and the raw counts are in `layers["counts"]`.

# %%
kompot.tl.compute_differential_expression(
    adata,
    groupby="condition",
    condition1="control",
    condition2="treated",
    obsm_key="DM_EigenVectors",
    sample_col="sample",
    progress=False,
)
de = "kompot_de_control_to_treated"
table = adata.var[[f"{de}_mean_lfc", f"{de}_mahalanobis", f"{de}_tail_fdr", f"{de}_is_de", "is_de"]]
table = table.rename(columns=lambda c: c.removeprefix(de + "_"))
table.sort_values("mahalanobis", ascending=False).head(10)

# %%
called = adata.var[f"{de}_is_de"]
print(f"{called.sum()} genes at FDR 0.05, {(called & adata.var['is_de']).sum()} of them planted; "
      f"AUROC of the distance for the planted genes "
      f"{roc_auc_score(adata.var['is_de'], adata.var[f'{de}_mahalanobis']):.3f}")

# %% [markdown]
# The volcano plot puts the mean log fold change against the Mahalanobis
# distance; genes called at the run's FDR threshold are highlighted and the
# top ones labelled.

# %%
kompot.pl.volcano_de(adata)

# %% [markdown]
# ## Where along the landscape does a gene change?
#
# The per-cell results are in `adata.layers`: each condition's smoothed
# expression, its standard deviation, and the fold change, all evaluated at
# every cell. `kompot.pl.expression` shows them side by side for one gene,
# and `kompot.pl.heatmap` summarises the fold change of the top genes per
# cell type.

# %%
[name for name in adata.layers if name.startswith("kompot_de")]

# %%
top_gene = table["mahalanobis"].idxmax()
kompot.pl.expression(adata, top_gene)

# %%
kompot.pl.heatmap(adata, groupby="cell_type", n_genes=15)

# %% [markdown]
# The planted change is confined to the late trunk (`transitional` cells),
# which is where the fold change of the called genes concentrates.
#
# ## Next
#
# - `tutorials/02_pbmc68k_semisynthetic.ipynb`: a real data set (scanpy's
#   bundled `pbmc68k_reduced`, PCA representation) with planted conditions,
#   and the choices a user makes on real data.
# - `docs/method.md` for the model, `docs/significance.md` for what the FDR
#   means and when it is conservative.
