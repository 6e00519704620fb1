"""Results do not depend on the order of the cells (rows of adata)."""

import numpy as np
import pytest
from tl_testing import C1, C2, FAST

import kompot.tl
from kompot._keys import DEKeys
from kompot.models.null import abundance_null_zscores

KEYS = DEKeys("kompot_de", C1, C2)


@pytest.mark.parametrize("sample_col", [None, "sample"])
def test_de_pvalues_do_not_depend_on_row_order(small, sample_col):
    a = small.copy()
    order = np.random.default_rng(7).permutation(a.n_obs)
    b = small[order].copy()
    kw = dict(FAST, n_permutations=3, sample_col=sample_col)
    kompot.tl.compute_differential_expression(a, "condition", C1, C2, **kw)
    kompot.tl.compute_differential_expression(b, "condition", C1, C2, **kw)
    for field in ("mahalanobis", "pvalue", "tail_fdr", "local_fdr"):
        name = getattr(KEYS, field)
        np.testing.assert_allclose(b.var[name], a.var[name], rtol=1e-12, atol=1e-12,
                                   err_msg=field)
    np.testing.assert_array_equal(b.var[KEYS.is_de], a.var[KEYS.is_de])
    fc = KEYS.fold_change
    np.testing.assert_allclose(b.layers[fc], a.layers[fc][order], rtol=1e-6, atol=1e-6)


def test_da_null_does_not_depend_on_row_order(small):
    X = small.obsm["DM_EigenVectors"]
    treated = (small.obs["condition"] == C2).to_numpy()
    X1, X2 = X[~treated], X[treated]
    rng = np.random.default_rng(3)
    p1, p2 = rng.permutation(len(X1)), rng.permutation(len(X2))
    kw = dict(n_permutations=2, da_kwargs={"n_landmarks": 50, "random_state": 0},
              fit_kwargs={"ls_factor": 1.0})
    a = abundance_null_zscores(X1, X2, X[:50], **kw)
    b = abundance_null_zscores(X1[p1], X2[p2], X[:50], **kw)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
