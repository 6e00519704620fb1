"""Hyper-parameters shared by both conditions: landmarks and length scale.

Both are computed on the union of the two conditions so that the two
Gaussian processes live on the same basis. That makes the comparison
symmetric: swapping condition 1 and 2 negates every fold change exactly.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy.spatial import cKDTree

# The landmark optimiser only needs a coarse quantisation of the manifold;
# a few Lloyd iterations get there and keep large inputs cheap.
_KMEANS_MAX_ITER = 20
# k-means on more points than this buys no coverage, only time.
_KMEANS_MAX_POINTS = 100_000


def canonical_order(X: np.ndarray) -> np.ndarray:
    """Row order of ``X`` that depends only on the rows' values.

    Sorting lexicographically first makes any seeded procedure that follows
    independent of how the caller happened to order the cells.
    """
    X = np.asarray(X)
    return np.lexsort(X.T[::-1])


def select_landmarks(
    X: np.ndarray, n_landmarks: int, random_state: int | None = 0
) -> np.ndarray:
    """Pick ``min(n_landmarks, n)`` landmarks covering the rows of ``X``.

    k-means centroids (seeded) on the canonically ordered rows. With
    ``n_landmarks >= n`` the (canonically ordered) cells themselves are used.
    """
    X = np.asarray(X, dtype=np.float64)
    if n_landmarks < 1:
        raise ValueError(f"n_landmarks must be >= 1, got {n_landmarks}.")
    ordered = X[canonical_order(X)]
    n = ordered.shape[0]
    if n_landmarks >= n:
        return ordered.copy()
    rng = np.random.default_rng(0 if random_state is None else random_state)
    if n > _KMEANS_MAX_POINTS:
        ordered = ordered[np.sort(rng.choice(n, _KMEANS_MAX_POINTS, replace=False))]
    from sklearn.cluster import KMeans  # scikit-learn takes ~1 s to import: only when used

    # Random (seeded) initial centroids: k-means++ seeding alone costs more
    # than the Lloyd iterations at thousands of landmarks.
    km = KMeans(
        n_clusters=n_landmarks,
        init="random",
        n_init=1,
        max_iter=_KMEANS_MAX_ITER,
        random_state=int(rng.integers(2**31 - 1)),
    )
    km.fit(ordered)
    # Sort the centroids too, so that the landmark matrix itself is canonical.
    centers = km.cluster_centers_
    return centers[canonical_order(centers)]


def nearest_neighbor_distances(X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Exact distance of every row (or of the ``rows`` given) to its nearest other row (KD-tree).

    Duplicated rows would give a distance of 0 and an infinite density; they
    are floored at the smallest positive distance observed.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] < 2:
        raise ValueError("At least 2 cells are needed to compute nearest-neighbour distances.")
    dist, _ = cKDTree(X).query(X if rows is None else X[rows], k=2, workers=-1)
    r = dist[:, 1]
    positive = r[r > 0]
    if positive.size == 0:
        raise ValueError("All cells have identical coordinates; no density can be estimated.")
    return np.maximum(r, positive.min())


# Beyond this many cells the length scale averages the nearest-neighbour
# distances of this many of them: the queries, not the tree, are what costs.
LENGTH_SCALE_MAX_CELLS = 100_000


def length_scale_of(X: np.ndarray, ls_factor: float = 10.0) -> float:
    """:func:`length_scale` of the cells ``X``: ``ls_factor`` times mellon's rule.

    Each distance is exact (to the nearest of all cells); with more than
    :data:`LENGTH_SCALE_MAX_CELLS` cells the mean of their logarithms is
    taken over that many cells, evenly spaced in :func:`canonical_order`,
    so that which cells does not depend on the rows' order. The mean is
    remembered for the last few sets of cells, in any row order: an
    analysis's abundance and expression steps ask for the same cells.
    """
    _check_ls_factor(ls_factor)
    X = np.asarray(X, dtype=np.float64)
    order, queried = canonical_order(X), min(X.shape[0], LENGTH_SCALE_MAX_CELLS)
    key = (X.shape, queried, hashlib.blake2b(X[order].tobytes(), digest_size=16).digest())
    mean = _MEAN_LOG_DISTANCES.get(key)
    if mean is None:
        rows = None
        if queried < X.shape[0]:
            rows = order[np.linspace(0, X.shape[0] - 1, queried).round().astype(int)]
        mean = _mean_log(nearest_neighbor_distances(X, rows))
        _MEAN_LOG_DISTANCES[key] = mean
        while len(_MEAN_LOG_DISTANCES) > _REMEMBERED:
            _MEAN_LOG_DISTANCES.pop(next(iter(_MEAN_LOG_DISTANCES)))
    return float(ls_factor * np.exp(mean + 3.0))


# The mean log nearest-neighbour distance of the last few sets of cells, by
# their values in canonical order (oldest first).
_MEAN_LOG_DISTANCES: dict[tuple, float] = {}
_REMEMBERED = 4


def length_scale(nn_distances: np.ndarray, ls_factor: float = 10.0) -> float:
    """``ls_factor * exp(mean(log r) + 3)``, mellon's rule scaled by ``ls_factor``."""
    _check_ls_factor(ls_factor)
    return float(ls_factor * np.exp(_mean_log(nn_distances) + 3.0))


def _mean_log(nn_distances: np.ndarray) -> float:
    logs = np.log(np.asarray(nn_distances, np.float64))
    # fsum is exact, so the result does not depend on the order of the cells.
    return math.fsum(logs) / logs.size


def _check_ls_factor(ls_factor: float) -> None:
    if ls_factor <= 0:
        raise ValueError(f"ls_factor must be positive, got {ls_factor}.")


# Landmarks used when the caller gives no number: enough to follow a smooth
# (length scale ~ hundreds of nearest-neighbour distances) surface, few enough
# to keep the m^3 and n*m^2 steps cheap. See benchmarks/RESULTS.md.
DEFAULT_N_LANDMARKS = 1000


def shared_hyperparameters(
    X_list: list[np.ndarray],
    *,
    n_landmarks: int | None = None,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float = 10.0,
    random_state: int | None = None,
) -> tuple[np.ndarray, float]:
    """Landmarks and length scale computed once on the union of ``X_list``.

    Given values are used as they are; missing ones come from the union, so
    that neither condition is privileged.
    """
    union = np.concatenate([np.asarray(X, np.float64) for X in X_list], axis=0)
    if landmarks is None:
        m = DEFAULT_N_LANDMARKS if n_landmarks is None else int(n_landmarks)
        landmarks = select_landmarks(union, min(m, union.shape[0]), random_state)
    else:
        landmarks = np.asarray(landmarks, np.float64)
        if landmarks.ndim != 2 or landmarks.shape[1] != union.shape[1]:
            raise ValueError(
                f"landmarks must have shape (n_landmarks, {union.shape[1]}) to match the cell "
                f"states, got {landmarks.shape}."
            )
    if ls is None:
        ls = length_scale_of(union, ls_factor)
    elif not ls > 0:
        raise ValueError(f"ls must be positive, got {ls}.")
    return landmarks, float(ls)
