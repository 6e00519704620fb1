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
# # Replicates and false-discovery rates
#
# Real experiments have replicate samples: donors, animals, wells. Cells of
# one sample share more than their condition (composition, depth, batch), so
# a difference between two samples can look like a difference between two
# conditions. This tutorial shows how kompot uses the samples
# (`sample_col`), what its false-discovery rates control for differential
# abundance (DA) and differential expression (DE), how to read the call
# columns, and two data sets without any condition effect on which the
# analysis with `sample_col` calls nothing while the one without it does.
#
# The data are `kompot.datasets.toy()`: 2,000 cells on a branching
# trajectory, `control` and `treated`, each with 3 replicate samples that
# have their own small abundance bumps, expression shifts and sequencing
# depth. A planted region is enriched and one depleted in treated cells,
# and 20 of the 200 genes change in treated cells of the late trunk.

# %%
import numpy as np
import pandas as pd

import kompot

adata = kompot.datasets.toy(n_cells=2000, n_genes=200, seed=0)
pd.crosstab(adata.obs["sample"], adata.obs["condition"])

# %% [markdown]
# `sample_col` names the column of `adata.obs` with each cell's sample.
# Every sample must belong to one condition (samples are nested in the
# conditions), and each condition needs at least 2 samples
# (`allow_single_condition_variance=True` relaxes that for one of them).

# %% [markdown]
# ## Differential abundance with replicates
#
# With `sample_col`, the default DA model refits the log fold change
# leaving out one sample at a time. The spread of those refits is the
# between-sample variance of the log fold change at each cell, and a cell's
# p-value is the larger of two: the model's posterior p-value, and that of a
# t-test against the between-sample variance (moderated over all cells, as
# limma does for genes). A call needs both.

# %%
kompot.tl.compute_differential_abundance(
    adata, "condition", "control", "treated",
    obsm_key="DM_EigenVectors", sample_col="sample", progress=False,
)
da = "kompot_da_control_to_treated"
# The full column names are long; drop the shared prefix for display.
(adata.obs[[f"{da}_lfc", f"{da}_lfc_std", f"{da}_lfc_sample_std",
            f"{da}_lfc_pvalue", f"{da}_lfc_fdr", f"{da}_lfc_direction"]]
 .rename(columns=lambda c: c.removeprefix(da + "_")).head())

# %% [markdown]
# ### Reading the direction column
#
# `…_lfc_direction` is the call, a categorical with three values:
#
# - `up`: significantly **more** cells of `condition2` (here `treated`)
#   relative to `condition1` in this cell's state;
# - `down`: significantly fewer;
# - `neutral`: no call — either no change, or not enough evidence at the
#   chosen level.
#
# The call is `up`/`down` exactly where the FDR is at most `fdr_threshold`
# (0.05 by default) and the sign of the log fold change gives the
# direction. Both the level and an optional minimum effect
# (`log_fold_change_threshold`) are recorded with the run:

# %%
direction = adata.obs[f"{da}_lfc_direction"]
params = adata.uns["kompot_da"]["params"]
print(f"fdr_threshold = {params['fdr_threshold']}, "
      f"log_fold_change_threshold = {params['log_fold_change_threshold']} "
      "(None: 0, the FDR alone decides)")
pd.crosstab(adata.obs["cell_type"], direction)

# %% [markdown]
# Because the FDR column is stored, calls at another level need no new run:

# %%
fdr = adata.obs[f"{da}_lfc_fdr"]
lfc = adata.obs[f"{da}_lfc"]
for q in (0.01, 0.05, 0.10):
    called = fdr <= q
    n_up, n_down = (called & (lfc > 0)).sum(), (called & (lfc < 0)).sum()
    print(f"q = {q:.2f}: {n_up} up, {n_down} down")

# %% [markdown]
# ### What the DA FDR controls
#
# The FDR is Benjamini–Hochberg over the cells of the two compared
# conditions, so it controls the expected share of **called cells** that
# are false (not of regions or populations). On the toy data we know where
# a change was planted, so we can count: a call is false where nothing was
# planted or where the planted change has the other sign.

