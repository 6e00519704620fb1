"""Every path of ``mahalanobis_distances`` against a dense per-gene ``np.linalg.solve``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kompot.core.mahalanobis import cholesky_with_jitter, mahalanobis_distances

RTOL = 1e-6
PATHS = ["shared", "low_rank", "diag", "diag+low_rank"]


def dense_reference(
    delta: np.ndarray,
    A: np.ndarray,
    B: np.ndarray | None = None,
    v: np.ndarray | None = None,
    scaled: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Independent reference: build each gene's full matrix and solve it densely.

    With eigenvalues down to 1e-10 a plain float64 solve is itself only good to ~1e-6, so the
    solution is polished by iterative refinement with residuals in extended precision
    (``np.longdouble``; on platforms where that is float64 the refinement is merely harmless).
    """
    ld = np.longdouble
    delta, A = np.asarray(delta, np.float64), np.asarray(A, np.float64)
    m, G = delta.shape
    out = np.empty(G)
    for g in range(G):
        M = A.astype(ld)
        if B is not None:
            Bg = np.asarray(B[g], np.float64).astype(ld)
            M = M + Bg @ Bg.T
        if v is not None:
            M = M + np.diag(np.asarray(v[:, g], np.float64).astype(ld))
        if scaled is not None:
            M = M + ld(scaled[1][g]) * np.asarray(scaled[0], np.float64).astype(ld)
        M64, d = M.astype(np.float64), delta[:, g].astype(ld)
        x = np.linalg.solve(M64, delta[:, g]).astype(ld)
        for _ in range(3):
            x = x + np.linalg.solve(M64, (d - M @ x).astype(np.float64)).astype(ld)
        out[g] = float(d @ x)
    return np.sqrt(out)


def random_spd(rng: np.random.Generator, m: int) -> np.ndarray:
    X = rng.standard_normal((m, m))
    return X @ X.T / m + 0.1 * np.eye(m)


def ill_conditioned_spd(rng: np.random.Generator, m: int) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    A = (Q * np.logspace(-10, 0, m)) @ Q.T
    return 0.5 * (A + A.T)


def make_problem(
    rng: np.random.Generator,
    m: int,
    G: int,
    K: int,
    path: str,
    A: np.ndarray | None = None,
    diag_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    A = random_spd(rng, m) if A is None else A
    delta = rng.standard_normal((m, G))
    B = rng.standard_normal((G, m, K)) * 0.5 if "low_rank" in path else None
    v = rng.uniform(0.1, 1.0, (m, G)) * diag_scale if "diag" in path else None
    return delta, A, B, v


@pytest.mark.parametrize("path", PATHS)
# m <= K: the difference lies in the replicate factors' span (no part orthogonal to it).
@pytest.mark.parametrize(("m", "G", "K"),
                         [(5, 1, 1), (30, 7, 2), (80, 40, 5), (30, 40, 1), (4, 6, 7), (6, 5, 6)])
def test_matches_dense_reference(path: str, m: int, G: int, K: int) -> None:
    rng = np.random.default_rng(m * 1000 + G * 10 + K)
    delta, A, B, v = make_problem(rng, m, G, K, path)
    got = mahalanobis_distances(delta, A, low_rank=B, diag=v)
    assert got.shape == (G,)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, dense_reference(delta, A, B, v), rtol=RTOL)


