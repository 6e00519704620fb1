"""Results do not depend on the order of the cells (rows of adata)."""

import numpy as np
import pytest
from tl_testing import C1, C2, FAST

import kompot.tl
from kompot._keys import DAKeys, DEKeys

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


def test_da_density_fdr_and_calls_do_not_depend_on_row_order(small):
    # The density method's permutation null is drawn on the cells in a
    # canonical order (kompot.models.null.abundance_null_zscores); drawn on
    # the given order, 99 % of these FDRs differed.
    a = small.copy()
    order = np.random.default_rng(7).permutation(a.n_obs)
    b = small[order].copy()
    kw = dict(FAST, method="density", n_permutations=2)
    kompot.tl.compute_differential_abundance(a, "condition", C1, C2, **kw)
    kompot.tl.compute_differential_abundance(b, "condition", C1, C2, **kw)
    keys = DAKeys("kompot_da", C1, C2)
    for name in (keys.lfc, keys.zscore, keys.lfc_fdr):
        np.testing.assert_allclose(b.obs[name], a.obs[name].to_numpy()[order], rtol=1e-9,
                                   atol=1e-9, err_msg=name)
    # The column a user reads: the same call for every cell.
    np.testing.assert_array_equal(b.obs[keys.direction].astype(str),
                                  a.obs[keys.direction].astype(str).to_numpy()[order])
    assert (a.obs[keys.direction] != "neutral").any()  # the calls are not trivially equal
