"""Covariate effects within strata, against a dense least-squares reference."""

import numpy as np
import pytest
from scipy import sparse

from kompot.core.covariates import centred_within, covariate_effects, remove_covariate_effects


def _problem(seed=0, n=300, genes=7):
    rng = np.random.default_rng(seed)
    strata = rng.integers(0, 6, size=n)
    Z = np.column_stack([rng.integers(0, 2, size=n), rng.normal(size=n)]).astype(float)
    Y = rng.normal(size=(n, genes)) + 3 * strata[:, None] + Z @ rng.normal(size=(2, genes))
    return Y, Z, strata


def test_effects_equal_least_squares_with_one_mean_per_stratum():
    Y, Z, strata = _problem()
    onehot = (strata[:, None] == np.unique(strata)[None, :]).astype(float)
    full = np.linalg.lstsq(np.hstack([onehot, Z]), Y, rcond=None)[0]
    gamma = covariate_effects([Y[:120], Y[120:]], Z, strata, batch_size=50)
    np.testing.assert_allclose(gamma, full[-2:], rtol=1e-10, atol=1e-12)


def test_sparse_parts_give_the_dense_effects():
    Y, Z, strata = _problem(seed=1)
    Y = np.where(Y > 2, Y, 0.0)
    dense = covariate_effects([Y], Z, strata)
    split = covariate_effects([sparse.csr_matrix(Y[:100]), sparse.csr_matrix(Y[100:])], Z, strata)
    np.testing.assert_allclose(split, dense, rtol=1e-12)


def test_removal_keeps_the_mean_and_leaves_no_covariate_signal():
    Y, Z, strata = _problem(seed=2)
    gamma = covariate_effects([Y], Z, strata)
    adjusted = remove_covariate_effects(Y, Z, gamma, Z.mean(axis=0))
    np.testing.assert_allclose(adjusted.mean(axis=0), Y.mean(axis=0), atol=1e-10)
    # Within strata the adjusted expression is orthogonal to the covariates.
    np.testing.assert_allclose(centred_within(Z, strata).T @ adjusted, 0, atol=1e-8)


def test_a_covariate_constant_within_every_stratum_is_refused():
    Y, Z, strata = _problem()
    nested = (strata % 2).astype(float)[:, None]
    with pytest.raises(ValueError, match=r"\['batch'\].*nested"):
        covariate_effects([Y], np.hstack([Z, nested]), strata, names=["a", "b", "batch"])


def test_repeated_covariates_are_refused():
    Y, Z, strata = _problem()
    with pytest.raises(ValueError, match="linearly dependent"):
        covariate_effects([Y], np.hstack([Z, 2 * Z[:, :1]]), strata)
