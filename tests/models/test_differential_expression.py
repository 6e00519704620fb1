import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import kompot


@pytest.fixture(scope="module")
def de_toy(toy_split):
    t = toy_split
    de = kompot.DifferentialExpression(n_landmarks=150, random_state=0)
    # ls_factor=0.5 is kompot.tl's default (see kompot/tl/_defaults.py)
    de.fit(t["X1"], t["Y1"], t["X2"], t["Y2"], ls_factor=0.5)
    return de, de.predict(t["X"], compute_mahalanobis=True, progress=False)


def test_planted_genes_rank_first(toy, de_toy):
    _, out = de_toy
    is_de = toy.var["is_de"].to_numpy()
    assert roc_auc_score(is_de, out["mahalanobis_distances"]) >= 0.95
    true = toy.var["true_lfc"].to_numpy()
    # inside the region where they were planted, the fold changes have the planted sign
    region = toy.obs["de_region"].to_numpy()
    local = out["fold_change"][region].mean(axis=0)
    assert np.all(np.sign(local[is_de]) == np.sign(true[is_de]))


def test_outputs_are_consistent(de_toy, toy_split):
    de, out = de_toy
    np.testing.assert_allclose(out["fold_change"],
                               out["condition2_smoothed"] - out["condition1_smoothed"])
    np.testing.assert_allclose(out["mean_log_fold_change"], out["fold_change"].mean(0))
    std1 = de.model1.std(toy_split["X"][:30], progress=False)
    np.testing.assert_allclose(out["condition1_std"][:30], std1)
    assert np.all(out["condition1_std"] > 0)
    np.testing.assert_allclose(de.mahalanobis_distances, out["mahalanobis_distances"])


def test_swapping_conditions(toy_split):
    t = toy_split
    kw = dict(n_landmarks=80, random_state=0)
    fit = dict(ls_factor=2.0, condition1_sample_indices=None)
    a = kompot.DifferentialExpression(**kw).fit(t["X1"], t["Y1"][:, :30], t["X2"], t["Y2"][:, :30], **fit)
    b = kompot.DifferentialExpression(**kw).fit(t["X2"], t["Y2"][:, :30], t["X1"], t["Y1"][:, :30], **fit)
    ra = a.predict(t["X"], compute_mahalanobis=True, progress=False)
    rb = b.predict(t["X"], compute_mahalanobis=True, progress=False)
    np.testing.assert_allclose(ra["fold_change"], -rb["fold_change"], atol=1e-8)
    np.testing.assert_allclose(ra["mahalanobis_distances"], rb["mahalanobis_distances"], rtol=1e-8)


def test_swapping_conditions_with_replicates(toy_split):
    t = toy_split
    kw = dict(n_landmarks=60, random_state=0)
    a = kompot.DifferentialExpression(**kw).fit(
        t["X1"], t["Y1"][:, :20], t["X2"], t["Y2"][:, :20], ls_factor=2.0,
        condition1_sample_indices=t["s1"], condition2_sample_indices=t["s2"])
    b = kompot.DifferentialExpression(**kw).fit(
        t["X2"], t["Y2"][:, :20], t["X1"], t["Y1"][:, :20], ls_factor=2.0,
        condition1_sample_indices=t["s2"], condition2_sample_indices=t["s1"])
    ra = a.predict(t["X"][:100], compute_mahalanobis=True, progress=False)
    rb = b.predict(t["X"][:100], compute_mahalanobis=True, progress=False)
    np.testing.assert_allclose(ra["fold_change"], -rb["fold_change"], atol=1e-8)
    np.testing.assert_allclose(ra["mahalanobis_distances"], rb["mahalanobis_distances"], rtol=1e-8)
    np.testing.assert_allclose(ra["condition1_std"], rb["condition2_std"], rtol=1e-8)


def test_mahalanobis_against_dense_reference(toy_split):
    """The distance equals a dense numpy solve of the documented covariance."""
    t = toy_split
    de = kompot.DifferentialExpression(n_landmarks=40, random_state=0).fit(
        t["X1"], t["Y1"][:, :8], t["X2"], t["Y2"][:, :8], ls_factor=2.0,
        condition1_sample_indices=t["s1"], condition2_sample_indices=t["s2"])
    D = de.compute_mahalanobis_distances(t["X"], progress=False)
    U = de.landmarks
    m1, m2 = de.model1, de.model2
    # independent pieces: mellon predictors for the posterior covariance,
    # per-sample predictors for the replicate covariance
    A = (np.asarray(m1.predictor.covariance(U, diag=False))
         + np.asarray(m2.predictor.covariance(U, diag=False)) + de.eps * np.eye(len(U)))
    delta = np.asarray(m2.predictor(U)) - np.asarray(m1.predictor(U))
    v = m1.obs_variance(U, progress=False) + m2.obs_variance(U, progress=False)
    S = [np.asarray(m.variance_estimator.predict(U, diag=False, progress=False)) for m in (m1, m2)]
    for g in range(8):
        M = A + S[0][:, :, g] + S[1][:, :, g] + np.diag(v[:, g])
        expected = np.sqrt(delta[:, g] @ np.linalg.solve(M, delta[:, g]))
        assert D[g] == pytest.approx(expected, rel=1e-6)


def test_given_models_are_used_as_given(toy_split):
    t = toy_split
    m1 = kompot.ExpressionModel(n_landmarks=50, random_state=0).fit(t["X1"], t["Y1"][:, :5])
    m2 = kompot.ExpressionModel(n_landmarks=50, random_state=0).fit(t["X2"], t["Y2"][:, :5])
    de = kompot.DifferentialExpression(model1=m1, model2=m2)
    de.fit(t["X1"][:10], t["Y1"][:10, :5] * 0, t["X2"][:10], t["Y2"][:10, :5] * 0)
    out = de.predict(t["X"][:20], progress=False)
    np.testing.assert_allclose(out["condition1_smoothed"], m1.predict(t["X"][:20], progress=False))


