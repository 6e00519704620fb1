"""Where the hot array products run: numpy (the default) or JAX, chosen by ``kompot.settings``.

``kompot.settings.compute_backend = "jax"`` moves the products that grow with
cells, genes or landmarks onto JAX's default device (a GPU when JAX has one):
Matérn-5/2 kernel blocks, the expression fits' sums over blocks of cells,
the mean and posterior variance predicted at blocks of cells, and the
whitening solves of the per-gene Mahalanobis distances
(one Cholesky per gene, batched over a block of genes with ``jax.vmap``).
``"jax:cpu"`` or ``"jax:gpu"`` name the platform. Everything else (fits of
hyperparameters, FDR, the small per-block bookkeeping) stays in numpy, and
every function here takes and returns numpy arrays.

JAX is imported only when the setting asks for it, and kompot changes none
of JAX's global configuration: float64 is switched on with JAX's
``enable_x64`` context around each call (thread-local), and the device with
``jax.default_device``; neither leaks into the user's own JAX code.
On JAX's CPU, BLAS is limited to one thread during each call (JAX's
Cholesky and triangular solves use scipy's LAPACK there).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import cache
from types import SimpleNamespace

import numpy as np

from ..parallel import single_threaded_blas

NUMPY = "numpy"
JAX = "jax"
# Bytes of per-gene covariance copies one vmapped block of Mahalanobis solves may hold.
_BATCHED_FACTOR_BYTES = 1024**3


def checked_backend(value) -> str:
    """``value`` as a backend name if it is usable here, else raise naming the fix.

    ``"jax"`` and ``"jax:<platform>"`` import JAX (and, with a platform, ask it
    for that platform's devices), so an unusable choice fails when it is set,
    not in the middle of a run.
    """
    if not isinstance(value, str) or not (value == NUMPY or value.split(":")[0] == JAX):
        raise ValueError(
            f"compute_backend must be 'numpy', 'jax' or 'jax:<platform>' such as 'jax:gpu'; "
            f"got {value!r}."
        )
    if value == NUMPY:
        return value
    try:
        import jax
    except ImportError as err:
        raise ImportError(
            f"compute_backend={value!r} needs JAX, which could not be imported ({err}). Install "
            "it (`pip install jax`, or `pip install 'jax[cuda12]'` for NVIDIA GPUs) or keep "
            "compute_backend='numpy'."
        ) from err
    platform = value.partition(":")[2]
    if platform:
        try:
            jax.devices(platform)
        except RuntimeError as err:
            raise ValueError(
                f"compute_backend={value!r}: JAX has no {platform!r} device here ({err}). Use "
                "'jax' for JAX's default device, or install the JAX build for that platform."
            ) from err
    return value


def uses_jax() -> bool:
    """Whether ``kompot.settings.compute_backend`` asks for JAX."""
    from .._settings import settings

    return settings.compute_backend != NUMPY


@contextmanager
def _on_device():
    """JAX with float64 on the chosen device, for the duration of one call."""
    import jax

    from .._settings import settings

    platform = settings.compute_backend.partition(":")[2]
    device = jax.devices(platform)[0] if platform else jax.devices()[0]
    # On the CPU, JAX's Cholesky and triangular solves call the LAPACK of
    # scipy's OpenBLAS, whose threads collapse on these mid-sized matrices
    # (see linalg.py): one BLAS thread, as kompot's own factorisations use.
    blas = single_threaded_blas() if device.platform == "cpu" \
        else nullcontext()
    with jax.enable_x64(True), jax.default_device(device), blas:
        yield _jax_functions()


@cache
def _jax_functions() -> SimpleNamespace:
    """The jitted JAX forms of the products, built on first use."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    from .kernel import _DISTANCE_GUARD, _SQRT5

    @jax.jit
    def matern52(X, Y, ls):
        sq = (jnp.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ Y.T)
              + jnp.einsum("ij,ij->i", Y, Y)[None, :] + _DISTANCE_GUARD)
        r = jnp.sqrt(jnp.maximum(sq, 0.0)) * (_SQRT5 / ls)
        return (1.0 + r + r * r / 3.0) * jnp.exp(-r)

    @jax.jit
    def lower_solve(L, B):
        return solve_triangular(L, B, lower=True)

    @jax.jit
    def kernel_block(X, valid, U, ls, Lp):
        K = matern52(X, U, ls) * valid[:, None]  # padded rows of X contribute nothing
        return K, solve_triangular(Lp, K.T, lower=True)

    @jax.jit
    def take_columns(As, idx, valid):
        return jnp.take(As, idx, axis=1) * valid[None, :]  # padded positions are zeroed

    @jax.jit
    def gram(A):
        return A @ A.T

    @jax.jit
    def squared_residual_products(A, LB, whitened_weights, R, sigma):
        h = jnp.sum(solve_triangular(LB, A, lower=True) ** 2, axis=0) / sigma**2
        r2 = (R - A.T @ whitened_weights) ** 2 / jnp.maximum(1.0 - h, 1e-12)[:, None] ** 2
        return A @ r2

    @jax.jit
    def posterior_variance(As, LB, prior_diag):
        C = solve_triangular(LB, As, lower=True)
        return jnp.maximum(prior_diag - jnp.sum(As**2, axis=0) + jnp.sum(C**2, axis=0), 0.0)

    @jax.jit
    def woodbury_finish(z, W):
        Q, R = jnp.linalg.qr(W)
        y = jnp.einsum("bmr,bm->br", Q, z)
        perp = z - jnp.einsum("bmr,br->bm", Q, y)
        S = jnp.eye(R.shape[1]) + R @ jnp.swapaxes(R, 1, 2)
        s = solve_triangular(jnp.linalg.cholesky(S), y[..., None], lower=True)[..., 0]
        return jnp.einsum("bm,bm->b", perp, perp) + jnp.einsum("br,br->b", s, s)

    def _whiten_one(A, P, c, v, rhs):
        L = jnp.linalg.cholesky(A + c * P + jnp.diag(v))  # NaN when not positive definite
        return solve_triangular(L, rhs, lower=True)

    @jax.jit
    def per_gene_squares(A, P, c, v, delta):
        Z = jax.vmap(_whiten_one, in_axes=(None, None, 0, 1, 1), out_axes=1)(A, P, c, v, delta)
        return jnp.einsum("mg,mg->g", Z, Z)

    @jax.jit
    def per_gene_woodbury(A, P, c, v, delta, B):
        rhs = jnp.concatenate([delta.T[:, :, None], B], axis=2)  # (b, m, 1 + K)
        Z = jax.vmap(_whiten_one, in_axes=(None, None, 0, 1, 0))(A, P, c, v, rhs)
        return woodbury_finish(Z[:, :, 0], Z[:, :, 1:])

    @jax.jit
    def shared_woodbury(L, z, B):
        b, m, k = B.shape
        W = solve_triangular(L, jnp.moveaxis(B, 1, 0).reshape(m, b * k), lower=True)
        return woodbury_finish(z, jnp.moveaxis(W.reshape(m, b, k), 1, 0))

    return SimpleNamespace(
        matern52=matern52, lower_solve=lower_solve, kernel_block=kernel_block,
        matmul=jax.jit(jnp.matmul), gram=gram, take_columns=take_columns,
        squared_residual_products=squared_residual_products,
        posterior_variance=posterior_variance,
        per_gene_squares=per_gene_squares, per_gene_woodbury=per_gene_woodbury,
        shared_woodbury=shared_woodbury, asarray=jnp.asarray,
    )


