"""Results do not depend on the order of the cells (rows of adata)."""

import numpy as np
import pytest
from tl_testing import C1, C2, FAST

import kompot.tl
from kompot._keys import DEKeys

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

