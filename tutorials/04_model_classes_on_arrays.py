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
# # The model classes on arrays
#
# `kompot.tl` reads an AnnData, runs a model and writes the results back.
# The models themselves work on plain numpy arrays, for pipelines that have
# no AnnData or need more control:
#
# | class | fits | `predict` returns |
# |---|---|---|
# | `DifferentialAbundanceRatio` | the log density ratio of two conditions, from their labels (`kompot.tl`'s DA default) | per cell: log fold change, variance, p-value, FDR, call |
# | `DifferentialAbundance` | one log density per condition (kompot 0.8.0's DA model; `method="density"`) | per cell: both log densities, log fold change, variance, z-score, PTP, call |
# | `ExpressionModel` | expression of one condition (all genes at once) | cells × genes: smoothed expression (and, by method, its variance) |
# | `SampleVarianceEstimator` | one fit per replicate sample | the variance between samples |
# | `DifferentialExpression` | two `ExpressionModel`s on shared landmarks | cells × genes: both conditions' expression, std, fold change, z-scores; per gene: mean fold change, Mahalanobis distance |
#
# All follow scikit-learn's conventions: the constructor stores its
# arguments, `fit` returns the model and writes what it learned to
# attributes ending in `_`, and `predict` returns a dictionary of arrays.
# The four classes other than `DifferentialAbundanceRatio` keep the
# constructor and method signatures of kompot 0.8.0.

# %%
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

import kompot

adata = kompot.datasets.toy(n_cells=2000, n_genes=100, seed=0)
X = adata.obsm["DM_EigenVectors"]                      # cell states, (2000, 10)
Y = adata.X                                            # log-normalised expression, (2000, 100)
treated = (adata.obs["condition"] == "treated").to_numpy()
samples = adata.obs["sample"].to_numpy()
X.shape, Y.shape, treated.sum()


def describe(result):
    """Shape and dtype of every array a predict() returned."""
    return pd.DataFrame({"shape": [value.shape for value in result.values()],
                         "dtype": [value.dtype.name for value in result.values()]},
                        index=pd.Index(list(result), name="key"))


# %% [markdown]
# ## `DifferentialAbundanceRatio`: the log ratio from the labels
#
# `fit` takes the cell states of each condition (and, optionally, each
# cell's replicate sample). The length scale and the prior amplitude are
# chosen by the model's evidence unless given.

# %%
start = time.perf_counter()
ratio = kompot.DifferentialAbundanceRatio(n_landmarks=300, fdr_threshold=0.05)
ratio.fit(X[~treated], X[treated],
          condition1_sample_indices=samples[~treated],
          condition2_sample_indices=samples[treated])
print(f"fitted in {time.perf_counter() - start:.1f} s: {ratio.landmarks_.shape[0]} landmarks, "
      f"length scale {ratio.ls_:.3f}, amplitude {ratio.amplitude_}, "
      f"{len(ratio.log_evidence_)} (length scale, amplitude) pairs tried")

# %% [markdown]
# `predict` evaluates the fit at any cell states. Its FDR is
# Benjamini–Hochberg over the rows it is given, so pass the cells the calls
# are about: here all cells, which are the cells of the two conditions.

# %%
result = ratio.predict(X)
describe(result)

# %% [markdown]
# - `log_fold_change`: `log p_treated(x) - log p_control(x)`, each density
#   normalised by its number of cells (natural log);
# - `log_fold_change_uncertainty`: its posterior **variance**;
# - `log_fold_change_pvalue`, `log_fold_change_fdr`: two-sided p-value and
#   its Benjamini–Hochberg FDR; with samples the p-value is the larger of
#   the posterior's and that of a t-test against the between-sample
#   variance;
# - `log_fold_change_zscore`, `neg_log10_fold_change_ptp`: the same
#   evidence as a signed z-score and a one-sided tail probability;
# - `log_fold_change_direction`: `up`/`down` where the FDR is at most
#   `fdr_threshold`, else `neutral`;
# - with samples, `log_fold_change_sample_variance` (between samples, from
#   leave-one-sample-out refits) and `log_fold_change_df` (degrees of
#   freedom of the t-test; `inf` where the moderation prior makes it a
#   normal test).
#
# `kompot.tl.compute_differential_abundance` runs this model with the same
# inputs and writes these arrays as `obs` columns (the variance as a
# standard deviation, `…_lfc_std`).

# %%
direction = result["log_fold_change_direction"]
unplanted = (adata.obs["true_log_density_ratio"] == 0).to_numpy()
print({call: int((direction == call).sum()) for call in ("up", "down", "neutral")},
      f"of which {((direction != 'neutral') & unplanted).sum()} called where nothing was planted")
print("AUROC of |z| for the planted region:",
      round(roc_auc_score(adata.obs["da_region"], np.abs(result["log_fold_change_zscore"])), 3))

# %% [markdown]
# ## `DifferentialAbundance`: two densities and their difference
#
# kompot 0.8.0's model: one Gaussian-process log density per condition, on
# shared landmarks and a shared length scale. The model class keeps 0.8.0's
# length-scale multiplier (`ls_factor=10`); `kompot.tl` uses 0.25, which
# resolves regions of the size planted here.

