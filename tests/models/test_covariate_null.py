"""The permutation null with covariates: splits that line up with a covariate are left out."""

import numpy as np

import kompot
from kompot.core.covariates import identifiable
from kompot.models import gene_blocks


def test_null_keeps_only_splits_whose_covariate_effect_can_be_learned():
    adata = kompot.datasets.with_batch_effect(kompot.datasets.toy(600, 20, seed=1), n_genes=4)
    cond = (adata.obs["condition"] == "treated").to_numpy()
    X = np.asarray(adata.obsm["DM_EigenVectors"])
    Y = np.asarray(adata.X, np.float64)
    z = (adata.obs["batch"] == "B").to_numpy(float)[:, None]
    samples = adata.obs["sample"].astype(str).to_numpy()
    plan = gene_blocks.plan_null(
        X[~cond], Y[~cond], X[cond], Y[cond], (samples[~cond], samples[cond]), X[::10],
        n_permutations=9, n_null_genes=None, random_state=0, covariates=(z[~cond], z[cond]))
    # 3 vs 3 samples: 9 distinct splits, of which the one putting batch A
    # ({control_1, control_2, treated_1}) against batch B cannot be adjusted.
    assert len(plan.partitions) == 8
    for mask, s1, _ in plan.partitions:
        assert identifiable(plan.covariates, plan.state_groups * 2 + ~mask)
        assert set(s1) not in ({"control_1", "control_2", "treated_1"},
                               {"control_3", "treated_2", "treated_3"})
