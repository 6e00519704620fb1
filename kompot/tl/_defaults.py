"""Defaults of ``kompot.tl`` that differ from the model classes, with the reason.

The model classes keep the published defaults. ``kompot.tl`` is what most
users run, so its defaults are chosen from the benchmarks
(``benchmarks/RESULTS.md``) for accuracy and speed.
"""

# Multipliers of mellon's length-scale rule. The classes use 10, which smooths
# away population-sized changes when the representation carries isotropic
# noise in many dimensions; see benchmarks/RESULTS.md.
# Densities (DA with method="density"; the default method="ratio" chooses its
# length scale by the Laplace evidence): 0.25. Against 0.5 it raised the mean modified AUROC of the
# Milo-protocol grid from 0.88 to 0.92 (pbmc68k 0.61 -> 0.77) and kept the
# false-call share of FDR-controlled calls on planted toy data at or below
# the nominal level (0.5 let the smoothed fold change bleed past the planted
# regions: 0.08 at q = 0.05), at some loss of power (toy TPR 0.84 -> 0.74).
DA_LS_FACTOR = 0.25
# Expression (DE, smoothing): 0.5, where planted DE genes rank first (AUROC
# 0.99-1.00) and the permutation null is calibrated.
DE_LS_FACTOR = 0.5

# Landmarks shared by both conditions. On the toy manifolds 250, 500 and 1000
# landmarks gave the same DA and DE accuracy (benchmarks/RESULTS.md) while the
# DE Mahalanobis step costs ~m^3 per gene; raise it for atlases with many
# distinct populations (DifferentialAbundance warns when the landmarks do not
# cover the cells at the chosen length scale).
N_LANDMARKS = 500

OBSM_KEY = "DM_EigenVectors"

# Label permutations for the DE and DA nulls; each one refits both conditions.
N_PERMUTATIONS = 5

# Genes per permutation in the DE null, so that its cost stops growing with
# the panel. Beyond the resolution of the 5,000 pooled null distances the
# p-values come from a generalised Pareto tail (kompot/core/fdr.py). On toy
# data with 2,000 genes, 1,000 against all genes: DE with FDR at 10k cells
# 26 s instead of 39 s; without replicates about the same TPR at q = 0.05
# (0.81 vs 0.83, FDP 0.05 both); with 3 vs 3 samples the tail is reached
# sooner and TPR at q = 0.05 drops (0.30 vs 0.49; q = 0.10: 0.60 vs 0.66),
# so with replicates and a few thousand genes n_null_genes=None is worth its
# time.
N_NULL_GENES = 1000
