"""scikit-learn's estimator contract for the four model classes.

Constructor arguments stay as given, ``fit`` forgets earlier fits (a refit
equals a fresh fit, also with and then without replicates), models used
before ``fit`` raise ``ValueError`` naming the fix, and parameters that do
nothing warn when set.
"""

import inspect
import warnings

import numpy as np
import pytest

import kompot
from kompot import KompotWarning

TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def small(toy_split):
    """300 + 300 cells, 5 genes, 3 replicate samples per condition, and other data to fit first."""
    t = toy_split
    rng = np.random.default_rng(3)
    i1 = np.sort(rng.choice(len(t["X1"]), 300, replace=False))
    i2 = np.sort(rng.choice(len(t["X2"]), 300, replace=False))
    d = {"X1": t["X1"][i1], "X2": t["X2"][i2], "Y1": t["Y1"][i1, :5], "Y2": t["Y2"][i2, :5],
         "s1": t["s1"][i1], "s2": t["s2"][i2], "X": t["X"][:80]}
    # "Other" data: a different subset, shifted, for the first of two fits.
    d["oX1"], d["oX2"] = t["X1"][-250:] + 0.01, t["X2"][-250:] - 0.01
    d["oY1"], d["oY2"] = t["Y1"][-250:, :5] * 2, t["Y2"][-250:, :5] + 1
    d["os1"], d["os2"] = t["s1"][-250:], t["s2"][-250:]
    return d


def _constructor_arguments(obj) -> dict:
    """What the constructor stored for each of its parameters (public or, if shadowed, ``_name``)."""
    names = [p for p in inspect.signature(type(obj).__init__).parameters if p != "self"]
    return {n: obj.__dict__[n] if n in obj.__dict__ else obj.__dict__[f"_{n}"] for n in names}


def _assert_same_arguments(before: dict, obj) -> None:
    after = _constructor_arguments(obj)
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert after[name] is value, f"fit changed the constructor argument {name}"


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if np.asarray(a[key]).dtype == object:
            assert list(a[key]) == list(b[key]), key
        else:
            np.testing.assert_allclose(a[key], b[key], **TOL, err_msg=key)


# ---------------------------------------------------------------- refits

def test_da_refit_equals_fresh_fit(small):
    d = small
    kw = dict(n_landmarks=60, random_state=0)
    model = kompot.DifferentialAbundance(**kw)
    arguments = _constructor_arguments(model)
    model.fit(d["oX1"], d["oX2"], condition1_sample_indices=d["os1"],
              condition2_sample_indices=d["os2"])
    model.fit(d["X1"], d["X2"])
    _assert_same_arguments(arguments, model)
    assert model.use_sample_variance_ is False and model.variance_predictor1 is None
    fresh = kompot.DifferentialAbundance(**kw).fit(d["X1"], d["X2"])
    _close(model.predict(d["X"], progress=False), fresh.predict(d["X"], progress=False))
    # and with replicates after a fit without them
    model.fit(d["X1"], d["X2"], condition1_sample_indices=d["s1"], condition2_sample_indices=d["s2"])
    fresh = kompot.DifferentialAbundance(**kw).fit(
        d["X1"], d["X2"], condition1_sample_indices=d["s1"], condition2_sample_indices=d["s2"])
    _close(model.predict(d["X"], progress=False), fresh.predict(d["X"], progress=False))
    _assert_same_arguments(arguments, model)


def test_de_refit_equals_fresh_fit(small):
    d = small
    kw = dict(n_landmarks=40, random_state=0)
    model = kompot.DifferentialExpression(**kw)
    arguments = _constructor_arguments(model)
    model.fit(d["oX1"], d["oY1"], d["oX2"], d["oY2"], condition1_sample_indices=d["os1"],
              condition2_sample_indices=d["os2"])
    model.fit(d["X1"], d["Y1"], d["X2"], d["Y2"])
    _assert_same_arguments(arguments, model)
    assert model.variance_predictor1 is None and model.variance_predictor2 is None
    fresh = kompot.DifferentialExpression(**kw).fit(d["X1"], d["Y1"], d["X2"], d["Y2"])
    _close(model.predict(d["X"], compute_mahalanobis=True, progress=False),
           fresh.predict(d["X"], compute_mahalanobis=True, progress=False))
    samples = dict(condition1_sample_indices=d["s1"], condition2_sample_indices=d["s2"])
    model.fit(d["X1"], d["Y1"], d["X2"], d["Y2"], **samples)
    fresh = kompot.DifferentialExpression(**kw).fit(d["X1"], d["Y1"], d["X2"], d["Y2"], **samples)
    _close(model.predict(d["X"], compute_mahalanobis=True, progress=False),
           fresh.predict(d["X"], compute_mahalanobis=True, progress=False))
    _assert_same_arguments(arguments, model)


