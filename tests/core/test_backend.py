"""``kompot.settings.compute_backend = "jax"``: the same numbers as numpy, on JAX's CPU here."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import kompot
import kompot.tl
from kompot.core.function_gp import fit_function
from kompot.core.kernel import kernel_matrix, matern52
from kompot.core.mahalanobis import mahalanobis_distances

pytest.importorskip("jax")

RTOL = 1e-10
ROOT = Path(kompot.__file__).resolve().parent.parent
PATHS = ["shared", "low_rank", "diag", "diag+low_rank", "diag+scaled", "diag+scaled+low_rank"]


@pytest.fixture()
def on_jax():
    """The JAX backend for one test, numpy again after it (also when it fails)."""
    kompot.settings.compute_backend = "jax"
    yield
    kompot.settings.compute_backend = "numpy"


def _on_backend(name: str, compute):
    kompot.settings.compute_backend = name
    try:
        return compute()
    finally:
        kompot.settings.compute_backend = "numpy"


def _both(compute):
    return _on_backend("numpy", compute), _on_backend("jax", compute)


def _problem(m=70, G=30, K=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 4))
    A = kernel_matrix(matern52(2.0), X, X) + 1e-4 * np.eye(m)
    delta = rng.normal(size=(m, G))
    B = 0.5 * rng.normal(size=(G, m, K))
    B[3] = 0.0  # a gene without replicate variance
    v = rng.uniform(0.0, 0.3, size=(m, G))
    v[:, 5] = 0.0  # a gene without empirical variance
    return delta, A, B, v


@pytest.mark.parametrize("path", PATHS)
def test_mahalanobis_paths_equal_numpy(path):
    delta, A, B, v = _problem()
    F = np.random.default_rng(1).normal(size=(delta.shape[0], 20))
    scaled = (F @ F.T / 20, np.linspace(0.0, 2.0, delta.shape[1]))
    kwargs = dict(low_rank=B if "low_rank" in path else None, diag=v if "diag" in path else None,
                  scaled=scaled if "scaled" in path else None,
                  batch_size=8)  # several gene blocks, the last one short
    ref, got = _both(lambda: mahalanobis_distances(delta, A, **kwargs))
    assert np.all(ref > 0)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)


def test_genes_that_need_jitter_are_redone_with_numpy_warning():
    # A singular shared covariance with zero diagonal for two genes: JAX's
    # Cholesky gives NaN there, and the numpy path adds jitter and warns.
    delta, A, _, v = _problem(m=30, G=6)
    w, V = np.linalg.eigh(A)
    A = (V * np.where(np.arange(len(w)) < 3, 0.0, w)) @ V.T
    A = 0.5 * (A + A.T)
    v[:, [1, 4]] = 0.0
    with warnings.catch_warnings(record=True) as ref_warnings:
        warnings.simplefilter("always")
        ref = _on_backend("numpy", lambda: mahalanobis_distances(delta, A, diag=v))
    with warnings.catch_warnings(record=True) as jax_warnings:
        warnings.simplefilter("always")
        got = _on_backend("jax", lambda: mahalanobis_distances(delta, A, diag=v))
    assert ref_warnings and len(jax_warnings) == len(ref_warnings)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)


def test_kernel_blocks_equal_numpy():
    rng = np.random.default_rng(1)
    X, U = rng.normal(size=(300, 6)), rng.normal(size=(40, 6))
    ref, got = _both(lambda: kernel_matrix(matern52(1.7), X, U))
    assert type(got) is np.ndarray and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)


def test_differential_expression_equals_numpy():
    small = kompot.datasets.toy(n_cells=400, n_genes=20, seed=0)

    def run():
        adata = small.copy()
        kompot.tl.compute_differential_expression(
            adata, "condition", "control", "treated", sample_col="sample", n_landmarks=40,
            n_permutations=1, batch_size=150, progress=False)
        return adata

    ref, got = _both(run)
    for column in ref.var.columns:
        if ref.var[column].dtype.kind == "f":
            np.testing.assert_allclose(got.var[column], ref.var[column], rtol=RTOL, atol=0,
                                       err_msg=column)
    assert ref.layers.keys() == got.layers.keys()
    for name in ref.layers:
        # The layers are float32: equal up to their rounding.
        np.testing.assert_allclose(got.layers[name], ref.layers[name], rtol=1e-6, atol=1e-6,
                                   err_msg=name)


def test_expression_fit_equals_numpy(toy_split):
    d = toy_split
    U = d["X"][::40]
    fits = _both(lambda: fit_function(d["X1"], d["Y1"][:, :12], U, matern52(2.5), sigma=0.8,
                                      batch_size=300))  # several blocks, the last one short
    # The weights themselves solve with the landmark factor (condition number
    # up to 1/jitter), so rounding moves them by ~1e-9; what they predict does not.
    X = d["X"][::7]
    for name in ("mean", "obs_variance", "covariance_diag"):
        ref, got = getattr(fits[0], name)(X), getattr(fits[1], name)(X)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0, err_msg=name)
    np.testing.assert_allclose(fits[1].LB, fits[0].LB, rtol=RTOL, atol=1e-12)


def test_prediction_in_float64_equals_numpy(toy_split, on_jax):
    d = toy_split
    de = kompot.DifferentialExpression(n_landmarks=80, batch_size=500)
    de.fit(d["X1"], d["Y1"][:, :15], d["X2"], d["Y2"][:, :15])
    got = de.predict(d["X"], progress=False)
    kompot.settings.compute_backend = "numpy"
    ref = de.predict(d["X"], progress=False)
    for key in ("condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std"):
        np.testing.assert_allclose(got[key], ref[key], rtol=RTOL, atol=1e-12, err_msg=key)


def test_setting_validates_and_restores_numpy():
    assert kompot.settings.compute_backend == "numpy"
    with pytest.raises(ValueError, match="'numpy', 'jax' or 'jax:<platform>'"):
        kompot.settings.compute_backend = "cupy"
    with pytest.raises(ValueError, match="no 'nosuchplatform' device"):
        kompot.settings.compute_backend = "jax:nosuchplatform"
    assert kompot.settings.compute_backend == "numpy"
    kompot.settings.compute_backend = "jax:cpu"
    assert kompot.settings.compute_backend == "jax:cpu"
    kompot.settings.compute_backend = "numpy"
    assert kompot.settings.compute_backend == "numpy"


_MISSING_JAX = """
import sys
sys.modules["jax"] = None  # as if JAX were not installed
import kompot
try:
    kompot.settings.compute_backend = "jax"
