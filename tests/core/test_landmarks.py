import numpy as np
import pytest

from kompot.core import landmarks
from kompot.core.landmarks import (
    length_scale,
    length_scale_of,
    nearest_neighbor_distances,
    select_landmarks,
    shared_hyperparameters,
)


def test_landmarks_do_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    perm = rng.permutation(500)
    a = select_landmarks(X, 40, random_state=3)
    b = select_landmarks(X[perm], 40, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (40, 3)


def test_landmarks_depend_on_seed_and_cover_the_data():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (300, 2)), rng.normal(5, 0.1, (300, 2))])
    a = select_landmarks(X, 10, random_state=1)
    b = select_landmarks(X, 10, random_state=2)
    assert not np.array_equal(a, b)
    # both clusters get landmarks
    assert (a[:, 0] < 2.5).any() and (a[:, 0] > 2.5).any()


def test_all_cells_when_more_landmarks_than_cells():
    X = np.random.default_rng(0).normal(size=(20, 2))
    U = select_landmarks(X, 50)
    assert U.shape == (20, 2)
    assert {tuple(r) for r in U} == {tuple(r) for r in X}


def test_nearest_neighbor_distances_match_brute_force():
    X = np.random.default_rng(0).normal(size=(200, 5))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(nearest_neighbor_distances(X), D.min(1), rtol=1e-12)


def test_duplicated_cells_get_finite_distances():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    r = nearest_neighbor_distances(X)
    assert np.all(r > 0) and np.all(np.isfinite(r))


def test_length_scale_formula():
    r = np.array([0.5, 1.0, 2.0])
    assert length_scale(r, 10.0) == pytest.approx(10 * np.exp(np.mean(np.log(r)) + 3))
    with pytest.raises(ValueError, match="ls_factor"):
        length_scale(r, 0)


def test_length_scale_of_many_cells_averages_a_spread_subset(monkeypatch):
    """Up to the limit every cell's distance counts; beyond it a subset's, chosen by value."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, (3000, 4)), rng.normal(4, 0.3, (1000, 4))])
    exact = length_scale(nearest_neighbor_distances(X), 10.0)
    assert length_scale_of(X, 10.0) == exact
    monkeypatch.setattr(landmarks, "LENGTH_SCALE_MAX_CELLS", 1500)
    picked = []
    tree_query = landmarks.nearest_neighbor_distances
    monkeypatch.setattr(landmarks, "nearest_neighbor_distances",
                        lambda X, rows=None: picked.append(rows) or tree_query(X, rows))
    estimate = length_scale_of(X, 10.0)
    assert len(picked[0]) == 1500 and len(np.unique(picked[0])) == 1500
    assert (picked[0] >= 3000).sum() == pytest.approx(1500 / 4, abs=15)  # both groups, in share
    # Each queried distance is exact, so the estimate is the exact rule up to sampling
    # (sd of log r about 0.6 here: a standard error of 1.5 % at 1,500 cells; 4 % allowed).
    assert estimate == pytest.approx(exact, rel=0.04)
    assert estimate != exact
    perm = rng.permutation(len(X))
    assert length_scale_of(X[perm], 10.0) == estimate  # the same cells, in any row order


def test_length_scale_of_the_same_cells_is_remembered_in_any_order(monkeypatch):
    """A second call on the same cells (rows permuted) reuses the distances; other cells do not."""
    rng = np.random.default_rng(11)
    X, other = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    queries = []
    tree_query = landmarks.nearest_neighbor_distances
    monkeypatch.setattr(landmarks, "nearest_neighbor_distances",
                        lambda X, rows=None: queries.append(len(X)) or tree_query(X, rows))
    first = length_scale_of(X, 10.0)
    assert length_scale_of(X[rng.permutation(500)], 2.0) == pytest.approx(first / 5, rel=1e-15)
    assert len(queries) == 1
    assert length_scale_of(other, 10.0) == length_scale(tree_query(other), 10.0)
    assert length_scale_of(X[:-1], 10.0) != first  # one cell fewer: a new set of cells
    assert len(queries) == 3
    with pytest.raises(ValueError, match="ls_factor"):
        length_scale_of(X, 0)


def test_nearest_neighbor_distances_of_given_rows_search_all_cells():
    X = np.random.default_rng(1).normal(size=(300, 3))
    rows = np.array([5, 17, 250])
    np.testing.assert_array_equal(nearest_neighbor_distances(X, rows),
                                  nearest_neighbor_distances(X)[rows])


def test_shared_hyperparameters_are_symmetric():
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(300, 3)), rng.normal(1, 1, size=(200, 3))
    U12, ls12 = shared_hyperparameters([X1, X2], n_landmarks=30, random_state=0)
    U21, ls21 = shared_hyperparameters([X2, X1], n_landmarks=30, random_state=0)
    np.testing.assert_array_equal(U12, U21)
    assert ls12 == ls21
    with pytest.raises(ValueError, match="landmarks must have shape"):
        shared_hyperparameters([X1], landmarks=np.zeros((5, 2)))
