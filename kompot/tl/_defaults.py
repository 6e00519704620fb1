"""Defaults of ``kompot.tl`` that differ from the model classes, with the reason.

The model classes keep the published defaults. ``kompot.tl`` is what most
users run, so its defaults are chosen from the benchmarks
(``benchmarks/RESULTS.md``) for accuracy and speed.
"""

# Multiplier of mellon's length-scale rule. The classes use 10, which smooths
# away population-sized abundance changes when the representation carries
# isotropic noise in many dimensions; see benchmarks/RESULTS.md.
LS_FACTOR = 0.5

# Landmarks shared by both conditions. On the toy manifolds 250, 500 and 1000
# landmarks gave the same DA and DE accuracy (benchmarks/RESULTS.md) while the
# DE Mahalanobis step costs ~m^3 per gene; raise it for atlases with many
# distinct populations (DifferentialAbundance warns when the landmarks do not
# cover the cells at the chosen length scale).
N_LANDMARKS = 500

OBSM_KEY = "DM_EigenVectors"

# Label permutations for the DE and DA nulls; each one refits both conditions.
N_PERMUTATIONS = 5