def _bucket(n: int) -> int:
    """A size at least ``n`` from a short list (powers of 2, then multiples of 1024).

    JAX compiles once per array shape; padding the varying dimension (cells
    per block or per permutation, genes per block) to these sizes keeps the
    number of compilations small.
    """
    if n <= 1024:
        return 1 << max(n - 1, 0).bit_length()
    return -(-n // 1024) * 1024


def _padded(a: np.ndarray, axis: int, fill: float = 0.0) -> np.ndarray:
    """``a`` extended along ``axis`` to its bucket size with ``fill``."""
    n = a.shape[axis]
    if _bucket(n) == n:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, _bucket(n) - n)
    return np.pad(a, widths, constant_values=fill)


def matern52(X: np.ndarray, Y: np.ndarray, ls: float) -> np.ndarray:
    """The Matérn-5/2 kernel matrix ``k(X, Y)`` computed with JAX, as a numpy array."""
    with _on_device() as jx:
        K = jx.matern52(jx.asarray(_padded(X, 0)), jx.asarray(Y), float(ls))
        return np.asarray(K)[: X.shape[0]]


def lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-1} B`` for lower-triangular ``L``, computed with JAX, as a numpy array."""
    with _on_device() as jx:
        return np.asarray(jx.lower_solve(jx.asarray(L), jx.asarray(_padded(B, 1))))[:, : B.shape[1]]


class KernelBlock:
    """``K = k(X, U)`` and ``As = Lp^{-1} K^T`` of a block of points, kept on the JAX device.

    Predictions from several fits on the same landmarks (both conditions'
    means, empirical variances and posterior variances) are products with
    this one block, and so are a fit's sums over its cells (``As`` is the
    whitened kernel ``A`` of :mod:`kompot.core.function_gp`); so the block is
    built once and never copied back whole, only the products are. ``cache``
    holds arrays shared by the blocks (landmarks, factors, weights) on the
    device.
    """

    def __init__(self, X, landmarks, ls: float, Lp, cache: dict, keep_kernel: bool = True):
        self._cache = cache
        self._n = X.shape[0]
        valid = np.zeros(_bucket(self._n))
        valid[: self._n] = 1.0
        with _on_device() as jx:
            # Rows are padded to a bucket size; the padding is zeroed in K.
            self._K, self._As = jx.kernel_block(
                jx.asarray(_padded(X, 0)), jx.asarray(valid), self._put(landmarks), float(ls),
                self._put(Lp))
            self._As.block_until_ready()  # the solve runs inside the BLAS limit of _on_device
        if not keep_kernel:  # a fit needs only As: free K's device memory
            self._K = None

    def columns(self, idx: np.ndarray) -> KernelBlock:
        """The block of some of its points (positions ``idx``), as ``As`` only (no ``K``)."""
        sub = object.__new__(KernelBlock)
        sub._cache, sub._n, sub._K = self._cache, len(idx), None
        valid = np.zeros(_bucket(sub._n))
        valid[: sub._n] = 1.0
        with _on_device() as jx:
            sub._As = jx.take_columns(self._As, jx.asarray(_padded(np.asarray(idx), 0)),
                                      jx.asarray(valid))
        return sub

    @property
    def nbytes(self) -> int:
        """Device bytes of the block's arrays."""
        return sum(int(a.size) * 8 for a in (self._K, self._As) if a is not None)

    def _put(self, a: np.ndarray):
        """``a`` on the device, transferred once per ``cache`` (keyed by identity)."""
        key = id(a)
        if key not in self._cache:
            with _on_device() as jx:
                self._cache[key] = (a, jx.asarray(a))  # holding ``a`` keeps its id unique
        return self._cache[key][1]

    def times_into(self, W: np.ndarray, out: np.ndarray) -> None:
        """``out[:] = K @ W``."""
        with _on_device() as jx:
            out[:] = np.asarray(jx.matmul(self._K, self._put(W)))[: self._n]

    def gram(self) -> np.ndarray:
        """``As As^T`` (landmarks x landmarks)."""
        with _on_device() as jx:
            return np.asarray(jx.gram(self._As))

    def times(self, R: np.ndarray) -> np.ndarray:
        """``As @ R`` for ``R`` with one row per point of the block."""
        with _on_device() as jx:
            return np.asarray(jx.matmul(self._As, jx.asarray(_padded(R, 0))))

    def smoothed_squared_residuals(self, LB, whitened_weights, R, sigma: float) -> np.ndarray:
        """``As @ r2`` with ``r2`` the leverage-corrected squared residuals of ``R``.

        The residual is ``R - As^T whitened_weights`` and the leverage
        ``|LB^{-1} As_x|^2 / sigma^2``, as in
        :func:`kompot.core.function_gp.fit_function_parts`.
        """
        with _on_device() as jx:
            return np.asarray(jx.squared_residual_products(
                self._As, self._put(LB), self._put(whitened_weights), jx.asarray(_padded(R, 0)),
                float(sigma)))

    def posterior_variance(self, LB: np.ndarray, prior_diag: np.ndarray) -> np.ndarray:
        """``max(k(x, x) - |As_x|^2 + |LB^{-1} As_x|^2, 0)`` per point (as ``FunctionFit``)."""
        with _on_device() as jx:
            prior_diag = jx.asarray(_padded(prior_diag, 0, 1.0))
            return np.asarray(jx.posterior_variance(self._As, self._put(LB), prior_diag))[: self._n]