def make_scaled(rng: np.random.Generator, m: int, G: int) -> tuple[np.ndarray, np.ndarray]:
    """A semidefinite ``P`` of rank m/2 and scales spanning 0 (a gene without it) to 3."""
    F = rng.standard_normal((m, max(m // 2, 1)))
    c = rng.uniform(0.0, 3.0, G)
    c[0] = 0.0
    return F @ F.T / m, c


SCALED_PATHS = ["scaled", "scaled+low_rank", "diag+scaled", "diag+scaled+low_rank"]


@pytest.mark.parametrize("path", SCALED_PATHS)
@pytest.mark.parametrize(("m", "G", "K"), [(5, 1, 1), (30, 7, 2), (80, 40, 5)])
@pytest.mark.parametrize("ill", [False, True])
def test_scaled_shape_matches_dense_reference(path: str, m: int, G: int, K: int, ill) -> None:
    rng = np.random.default_rng(m * 1000 + G * 10 + K + ill)
    A = ill_conditioned_spd(rng, m) if ill else None
    delta, A, B, v = make_problem(rng, m, G, K, path, A=A)
    scaled = make_scaled(rng, m, G)
    for batch_size in (3, 256):  # blocks of genes, the last one short, and one block
        got = mahalanobis_distances(delta, A, low_rank=B, diag=v, scaled=scaled,
                                    batch_size=batch_size)
        np.testing.assert_allclose(got, dense_reference(delta, A, B, v, scaled), rtol=RTOL)
    # The term matters: without it the distances are larger wherever c_g > 0.
    plain = mahalanobis_distances(delta, A, low_rank=B, diag=v)
    assert got[0] == pytest.approx(plain[0], rel=1e-9)
    if G > 1:
        assert np.all(got[1:] < plain[1:])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("m", [30, 80])
def test_ill_conditioned_shared_cov(path: str, m: int) -> None:
    rng = np.random.default_rng(m)
    A = ill_conditioned_spd(rng, m)
    assert np.linalg.cond(A) > 1e9  # the problem really is ill-conditioned
    delta, A, B, v = make_problem(rng, m, 7, 2, path, A=A)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SPD input: no jitter may be added silently or loudly
        got = mahalanobis_distances(delta, A, low_rank=B, diag=v)
    np.testing.assert_allclose(got, dense_reference(delta, A, B, v), rtol=RTOL)


@pytest.mark.parametrize("path", ["diag", "diag+low_rank"])
@pytest.mark.parametrize("diag_scale", [1e-8, 1e3])
@pytest.mark.parametrize("ill", [False, True])
def test_tiny_and_large_diag(path: str, diag_scale: float, ill: bool) -> None:
    rng = np.random.default_rng(int(np.log10(diag_scale)) + 20 * ill + 40)
    m = 30
    A = ill_conditioned_spd(rng, m) if ill else random_spd(rng, m)
    delta, A, B, v = make_problem(rng, m, 7, 2, path, A=A, diag_scale=diag_scale)
    got = mahalanobis_distances(delta, A, low_rank=B, diag=v)
    np.testing.assert_allclose(got, dense_reference(delta, A, B, v), rtol=RTOL)


@pytest.mark.parametrize("path", PATHS)
def test_batch_size_not_dividing_gene_count(path: str) -> None:
    rng = np.random.default_rng(7)
    delta, A, B, v = make_problem(rng, 30, 40, 2, path)
    ref = dense_reference(delta, A, B, v)
    for batch_size in (1, 7, 39, 40, 256):
        got = mahalanobis_distances(delta, A, low_rank=B, diag=v, batch_size=batch_size)
        np.testing.assert_allclose(got, ref, rtol=RTOL, err_msg=f"batch_size={batch_size}")


@pytest.mark.parametrize("path", PATHS)
def test_float32_inputs_are_upcast(path: str) -> None:
    rng = np.random.default_rng(32)
    delta, A, B, v = make_problem(rng, 30, 7, 2, path)
    delta32, A32 = delta.astype(np.float32), A.astype(np.float32)
    B32 = None if B is None else B.astype(np.float32)
    v32 = None if v is None else v.astype(np.float32)
    got = mahalanobis_distances(delta32, A32, low_rank=B32, diag=v32)
    assert got.dtype == np.float64
    # The reference sees the same (rounded) float32 values, solved in float64.
    np.testing.assert_allclose(got, dense_reference(delta32, A32, B32, v32), rtol=RTOL)


def test_woodbury_accurate_when_replicate_variance_dominates() -> None:
    # A = I, B = s u, delta = a u + w with w orthogonal to u: D^2 = a^2 / (1 + s^2) + |w|^2.
    # Here D^2 ~ 5e-12 while |delta|^2 ~ 4, so the subtractive Woodbury form
    # z^T z - u^T C^{-1} u would keep only ~4 digits; the additive form keeps ~9.
    rng = np.random.default_rng(3)
    m = 20
    u = rng.standard_normal(m)
    u /= np.linalg.norm(u)
    w = rng.standard_normal(m)
    w -= (w @ u) * u
    w *= 1e-6 / np.linalg.norm(w)
    a, s = 2.0, 1e6
    delta = (a * u + w)[:, None]
    B = (s * u)[None, :, None]
    expected = np.sqrt(a**2 / (1 + s**2) + w @ w)
    for v in (None, np.zeros((m, 1))):  # path 2, and path 3 with a zero diagonal
        got = mahalanobis_distances(delta, np.eye(m), low_rank=B, diag=v)
        np.testing.assert_allclose(got, [expected], rtol=1e-8)


def test_zero_low_rank_and_empty_rank_equal_shared_path() -> None:
    rng = np.random.default_rng(11)
    delta, A, _, _ = make_problem(rng, 30, 7, 1, "shared")
    base = mahalanobis_distances(delta, A)
    np.testing.assert_allclose(
        mahalanobis_distances(delta, A, low_rank=np.zeros((7, 30, 3))), base, rtol=1e-12
    )
    np.testing.assert_allclose(
        mahalanobis_distances(delta, A, low_rank=np.zeros((7, 30, 0))), base, rtol=1e-12
    )
    # Adding variance can only shrink the distance.
    grown = mahalanobis_distances(delta, A, low_rank=rng.standard_normal((7, 30, 2)))
    assert np.all(grown < base)


def test_progress_bar_gives_same_result() -> None:
    rng = np.random.default_rng(5)
    delta, A, B, v = make_problem(rng, 10, 9, 2, "diag+low_rank")
    np.testing.assert_allclose(
        mahalanobis_distances(delta, A, low_rank=B, diag=v, batch_size=4, progress=True),
        dense_reference(delta, A, B, v),
        rtol=RTOL,
    )


def test_no_genes_returns_empty() -> None:
    out = mahalanobis_distances(np.zeros((4, 0)), np.eye(4), diag=np.zeros((4, 0)))
    assert out.shape == (0,)


# --- Cholesky with jitter -------------------------------------------------------------------


def test_cholesky_with_jitter_plain_spd_needs_no_jitter() -> None:
    A = random_spd(np.random.default_rng(0), 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L, used = cholesky_with_jitter(A)
    assert used == 0.0
    assert np.allclose(np.triu(L, 1), 0.0)
    np.testing.assert_allclose(L @ L.T, A, rtol=1e-12, atol=1e-12)


def test_cholesky_with_jitter_warns_on_singular_psd() -> None:
    m = 10
    A = np.ones((m, m))  # rank 1: plain Cholesky meets an exact zero pivot
    with pytest.warns(RuntimeWarning, match="jitter"):
        L, used = cholesky_with_jitter(A)
    assert 0.0 < used <= 1e-10 * 10**5
    np.testing.assert_allclose(L @ L.T, A + used * np.eye(m), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_singular_shared_cov_warns_and_stays_finite(path: str) -> None:
    m, G, c = 10, 3, 1.5
    A = np.ones((m, m))
    # delta along A's only nonzero eigenvector (eigenvalue m): D = c * sqrt(m / (m + jitter)) in
    # path 1, so the answer is known despite the singular A.
    delta = np.full((m, G), c)
    B = np.zeros((G, m, 2)) if "low_rank" in path else None
    v = np.zeros((m, G)) if "diag" in path else None
    if v is not None:
        v[:, 1] = 0.5  # this gene's matrix is positive definite: no jitter needed for it
    with pytest.warns(RuntimeWarning, match="jitter"):
        got = mahalanobis_distances(delta, A, low_rank=B, diag=v)
    assert np.all(np.isfinite(got))
    expected = np.full(G, c)
    if v is not None:
        expected[1] = dense_reference(delta[:, 1:2], A, None, v[:, 1:2])[0]
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def indefinite(m: int = 8) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((m, m)))
    lam = np.ones(m)
    lam[-1] = -0.5  # far beyond what relative jitter up to 1e-5 can repair
    return (Q * lam) @ Q.T


def test_cholesky_with_jitter_raises_on_indefinite() -> None:
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        cholesky_with_jitter(indefinite())


@pytest.mark.parametrize("path", PATHS)
def test_indefinite_shared_cov_raises(path: str) -> None:
    rng = np.random.default_rng(2)
    A = indefinite()
    delta, A, B, v = make_problem(rng, 8, 3, 1, path, A=A, diag_scale=1e-3)
    with pytest.raises(np.linalg.LinAlgError, match="eps"):
        mahalanobis_distances(delta, A, low_rank=B, diag=v)


# --- input validation -----------------------------------------------------------------------


def valid_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    delta, A, B, v = make_problem(rng, 6, 4, 2, "diag+low_rank")
    return {"delta": delta, "shared_cov": A, "low_rank": B, "diag": v}


def call(kw: dict[str, np.ndarray]) -> np.ndarray:
    return mahalanobis_distances(
        kw["delta"], kw["shared_cov"], low_rank=kw["low_rank"], diag=kw["diag"]
    )


@pytest.mark.parametrize("name", ["delta", "shared_cov", "low_rank", "diag"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_raises_naming_argument(name: str, bad: float) -> None:
    kw = valid_inputs()
    assert np.all(np.isfinite(call(kw)))  # the untouched inputs are fine
    arr = kw[name].copy()
    arr.flat[0] = bad
    kw[name] = arr
    with pytest.raises(ValueError, match=name):
        call(kw)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("delta", (6,)),
        ("delta", (0, 4)),
        ("shared_cov", (5, 5)),
        ("shared_cov", (6, 4)),
        ("low_rank", (4, 5, 2)),
        ("low_rank", (3, 6, 2)),
        ("low_rank", (6, 4)),
        ("diag", (4, 6)),
        ("diag", (6,)),
    ],
)
def test_wrong_shape_raises_naming_argument(name: str, shape: tuple[int, ...]) -> None:
    kw = valid_inputs()
    kw[name] = np.ones(shape)
    with pytest.raises(ValueError, match=name):
        call(kw)


def test_bad_scaled_shape_raises() -> None:
    kw = valid_inputs()
    P, c = make_scaled(np.random.default_rng(0), 6, 4)
    for bad, match in [((P[:5, :5], c), "scaled must be"), ((P, c[:3]), "scaled must be"),
                       ((P, -c), "nonnegative"), ((P + np.triu(np.ones((6, 6)), 1), c),
                                                  "symmetric"),
                       ((np.where(P > 0, np.nan, P), c), "scaled P")]:
        with pytest.raises(ValueError, match=match):
            mahalanobis_distances(kw["delta"], kw["shared_cov"], diag=kw["diag"], scaled=bad)


def test_negative_diag_and_asymmetric_cov_raise() -> None:
    kw = valid_inputs()
    kw["diag"] = kw["diag"].copy()
    kw["diag"][0, 0] = -1e-3
    with pytest.raises(ValueError, match="diag"):
        call(kw)
    kw = valid_inputs()
    kw["shared_cov"] = kw["shared_cov"] + np.triu(np.ones((6, 6)), 1)
    with pytest.raises(ValueError, match="symmetric"):
        call(kw)