# %%
planted = adata.obs["true_log_density_ratio"]
called = direction != "neutral"
false = called & ((planted == 0) | ((direction == "up") & (planted < 0))
                  | ((direction == "down") & (planted > 0)))
print(f"{called.sum()} cells called, {false.sum()} outside the planted regions or "
      f"of the wrong sign: observed false-discovery proportion {false.sum() / called.sum():.3f}")

# %% [markdown]
# A few false calls sit just outside the planted regions, where the smooth
# log fold change bleeds over the edge. Densities are also normalised, so
# an enriched region makes every other state slightly *relatively* rarer;
# such small shifts are real in relative terms, and
# `log_fold_change_threshold` keeps them out of the calls when only larger
# changes matter.
#
# The two standard deviations tell how much each source of uncertainty
# contributes: `…_lfc_std` is the model's posterior, `…_lfc_sample_std` the
# spread between samples. On this data set the spread between samples is
# mostly smaller than the posterior uncertainty; after moderation the
# posterior p-value is the larger one at every cell, so the analysis
# without `sample_col` gives the same calls:

# %%
ratio = adata.obs[f"{da}_lfc_sample_std"] / adata.obs[f"{da}_lfc_std"]
print(f"sample std / posterior std: median {ratio.median():.2f}, "
      f"range {ratio.min():.2f}-{ratio.max():.2f}")
kompot.tl.compute_differential_abundance(
    adata, "condition", "control", "treated",
    obsm_key="DM_EigenVectors", key_added="da_no_samples", progress=False,
)
pd.crosstab(direction, adata.obs["da_no_samples_control_to_treated_lfc_direction"],
            rownames=["with sample_col"], colnames=["without"])

# %% [markdown]
# That changes when samples differ in composition, below.

# %% [markdown]
# ## Differential expression with replicates
#
# With `sample_col`, each gene's between-sample variance (a Gaussian
# process per sample) enters its uncertainty and its Mahalanobis distance,
# and the null distribution reassigns **whole samples** between the
# conditions, so that the differences between samples are part of the null.

# %%
kompot.tl.compute_differential_expression(
    adata, "condition", "control", "treated",
    obsm_key="DM_EigenVectors", sample_col="sample",
    store_layers=False, progress=False,
)
de = "kompot_de_control_to_treated"
genes = adata.var[[f"{de}_mean_lfc", f"{de}_mahalanobis", f"{de}_pvalue",
                   f"{de}_tail_fdr", f"{de}_local_fdr", f"{de}_is_de", "is_de"]]
# The full column names are long; drop the shared prefix for display
# (`is_de` without the prefix is the planted truth).
(genes.sort_values(f"{de}_mahalanobis", ascending=False)
      .rename(columns=lambda c: c.removeprefix(de + "_").replace("is_de", "called")
              if c.startswith(de) else "planted")
      .head(12))

# %% [markdown]
# Per gene:
#
# - `…_pvalue`: how often a null distance (conditions reassigned) reaches
#   the gene's distance;
# - `…_tail_fdr`: the q-value, the FDR of calling this gene and every gene
#   with a larger distance;
# - `…_local_fdr`: the probability that this gene itself is null — larger
#   than the tail FDR, and the number to read for a single gene;
# - `…_is_de`: `tail_fdr <= fdr_threshold`. There is no up/down column for
#   genes: a gene can go up in one state and down in another. The sign of
#   `…_mean_lfc`, or the fold-change layer (`store_layers=True`), tells the
#   direction where it is consistent.
#
# The FDR controls the expected share of **called genes** that are false:

# %%
calls = adata.var[f"{de}_is_de"]
truth = adata.var["is_de"]
print(f"{calls.sum()} genes called, {(calls & ~truth).sum()} of them not planted; "
      f"{(calls & truth).sum()} of {truth.sum()} planted genes found")

# %% [markdown]
# With 3 vs 3 samples there are only ten ways to split the six samples into
# two groups of three, so the null is coarse and conservative: replicates
# make calls honest, not more numerous.

