"""``kompot.settings.precision``: float32 empirical-variance passes, float64 everything else.

The mixed passes are checked against the dense float64 reference and
against kompot's own double run; an analysis resolves ``"auto"`` from its
number of cells and holds it while it runs.
"""

import numpy as np
import pytest
from _dense_gp import function_fit
from model_testing import toy_arrays

import kompot
from kompot.core import function_gp, precision
from kompot.core.kernel import kernel_matrix, matern52
from kompot.models import gene_blocks, run_differential_expression


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(2.5, 0.6, (200, 3))])
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2, np.exp(-X[:, 2] ** 2)])
    Y = Y + rng.normal(0, 0.3, Y.shape)
    U = X[rng.choice(500, 30, replace=False)] + 0.01
    return X, Y, U, 1.5


def test_mixed_smooths_the_variance_in_float32_and_leaves_the_mean_alone(problem):
    X, Y, U, ls = problem
    cov = matern52(ls)
    double = function_gp.fit_function(X, Y, U, cov, sigma=0.5, batch_size=128)
    with precision.using("mixed"):
        assert precision.is_mixed()
        mixed = function_gp.fit_function(X, Y, U, cov, sigma=0.5, batch_size=128)
    assert not precision.is_mixed()
    np.testing.assert_array_equal(mixed.weights, double.weights)
    K = kernel_matrix(cov, X[::5], U)
    got, exact = K @ mixed.variance_weights, K @ double.variance_weights
    assert not np.array_equal(got, exact)  # the float32 products did run
    np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-6)
    _, _, want = function_fit(X, Y, U, ls, sigma=0.5)
    np.testing.assert_allclose(got, K @ want, rtol=1e-4, atol=1e-6)


def test_auto_resolves_by_cells(monkeypatch):
    assert kompot.settings.precision == "auto"
    assert precision.resolved(precision.AUTO_MIXED_CELLS - 1) == "double"
    assert precision.resolved(precision.AUTO_MIXED_CELLS) == "mixed"
    assert not precision.is_mixed()  # outside an analysis "auto" is double
    monkeypatch.setattr(kompot.settings, "precision", "mixed")
    assert precision.resolved(10) == "mixed" and precision.is_mixed()
    monkeypatch.setattr(kompot.settings, "precision", "double")
    assert precision.resolved(10**7) == "double"


def test_a_bad_precision_names_the_choices():
    s = kompot._settings.Settings()
    with pytest.raises(ValueError, match="'auto', 'double' or 'mixed'"):
        s.precision = "float32"
    assert s.precision == "auto"


def test_analysis_in_mixed_precision_makes_the_same_calls(monkeypatch):
    # Without samples: enough power on few cells for calls to compare.
    X, m1, m2, Y, _ = toy_arrays(kompot.datasets.toy(n_cells=1500, n_genes=200, n_de_genes=10,
                                                     seed=2))
    used = []
    computed = gene_blocks._computed_block
    monkeypatch.setattr(gene_blocks, "_computed_block",
                        lambda plan, *a: used.append(precision.is_mixed()) or computed(plan, *a))

    def run():
        return run_differential_expression(X, m1, m2, Y[m1], Y[m2], n_landmarks=50,
                                           n_permutations=3, layers=False).values

    double = run()
    monkeypatch.setattr(precision, "AUTO_MIXED_CELLS", 1000)  # "auto" on 1,500 cells: mixed
    auto = run()
    monkeypatch.setattr(kompot.settings, "precision", "mixed")
    mixed = run()
    assert used == [False, True, True]
    for name in ("mahalanobis", "tail_fdr"):
        np.testing.assert_array_equal(auto[name], mixed[name])
        np.testing.assert_allclose(mixed[name], double[name], rtol=1e-4, err_msg=name)
    assert not np.array_equal(mixed["mahalanobis"], double["mahalanobis"])
    assert double["is_de"].any()
    np.testing.assert_array_equal(mixed["is_de"], double["is_de"])


def test_abundance_keeps_its_kernel_in_float32_only_when_mixed_and_double_does_not_fit(
        monkeypatch):
    """Mixed DA keeps the whitened kernel in float32 when float64 exceeds the cache: every pass
    then reads the same rounded kernel (double arithmetic) instead of computing it again.
    The log fold changes move by float32 rounding, not more, and the calls stay."""
    from kompot.core import density
    from kompot.models import run_differential_abundance

    adata = kompot.datasets.toy(n_cells=1200, n_genes=5, n_de_genes=1, seed=4)
    X, m1, m2, _, samples = toy_arrays(adata)
    kept = []
    blocks_init = density.WhitenedKernelBlocks.__init__

    def recording(self, *args, **kwargs):
        blocks_init(self, *args, **kwargs)
        kept.append(None if self.cache is None else self.cache[0].dtype)

    monkeypatch.setattr(density.WhitenedKernelBlocks, "__init__", recording)

    def run():
        kept.clear()
        return run_differential_abundance(
            X, m1, m2, n_landmarks=60, condition1_sample_indices=samples[m1],
            condition2_sample_indices=samples[m2]).values

    double = run()
    assert kept[-1] == np.float64
    monkeypatch.setattr(density, "_KERNEL_CACHE_BYTES", 1200 * 60 * 6)  # float32 fits, not float64
    recomputed = run()
    assert kept[-1] is None
    monkeypatch.setattr(precision, "AUTO_MIXED_CELLS", 1000)  # "auto" on 1,200 cells: mixed
    mixed = run()
    assert kept[-1] == np.float32
    np.testing.assert_allclose(recomputed["lfc"], double["lfc"], rtol=1e-10, atol=1e-12)
    assert not np.array_equal(mixed["lfc"], double["lfc"])
    for name in ("lfc", "zscore"):
        np.testing.assert_allclose(mixed[name], double[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert (double["direction"] != "neutral").any()
    np.testing.assert_array_equal(mixed["direction"], double["direction"])
