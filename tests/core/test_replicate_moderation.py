import numpy as np
import pytest

from kompot.core.replicate_moderation import (
    ReplicatePrior,
    fit_replicate_prior,
    moderated_terms,
    reference_variance,
)


def _factors(rng, n_genes, m, directions, per_condition, variances):
    """Replicate factors as the models build them: samples centred per condition, / sqrt(K - 1).

    Each sample deviates by ``sqrt(variance_g) * Q z`` with ``Q`` (m, directions)
    orthonormal, so every gene's covariance has the same shape, ``P = (m / r) Q Q^T``.
    """
    Q, _ = np.linalg.qr(rng.normal(size=(m, directions)))
    blocks = []
    for _ in range(2):
        z = rng.normal(size=(n_genes, directions, per_condition))
        dev = np.einsum("mr,grk->gmk", Q, z) * np.sqrt(variances * m / directions)[:, None, None]
        dev -= dev.mean(axis=2, keepdims=True)
        blocks.append(dev / np.sqrt(per_condition - 1))
    return np.concatenate(blocks, axis=2)


@pytest.mark.parametrize("prior_df", [4.0, 12.0])
def test_the_prior_is_recovered_from_replicate_factors(prior_df):
    rng = np.random.default_rng(0)
    n_genes, directions, per_condition = 20_000, 3, 3
    true = 0.2 * prior_df / rng.chisquare(prior_df, n_genes)
    low_rank = _factors(rng, n_genes, 40, directions, per_condition, true)
    prior = fit_replicate_prior(low_rank, np.ones(n_genes), rank=2 * (per_condition - 1))
    # One trace pools rank x directions = 12 chi-square degrees of freedom.
    assert prior.residual_df == pytest.approx(12.0, rel=0.02)
    # Moment estimates from 2e4 genes: within 15 % of the truth.
    assert prior.df == pytest.approx(prior_df, rel=0.15)
    # B_g B_g^T sums both conditions' replicate covariances: twice one condition's.
    assert prior.scale == pytest.approx(2 * 0.2, rel=0.1)
    # The shared shape has trace m and spans the few directions the samples vary in.
    assert prior.shape.shape == (40, 40)
    assert np.trace(prior.shape) == pytest.approx(40.0, rel=1e-10)
    assert np.linalg.matrix_rank(prior.shape, tol=1e-8) == directions


def test_genes_with_one_true_variance_are_shrunk_fully():
    rng = np.random.default_rng(1)
    low_rank = _factors(rng, 5_000, 30, 2, 3, np.full(5_000, 0.5))
    prior = fit_replicate_prior(low_rank, np.full(5_000, 2.0), rank=4)
    assert np.isinf(prior.df) and prior.weight == 0.0
    assert prior.scale == pytest.approx(2 * 0.5 / 2.0, rel=0.05)


def test_moderated_terms_are_the_weighted_covariance():
    rng = np.random.default_rng(2)
    G, m, K = 4, 7, 6
    low_rank = rng.normal(size=(G, m, K))
    reference = rng.uniform(0.5, 2.0, G)
    F = rng.normal(size=(m, m))
    shape = F @ F.T
    prior = ReplicatePrior(df=6.0, scale=0.3, residual_df=10.0, shape=shape)
    own, (P, c) = moderated_terms(low_rank, reference, prior)
    w = 10.0 / 16.0
    for g in range(G):
        expected = w * low_rank[g] @ low_rank[g].T + (1 - w) * 0.3 * reference[g] * shape
        np.testing.assert_allclose(own[g] @ own[g].T + c[g] * P, expected, rtol=1e-12,
                                   atol=1e-12)
    own, (P, c) = moderated_terms(low_rank, reference, ReplicatePrior(np.inf, 0.3, 10.0, shape))
    assert own is None
    np.testing.assert_allclose(c[1] * P, 0.3 * reference[1] * shape, rtol=1e-12)


def test_reference_is_the_mean_empirical_variance_with_a_floor():
    diag = np.array([[1.0, 0.0, 4.0], [3.0, 0.0, 2.0]])
    np.testing.assert_allclose(reference_variance(diag, 3), [2.0, 2.0, 3.0])
    np.testing.assert_allclose(reference_variance(None, 2), [1.0, 1.0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="rank 1 or more"):
        fit_replicate_prior(np.ones((3, 4, 2)), np.ones(3), rank=0)
    with pytest.raises(ValueError, match="at least 2 genes"):
        fit_replicate_prior(np.ones((1, 4, 2)), np.ones(1), rank=1)
    with pytest.raises(ValueError, match="samples differ"):
        fit_replicate_prior(np.zeros((3, 4, 2)), np.ones(3), rank=1)