# %% [markdown]
# ## Complete nulls: no condition effect, no calls
#
# The real test of a false-discovery rate is data in which nothing changes.
# First, the same toy design without any planted effect (`da_strength=0`,
# `n_de_genes=0`) but with its replicate effects, analysed with and without
# `sample_col`:

# %%
null = kompot.datasets.toy(n_cells=2000, n_genes=200, seed=0, da_strength=0, n_de_genes=0)
for key, samples in (("with_samples", "sample"), ("without_samples", None)):
    kompot.tl.compute_differential_abundance(
        null, "condition", "control", "treated", obsm_key="DM_EigenVectors",
        sample_col=samples, key_added=f"da_{key}", n_landmarks=300, progress=False,
    )
    kompot.tl.compute_differential_expression(
        null, "condition", "control", "treated", obsm_key="DM_EigenVectors",
        sample_col=samples, key_added=f"de_{key}", n_landmarks=300,
        store_layers=False, progress=False,
    )
pd.DataFrame({
    "DA cells called": [(null.obs[f"da_{key}_control_to_treated_lfc_direction"] != "neutral").sum()
                        for key in ("with_samples", "without_samples")],
    "DE genes called": [null.var[f"de_{key}_control_to_treated_is_de"].sum()
                        for key in ("with_samples", "without_samples")],
    "smallest DE tail FDR": [null.var[f"de_{key}_control_to_treated_tail_fdr"].min()
                             for key in ("with_samples", "without_samples")],
}, index=["with sample_col", "without"])

# %% [markdown]
# With `sample_col`, nothing is called. Without it, kompot assumes that the
# cells of a condition are exchangeable, which these samples are not: their
# gene-wise shifts look like condition effects, and genes are called. How
# many depends on the draw of the samples' shifts (on `seed=1` of the same
# design, one gene); the analysis with `sample_col` is the one whose FDR
# holds on every draw's design.
#
# Second, samples that differ in **composition**, the common case with
# donors: starting from toy data without any effect (and samples that are
# otherwise exchangeable), each sample over- or under-represents each cell
# type at random (a log-normal factor with standard deviation 1). Nothing
# differs between the conditions on average, but any one 3-vs-3 draw has
# imbalances.

# %%
comp = kompot.datasets.toy(n_cells=3000, n_genes=20, seed=0, da_strength=0,
                           n_de_genes=0, replicate_effects=False)
rng = np.random.default_rng(0)
cell_types = comp.obs["cell_type"].cat.categories
keep = np.zeros(comp.n_obs, dtype=bool)
for sample in comp.obs["sample"].cat.categories:
    weight = pd.Series(np.exp(rng.normal(0.0, 1.0, len(cell_types))), index=cell_types)
    p_keep = comp.obs["cell_type"].map(weight).astype(float).to_numpy() / weight.max()
    keep |= (comp.obs["sample"] == sample).to_numpy() & (rng.random(comp.n_obs) < p_keep)
comp = comp[keep].copy()
pd.crosstab(comp.obs["sample"], comp.obs["cell_type"])

# %%
for key, samples in (("with_samples", "sample"), ("without_samples", None)):
    kompot.tl.compute_differential_abundance(
        comp, "condition", "control", "treated", obsm_key="DM_EigenVectors",
        sample_col=samples, key_added=f"da_{key}", n_landmarks=300, progress=False,
    )
pd.DataFrame({
    key: comp.obs[f"da_{key}_control_to_treated_lfc_direction"].value_counts()
    for key in ("with_samples", "without_samples")
})

# %% [markdown]
# Without `sample_col`, hundreds of cells are called although the
# conditions do not differ: the model sees more treated cells wherever the
# treated samples happen to over-represent a cell type. With `sample_col`,
# the leave-one-sample-out spread is large there and nothing is called.
#
# This is one draw. Over many such draws, a false-discovery rate of q allows
# a run with some false calls up to about a share q of the time;
# `docs/significance.md` reports how often that happened on 30 null data
# sets of each kind (and the harder cases). **Pass `sample_col` whenever you
# have replicates.**