def shared_factor_woodbury(L: np.ndarray, z: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``z_g^T (I + W_g W_g^T)^{-1} z_g`` with ``W_g = L^{-1} B_g`` for a block of genes."""
    with _on_device() as jx:
        d2 = jx.shared_woodbury(jx.asarray(L), jx.asarray(_padded(z, 0)), jx.asarray(_padded(B, 0)))
        return np.asarray(d2)[: z.shape[0]]


def per_gene_factor_block(A, v, delta, B, scaled=None) -> np.ndarray:
    """Squared distances of a block of genes with their own Cholesky of ``A + c_g P + diag(v_g)``.

    ``v`` and ``delta`` are (m, b), ``B`` (b, m, K) or ``None``, ``scaled`` the
    pair ``(P, c)`` or ``None``. A gene whose covariance is not numerically
    positive definite comes back as NaN (JAX's Cholesky does not raise), for
    the caller to redo with jitter.
    """
    b = delta.shape[1]
    P, c = (np.zeros_like(A), np.zeros(b)) if scaled is None else scaled
    # Padded genes get v = 1 (a positive definite covariance) and no difference.
    with _on_device() as jx:
        args = (jx.asarray(A), jx.asarray(P), jx.asarray(_padded(c, 0)),
                jx.asarray(_padded(v, 1, 1.0)), jx.asarray(_padded(delta, 1)))
        if B is None:
            return np.asarray(jx.per_gene_squares(*args))[:b]
        return np.asarray(jx.per_gene_woodbury(*args, jx.asarray(_padded(B, 0))))[:b]


def genes_per_factor_block(m: int, batch_size: int) -> int:
    """Genes per vmapped block: ``batch_size`` at most, their m x m copies within budget.

    A power of 2, so that padding the block to its bucket size adds nothing.
    """
    size = int(max(1, min(batch_size, _BATCHED_FACTOR_BYTES // (4 * 8 * m * m))))
    return 1 << (size.bit_length() - 1)