except ImportError as err:
    print("pip install jax" in str(err), kompot.settings.compute_backend)
"""


def _run(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_jax_missing_fails_naming_the_fix():
    assert _run(_MISSING_JAX) == ["True", "numpy"]


_NO_GLOBAL_CHANGE = """
import jax, kompot
from kompot.core.function_gp import fit_function
from kompot.core.kernel import kernel_matrix, matern52
import numpy as np
before = (jax.config.jax_enable_x64, jax.config.jax_platforms, jax.config.jax_default_device)
kompot.settings.compute_backend = "jax"
K = kernel_matrix(matern52(1.0), np.ones((3, 2)), np.zeros((2, 2)))
after = (jax.config.jax_enable_x64, jax.config.jax_platforms, jax.config.jax_default_device)
print(before == after, K.dtype, jax.numpy.ones(1).dtype)
"""


def test_jax_backend_changes_no_global_jax_setting():
    assert _run(_NO_GLOBAL_CHANGE) == ["True", "float64", "float32"]


@pytest.mark.parametrize("with_samples", [False, True], ids=["cells", "samples"])
def test_pooled_refits_equal_numpy(with_samples):
    """The null's shared refits (kept device blocks, their columns) give numpy's distances."""
    from kompot.models.null import label_partitions
    from kompot.models.pooled_refits import pooled_refits
    from kompot.models.replicate_prior import replicate_distances

    adata = kompot.datasets.toy(n_cells=300, n_genes=12, n_de_genes=4, n_samples=4, seed=2)
    X = np.asarray(adata.obsm["DM_EigenVectors"], np.float64)
    t = (adata.obs["condition"] == "treated").to_numpy()
    order = np.r_[np.flatnonzero(~t), np.flatnonzero(t)]
    X, t, Y = X[order], t[order], np.asarray(adata.X, np.float64)[order]
    samples = adata.obs["sample"].astype(str).to_numpy()[order]
    samples[:20] = "small"  # fitted in the space of its cells (fewer than 40 landmarks)
    reps = dict(condition1_sample_indices=samples[~t], condition2_sample_indices=samples[t]) \
        if with_samples else {}
    de_kwargs = dict(n_landmarks=40, random_state=0)
    real = kompot.DifferentialExpression(**de_kwargs).fit(X[~t], Y[~t], X[t], Y[t], ls=1.0,
                                                         **reps)
    fit_kwargs = dict(ls=1.0, landmarks=real.landmarks_, mean_weights=real.prior_mean_weights_,
                      variance_mean_weights=real.prior_variance_weights_)
    s = (samples[~t], samples[t]) if with_samples else (None, None)
    partitions = label_partitions(int((~t).sum()), len(X), *s, 2, np.random.default_rng(0))

    def run():
        refits = pooled_refits(X, Y, samples if with_samples else None, de_kwargs, fit_kwargs,
                             np.arange(12))
        return np.concatenate([replicate_distances(refits.fit(mask, s1, s2, np.arange(12)), None)
                               for mask, s1, s2 in partitions])

    ref, got = _both(run)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)