def test_expression_model_refit_equals_fresh_fit(small):
    d = small
    kw = dict(n_landmarks=40, random_state=0)
    model = kompot.ExpressionModel(**kw)
    arguments = _constructor_arguments(model)
    model.fit(d["oX1"], d["oY1"], sample_indices=d["os1"])
    model.fit(d["X1"], d["Y1"])
    _assert_same_arguments(arguments, model)
    assert not model.has_sample_variance and model.variance_estimator is None
    fresh = kompot.ExpressionModel(**kw).fit(d["X1"], d["Y1"])
    for method in ("predict", "std", "obs_variance", "covariance"):
        np.testing.assert_allclose(getattr(model, method)(d["X"], progress=False),
                                   getattr(fresh, method)(d["X"], progress=False), **TOL)
    model.fit(d["X1"], d["Y1"], sample_indices=d["s1"])
    fresh = kompot.ExpressionModel(**kw).fit(d["X1"], d["Y1"], sample_indices=d["s1"])
    np.testing.assert_allclose(model.std(d["X"], progress=False),
                               fresh.std(d["X"], progress=False), **TOL)


def test_sample_variance_refit_equals_fresh_fit(small):
    d = small
    kwargs = {"n_landmarks": 30, "random_state": 0}
    model = kompot.SampleVarianceEstimator()
    arguments = _constructor_arguments(model)
    model.fit(d["oX1"], d["oY1"], d["os1"], estimator_kwargs=kwargs)
    groups = np.where(d["s1"] == d["s1"][0], "first", "rest")  # 2 groups, other labels
    model.fit(d["X1"], d["Y1"], groups, estimator_kwargs=kwargs)
    _assert_same_arguments(arguments, model)
    fresh = kompot.SampleVarianceEstimator().fit(d["X1"], d["Y1"], groups, estimator_kwargs=kwargs)
    assert model.n_groups == fresh.n_groups == 2 and list(model.groups_) == ["first", "rest"]
    np.testing.assert_allclose(model.predict(d["X"], diag=True, progress=False),
                               fresh.predict(d["X"], diag=True, progress=False), **TOL)


# ------------------------------------------------------- unfitted models

@pytest.mark.parametrize("use", [
    lambda X: kompot.DifferentialAbundance().predict(X),
    lambda X: kompot.DifferentialExpression().predict(X),
    lambda X: kompot.DifferentialExpression().compute_mahalanobis_distances(X),
    lambda X: kompot.ExpressionModel().predict(X),
    lambda X: kompot.ExpressionModel().std(X),
    lambda X: kompot.SampleVarianceEstimator().predict(X, diag=True),
], ids=["DA.predict", "DE.predict", "DE.mahalanobis", "EM.predict", "EM.std", "SVE.predict"])
def test_unfitted_models_raise_value_error_naming_fit(use):
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\("):
        use(np.zeros((3, 2)))


# ------------------------------------------------- parameters that do nothing

INERT = {
    kompot.DifferentialAbundance: dict(jit_compile=True),
    kompot.DifferentialExpression: dict(jit_compile=True, store_arrays_on_disk=True,
                                        disk_storage_dir="/tmp/x", max_memory_ratio=0.5),
    kompot.ExpressionModel: dict(store_arrays_on_disk=False, disk_storage_dir="/tmp/x"),
    kompot.SampleVarianceEstimator: dict(jit_compile=False, store_arrays_on_disk=True,
                                         disk_storage_dir="/tmp/x", dask_num_workers=4),
}


@pytest.mark.parametrize("cls", list(INERT), ids=lambda c: c.__name__)
def test_inert_parameters_warn_once_when_set(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # defaults: no warning at all
        cls()
    for name, value in INERT[cls].items():
        with pytest.warns(KompotWarning, match=f"{name}=.*has no effect") as record:
            model = cls(**{name: value})
        assert len(record) == 1
        assert getattr(model, name) == value  # still stored as given
    with pytest.warns(KompotWarning) as record:
        cls(**INERT[cls])
    assert len(record) == 1 and all(name in str(record[0].message) for name in INERT[cls])
    assert issubclass(KompotWarning, UserWarning)


@pytest.mark.parametrize("cls", list(INERT), ids=lambda c: c.__name__)
def test_inert_parameters_are_documented_as_such(cls):
    doc = inspect.getdoc(cls)
    for name in INERT[cls]:
        section = doc[doc.index(name):]
        assert "no effect" in section[:400], name
