import numpy as np
import pytest

from kompot.core.moderation import VariancePrior, fit_variance_prior, moderated_variance


def _draw(rng, n, d, prior_df, prior_scale, reference):
    """Variance estimates with d df around true variances from a scaled inverse chi-square."""
    true = reference * (prior_scale if np.isinf(prior_df)
                        else prior_scale * prior_df / rng.chisquare(prior_df, n))
    return true * rng.chisquare(d, n) / d


@pytest.mark.parametrize("prior_df", [3.0, 10.0])
def test_the_prior_is_recovered_from_many_estimates(prior_df):
    rng = np.random.default_rng(0)
    n = 200_000
    d = rng.choice([2.0, 3.0, 4.0], n)
    reference = rng.uniform(0.5, 2.0, n)
    s2 = _draw(rng, n, d, prior_df, 0.3, reference)
    prior = fit_variance_prior(s2 / reference, d)
    # Moment estimates from 2e5 draws: within 10 % of the truth.
    assert prior.df == pytest.approx(prior_df, rel=0.1)
    assert prior.scale == pytest.approx(0.3, rel=0.1)


def test_equal_true_variances_give_an_exact_prior():
    rng = np.random.default_rng(1)
    n = 50_000
    s2 = 0.7 * rng.chisquare(4, n) / 4
    prior = fit_variance_prior(s2, 4.0)
    assert np.isinf(prior.df)
    assert prior.scale == pytest.approx(0.7, rel=0.02)
    post, df = moderated_variance(s2[:5], 4.0, prior, reference=2.0)
    np.testing.assert_allclose(post, 2.0 * prior.scale)
    assert np.all(np.isinf(df))


def test_moderated_variance_is_the_df_weighted_mean():
    prior = VariancePrior(df=6.0, scale=0.5)
    s2, d, ref = np.array([1.0, 4.0]), np.array([2.0, 3.0]), np.array([1.0, 3.0])
    post, df = moderated_variance(s2, d, prior, ref)
    np.testing.assert_allclose(post, [(6 * 0.5 + 2 * 1.0) / 8, (6 * 1.5 + 3 * 4.0) / 9])
    np.testing.assert_allclose(df, [8.0, 9.0])


def test_moderated_t_is_calibrated_under_its_model():
    # Under the model the moderated t has d0 + d df exactly (Smyth 2004):
    # the share of |t| beyond its 1 % quantile is 1 % up to Monte Carlo error
    # (n = 1e5: sd 0.0003; allowance 0.002).
    from scipy import stats

    rng = np.random.default_rng(2)
    n, d = 100_000, 3.0
    true = 0.4 * 5.0 / rng.chisquare(5.0, n)
    s2 = true * rng.chisquare(d, n) / d
    effect = rng.normal(0, np.sqrt(true))
    prior = fit_variance_prior(s2, d)
    post, df = moderated_variance(s2, d, prior)
    p = 2 * stats.t.sf(np.abs(effect) / np.sqrt(post), df)
    assert abs(np.mean(p <= 0.01) - 0.01) < 0.002


def test_too_few_estimates_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        fit_variance_prior(np.array([1.0, np.nan, 0.0]), 3.0)