# %%
density = kompot.DifferentialAbundance(n_landmarks=300, random_state=0)
density.fit(X[~treated], X[treated], ls_factor=0.25)
result = density.predict(X, progress=False)
describe(result)

# %% [markdown]
# Both log densities are returned, and their difference with its variance,
# z-score and `-log10` posterior tail probability (PTP). Its
# `log_fold_change_direction` is kompot 0.8.0's rule, per cell and without
# multiple-testing control: `|log fold change| > log_fold_change_threshold`
# (1) and PTP `< ptp_threshold` (0.05). The FDR that `kompot.tl` adds for
# this method comes from refits with permuted labels, which the class does
# not run.

# %%
direction = result["log_fold_change_direction"]
print({call: int((direction == call).sum()) for call in ("up", "down", "neutral")},
      f"of which {((direction != 'neutral') & unplanted).sum()} called where nothing was planted")
print("AUROC of |z| for the planted region:",
      round(roc_auc_score(adata.obs["da_region"], np.abs(result["log_fold_change_zscore"])), 3))

# %% [markdown]
# ## `ExpressionModel`: one condition's expression
#
# Fitted to one condition's cells, it predicts smoothed (imputed)
# expression at any cell state, for all genes at once; `std` adds the
# posterior and empirical variance.

# %%
control_model = kompot.ExpressionModel(n_landmarks=300, random_state=0)
control_model.fit(X[~treated], Y[~treated], ls_factor=0.5)
smoothed = control_model.predict(X, progress=False)
std = control_model.std(X, progress=False)
smoothed.shape, std.shape, round(float(control_model.ls_), 3)

# %% [markdown]
# ## `SampleVarianceEstimator`: variance between replicates
#
# One fit per sample (here the three control samples) on shared landmarks;
# `predict` returns, at each cell state, the variance of the samples' fits
# around their mean, per gene (`diag=True`).

# %%
between = kompot.SampleVarianceEstimator()
between.fit(X[~treated], Y[~treated], grouping_vector=samples[~treated], ls_factor=0.5,
            estimator_kwargs={"n_landmarks": 300, "random_state": 0})
variance = between.predict(X, diag=True, progress=False)
between.n_groups, [str(group) for group in between.groups_], variance.shape

# %% [markdown]
# `DifferentialExpression` and `ExpressionModel` build these for you when
# given sample indices.
#
# ## `DifferentialExpression`: two conditions, every gene
#
# Two expression models on one set of landmarks and one length scale, both
# shrunk towards a fit of the pooled cells. With sample indices, each
# condition's between-sample variance is part of the uncertainty.

# %%
start = time.perf_counter()
de = kompot.DifferentialExpression(n_landmarks=300, random_state=0)
de.fit(X[~treated], Y[~treated], X[treated], Y[treated], ls_factor=0.5,
       condition1_sample_indices=samples[~treated],
       condition2_sample_indices=samples[treated])
result = de.predict(X, compute_mahalanobis=True, progress=False)
print(f"fit and predict in {time.perf_counter() - start:.1f} s")
describe(result)

# %% [markdown]
# - cells × genes: `condition1_smoothed`, `condition2_smoothed`, their
#   standard deviations `condition1_std`, `condition2_std` (posterior,
#   empirical and between-sample variance), `fold_change` (condition 2
#   minus condition 1, in the units of the input, here natural-log
#   expression) and `fold_change_zscores`;
# - per gene: `mean_log_fold_change` (mean over the rows of `X_new`),
#   `mahalanobis_distances` (the two conditions' expression at the
#   landmarks compared in units of their joint covariance) and
#   `neg_log10_ptp` (the tail of the mean z-score, a measure of a
#   consistent shift).
#
# The Mahalanobis distance ranks the planted genes first:

# %%
distance = result["mahalanobis_distances"]
truth = adata.var["is_de"].to_numpy()
print("AUROC of the Mahalanobis distance for the planted genes:",
      round(roc_auc_score(truth, distance), 3))
top = np.argsort(distance)[::-1][:10]
pd.DataFrame({"mahalanobis": distance[top], "planted": truth[top]}, index=adata.var_names[top])

# %% [markdown]
# A distance is not yet a test. `compute_fdr(null_distances)` turns the
# distances into p-values, tail and local FDRs against distances computed
# on data where the condition labels carry no information. How that null
# is built matters (permuting single cells freely makes it too narrow when
# the conditions also differ in composition; with replicates whole samples
# must be swapped), and `kompot.tl.compute_differential_expression` builds
# it that way: use it for calls.
#
# ## Fitted models as mellon objects
#
# Each fitted Gaussian process is available as a
# [mellon](https://github.com/settylab/mellon) object under the name kompot
# 0.8.0 used (`density_predictor1`, `function_predictor1`, ...). It is built
# on first access, which imports mellon and JAX (and switches JAX to
# float64 on the CPU for the whole process); kompot's own fitting and
# prediction never do. mellon's methods then work on it, e.g.
# `predictor(X)` for the smoothed expression of condition 1.

# %%
predictor = de.function_predictor1
type(predictor)
