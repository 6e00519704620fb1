"""The model classes expose exactly the seed's API (names, defaults, properties, keys).

The table below is written from the seed reference; a drifting signature fails here.
"""

import inspect

import numpy as np
import pytest

import kompot

R = inspect.Parameter.empty  # required

SEED = {
    "DifferentialAbundance": {
        "__init__": dict(log_fold_change_threshold=1.0, ptp_threshold=0.05, n_landmarks=None,
                         use_sample_variance=None, eps=1e-12, jit_compile=False,
                         density_predictor1=None, density_predictor2=None,
                         variance_predictor1=None, variance_predictor2=None,
                         random_state=None, batch_size=None),
        "fit": dict(X_condition1=R, X_condition2=R, landmarks=None, ls_factor=10.0,
                    condition1_sample_indices=None, condition2_sample_indices=None,
                    sample_estimator_ls=None, sync_parameters=False,
                    allow_single_condition_variance=False),
        "predict": dict(X_new=R, log_fold_change_threshold=None, ptp_threshold=None,
                        progress=True),
    },
    "DifferentialExpression": {
        "__init__": dict(n_landmarks=None, use_sample_variance=None, use_empirical_variance=True,
                         eps=1e-08, jit_compile=False, function_predictor1=None,
                         function_predictor2=None, variance_predictor1=None,
                         variance_predictor2=None, obs_variance_predictor1=None,
                         obs_variance_predictor2=None, random_state=None, batch_size=500,
                         store_arrays_on_disk=None, disk_storage_dir=None,
                         max_memory_ratio=0.8, model1=None, model2=None),
        "fit": dict(X_condition1=R, y_condition1=R, X_condition2=R, y_condition2=R, sigma=1.0,
                    ls=None, ls_factor=10.0, landmarks=None, sample_estimator_ls=None,
                    condition1_sample_indices=None, condition2_sample_indices=None,
                    allow_single_condition_variance=False),
        "predict": dict(X_new=R, compute_mahalanobis=False, progress=True, use_landmarks=True,
                        landmarks_override=None),
        "compute_mahalanobis_distances": dict(X=R, fold_change=None, use_landmarks=True,
                                              landmarks_override=None, progress=True),
        "compute_fdr": dict(null_mahalanobis=R, threshold=0.05, gene_names=None),
    },
    "ExpressionModel": {
        "__init__": dict(n_landmarks=None, use_empirical_variance=True, eps=1e-08,
                         random_state=None, batch_size=500, store_arrays_on_disk=None,
                         disk_storage_dir=None, function_predictor=None,
                         obs_variance_predictor=None, variance_predictor=None),
        "fit": dict(X=R, y=R, sigma=1.0, ls=None, ls_factor=10.0, landmarks=None,
                    sample_indices=None, sample_estimator_ls=None,
                    allow_single_condition_variance=False),
        "covariance": dict(X=R, diag=True, batch_size=None, progress=True),
        "obs_variance": dict(X=R, batch_size=None, progress=True),
        "predict": dict(X=R, batch_size=None, progress=True),
        "sample_variance": dict(X=R, diag=True, batch_size=None, progress=True),
        "std": dict(X=R, batch_size=None, progress=True),
        "total_variance": dict(X=R, diag=True, batch_size=None, progress=True),
    },
    "SampleVarianceEstimator": {
        "__init__": dict(eps=1e-08, jit_compile=True, estimator_type="function",
                         store_arrays_on_disk=None, disk_storage_dir=None,
                         dask_num_workers=None),
        "fit": dict(X=R, Y=None, grouping_vector=None, min_cells=2, ls_factor=10.0,
                    estimator_kwargs=None),
        "predict": dict(X_new=R, diag=False, progress=True),
    },
}

PROPERTIES = {
    "DifferentialExpression": ["empirical_variance_predictor1", "empirical_variance_predictor2",
                               "expression_estimator_condition1",
                               "expression_estimator_condition2", "function_predictor1",
                               "function_predictor2", "variance_predictor1",
                               "variance_predictor2"],
    "ExpressionModel": ["cov_func", "has_empirical_variance", "has_sample_variance",
                        "landmarks", "ls", "predictor", "sigma"],
}


@pytest.mark.parametrize(
    ("cls_name", "method"), [(c, m) for c, methods in SEED.items() for m in methods]
)
def test_signature_matches_seed(cls_name, method):
    cls = getattr(kompot, cls_name)
    params = inspect.signature(getattr(cls, method)).parameters
    expected = SEED[cls_name][method]
    names = [p for p in params if p != "self" and params[p].kind is not params[p].VAR_KEYWORD]
    assert names == list(expected), f"{cls_name}.{method} parameters differ from the seed"
    for name, default in expected.items():
        assert params[name].default == default or (
            params[name].default is default
        ), f"{cls_name}.{method}({name}) default {params[name].default!r} != {default!r}"


@pytest.mark.parametrize(("cls_name", "prop"), [(c, p) for c, ps in PROPERTIES.items() for p in ps])
def test_properties_are_properties(cls_name, prop):
    assert isinstance(inspect.getattr_static(getattr(kompot, cls_name), prop), property)


def test_da_predict_keys(blobs):
    X1, X2 = blobs
    out = kompot.DifferentialAbundance(n_landmarks=50, random_state=0).fit(X1, X2).predict(
        X1[:10], progress=False
    )
    assert set(out) == {"log_density_condition1", "log_density_condition2", "log_fold_change",
                        "log_fold_change_uncertainty", "log_fold_change_zscore",
                        "neg_log10_fold_change_ptp", "log_fold_change_direction"}
    assert all(len(v) == 10 for v in out.values())


def test_de_predict_keys(blobs):
    X1, X2 = blobs
    rng = np.random.default_rng(0)
    Y1, Y2 = rng.normal(size=(len(X1), 3)), rng.normal(size=(len(X2), 3))
    de = kompot.DifferentialExpression(n_landmarks=40, random_state=0).fit(X1, Y1, X2, Y2)
    out = de.predict(X1[:10], compute_mahalanobis=True, progress=False)
    assert set(out) == {"condition1_smoothed", "condition2_smoothed", "condition1_std",
                        "condition2_std", "fold_change", "mean_log_fold_change",
                        "mahalanobis_distances",
                        # kompot 0.8.0's extra keys, beyond the seed's list
                        "fold_change_zscores", "neg_log10_ptp"}
    assert out["fold_change"].shape == (10, 3)
    assert out["mean_log_fold_change"].shape == (3,)
    assert out["mahalanobis_distances"].shape == (3,)
    frame = de.compute_fdr(rng.chisquare(5, 500) ** 0.5, gene_names=["a", "b", "c"])
    assert list(frame.columns) == ["mahalanobis", "pvalue", "local_fdr", "tail_fdr", "is_de"]
    assert list(frame.index) == ["a", "b", "c"]
