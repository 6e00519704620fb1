"""DE with many small replicate samples: the cell-space fits and the null's cache change no result.

Samples with fewer cells than landmarks are fitted in the space of their
cells (:mod:`kompot.core.replicate_fits`), and the null's refits share each
sample's kernel factors. Forcing every sample onto the landmark-space fit
(``fit_function``, nothing cached) must give the same distances, null and calls.
"""

import numpy as np
import pytest
from model_testing import toy_arrays

import kompot
from kompot.core.replicate_fits import ReplicateBases
from kompot.models import gene_blocks, pooled_refits, run_differential_expression, sample_variance


@pytest.fixture(scope="module")
def arrays():
    return toy_arrays(kompot.datasets.toy(n_cells=300, n_genes=20, n_de_genes=4, n_samples=6, seed=5))


def _run(arrays, monkeypatch):
    X, m1, m2, Y, samples = arrays
    nulls = []
    pooled_null = gene_blocks.pooled_null
    monkeypatch.setattr(gene_blocks, "pooled_null",
                        lambda parts, rescale: nulls.append(pooled_null(parts, rescale)) or nulls[-1])
    result = run_differential_expression(
        X, m1, m2, Y[m1], Y[m2], condition1_sample_indices=samples[m1],
        condition2_sample_indices=samples[m2], n_landmarks=40, n_permutations=3,
        random_state=0)
    return result, nulls[0]


def test_cell_space_fits_and_cache_equal_the_landmark_space_fits(arrays, monkeypatch):
    caches = []

    class Recorded(ReplicateBases):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            caches.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(gene_blocks, "ReplicateBases", Recorded)
        fast, fast_null = _run(arrays, patch)
    # 12 samples of about 25 cells (< 40 landmarks): fitted with the real labels, then
    # refitted from the cache in each of 3 permutations.
    assert len(caches) == 1 and len(caches[0].entries) == 12 and caches[0].hits == 3 * 12
    with monkeypatch.context() as patch:
        for module in (sample_variance, pooled_refits):
            patch.setattr(module, "uses_cell_space", lambda n_cells, n_landmarks: False)
        slow, slow_null = _run(arrays, patch)
    np.testing.assert_allclose(fast_null, slow_null, rtol=1e-8)
    assert list(fast.values) == list(slow.values)
    for name, want in slow.values.items():
        if np.asarray(want).dtype == bool:
            np.testing.assert_array_equal(fast[name], want, err_msg=name)
        else:
            np.testing.assert_allclose(fast[name], want, rtol=1e-6 if want.dtype == np.float32
                                       else 1e-8, atol=1e-12, err_msg=name)


def test_a_sample_keeps_its_product_with_the_landmarks_kernel_only_for_equal_points():
    from kompot.core.function_gp import landmark_cholesky
    from kompot.core.kernel import kernel_matrix, matern52
    from kompot.core.replicate_fits import replicate_basis

    rng = np.random.default_rng(0)
    U, X = rng.normal(size=(12, 3)), rng.normal(size=(8, 3))
    cov = matern52(1.5)
    basis = replicate_basis(kernel_matrix(cov, X, U), landmark_cholesky(U, cov, 1e-6), 1.0)
    K_u, K_other = kernel_matrix(cov, U, U), kernel_matrix(cov, U[::-1], U)
    kept = basis.times_T(K_u, keep=True)
    np.testing.assert_array_equal(kept, K_u @ basis.T)
    assert basis.times_T(K_u.copy()) is kept  # equal points: the kept product
    np.testing.assert_array_equal(basis.times_T(K_other), K_other @ basis.T)  # others: computed
    assert basis.times_T(K_u) is kept  # and not replaced without keep