def test_function_predictors_are_used_as_given(de_toy, toy_split):
    de, _ = de_toy
    reuse = kompot.DifferentialExpression(
        function_predictor1=de.function_predictor1, function_predictor2=de.function_predictor2,
        use_empirical_variance=False)
    t = toy_split
    reuse.fit(t["X1"], t["Y1"], t["X2"], t["Y2"], ls_factor=2.0)
    out = reuse.predict(t["X"][:25], progress=False)
    np.testing.assert_allclose(out["condition2_smoothed"],
                               de.model2.predict(t["X"][:25], progress=False), atol=1e-10)


def test_replicates_need_both_conditions_or_permission(toy_split):
    t = toy_split
    de = kompot.DifferentialExpression(n_landmarks=30, random_state=0)
    single = np.zeros(len(t["X1"]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        de.fit(t["X1"], t["Y1"][:, :3], t["X2"], t["Y2"][:, :3],
               condition1_sample_indices=single, condition2_sample_indices=t["s2"])
    de = kompot.DifferentialExpression(n_landmarks=30, random_state=0).fit(
        t["X1"], t["Y1"][:, :3], t["X2"], t["Y2"][:, :3], condition1_sample_indices=single,
        condition2_sample_indices=t["s2"], allow_single_condition_variance=True)
    assert de.variance_predictor1 is de.variance_predictor2
    assert np.isfinite(de.predict(t["X"][:10], compute_mahalanobis=True, progress=False)[
        "mahalanobis_distances"]).all()


def test_compute_fdr_needs_distances_first():
    with pytest.raises(ValueError, match="No Mahalanobis distances"):
        kompot.DifferentialExpression().compute_fdr(np.ones(10))


def test_mismatched_genes_raise(toy_split):
    t = toy_split
    with pytest.raises(ValueError, match="same genes"):
        kompot.DifferentialExpression().fit(t["X1"], t["Y1"][:, :3], t["X2"], t["Y2"][:, :4])


def test_a_state_only_one_condition_reaches_does_not_make_genes_de():
    # Treated cells alone form a separate cluster (a state control never
    # reaches). Where control has no cells its fit must revert to what the
    # pooled data show, not to 0: otherwise every gene expressed in that
    # cluster gets a fold change of minus its expression there.
    toy = kompot.datasets.toy(n_cells=2000, n_genes=100, seed=1, replicate_effects=False)
    X = toy.obsm["DM_EigenVectors"].copy()
    treated = (toy.obs["condition"] == "treated").to_numpy()
    enriched = toy.obs["true_log_density_ratio"].to_numpy() > 1.0
    keep = ~(enriched & ~treated)
    X[enriched, 0] += 20.0  # far beyond any length scale
    X, Y, treated, enriched = X[keep], np.asarray(toy.X)[keep], treated[keep], enriched[keep]
    is_de = toy.var["is_de"].to_numpy()
    de = kompot.DifferentialExpression(n_landmarks=200, random_state=0)
    de.fit(X[~treated], Y[~treated], X[treated], Y[treated], ls_factor=0.5)
    out = de.predict(X[enriched], compute_mahalanobis=False, progress=False)
    expression = Y[enriched][:, ~is_de].mean()
    assert expression > 1.0
    assert np.abs(out["fold_change"][:, ~is_de]).mean() < 0.1 * expression
    distances = de.compute_mahalanobis_distances(de.landmarks, progress=False)
    assert roc_auc_score(is_de, distances) >= 0.95
    # With a constant prior mean of 0 (mu=0) the same data go wrong.
    zero = kompot.DifferentialExpression(n_landmarks=200, random_state=0)
    zero.fit(X[~treated], Y[~treated], X[treated], Y[treated], ls_factor=0.5, mu=0.0)
    out0 = zero.predict(X[enriched], compute_mahalanobis=False, progress=False)
    assert np.abs(out0["fold_change"][:, ~is_de]).mean() > 0.5 * expression


def test_condition_fits_use_the_pooled_fit_as_prior_mean(toy_split):
    from kompot.core.function_gp import fit_function
    from kompot.core.kernel import matern52

    t = toy_split
    de = kompot.DifferentialExpression(n_landmarks=100, random_state=0)
    de.fit(t["X1"], t["Y1"], t["X2"], t["Y2"], ls_factor=0.5)
    cov = matern52(de.model1.ls)
    X = np.vstack([t["X1"], t["X2"]])
    pooled = fit_function(X, np.vstack([t["Y1"], t["Y2"]]), de.landmarks, cov)
    np.testing.assert_allclose(de.prior_mean_weights, pooled.weights, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(de.prior_variance_weights, pooled.variance_weights, rtol=1e-8,
                               atol=1e-10)
    alone = kompot.ExpressionModel(n_landmarks=None)
    alone.fit(t["X1"], t["Y1"], ls=de.model1.ls, landmarks=de.landmarks,
              mean_weights=pooled.weights, variance_mean_weights=pooled.variance_weights)
    np.testing.assert_allclose(de.model1.predict(t["X"][:50], progress=False),
                               alone.predict(t["X"][:50], progress=False), rtol=1e-8, atol=1e-10)
    # An explicit constant prior mean switches the pooled prior off.
    plain = kompot.DifferentialExpression(n_landmarks=100, random_state=0)
    plain.fit(t["X1"], t["Y1"], t["X2"], t["Y2"], ls_factor=0.5, mu=0.0)
    assert plain.prior_mean_weights is None
