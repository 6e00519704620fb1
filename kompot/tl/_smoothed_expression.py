"""``kompot.tl.compute_smoothed_expression``."""

from __future__ import annotations

import anndata as ad
import numpy as np

from .._keys import SmoothKeys
from ..models import run_smoothed_expression
from . import _inputs as inp
from ._defaults import DE_LS_FACTOR, N_LANDMARKS, OBSM_KEY
from ._input_meaning import check_expression_scale, informative_columns, log1p_base
from ._record import make_record, write_result


def compute_smoothed_expression(
    adata: ad.AnnData,
    groupby: str | None = None,
    condition: str | None = None,
    *,
    obsm_key: str = OBSM_KEY,
    layer: str | None = None,
    genes=None,
    sample_col: str | None = None,
    key_added: str = "kompot_smooth",
    copy: bool = False,
    n_landmarks: int | None = N_LANDMARKS,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float = DE_LS_FACTOR,
    sigma: float = 1.0,
    use_empirical_variance: bool = True,
    random_state: int | None = 0,
    batch_size: int = 500,
    progress: bool = True,
) -> ad.AnnData | None:
    """Impute expression as a smooth function of cell state.

    One expression Gaussian process (:class:`~kompot.ExpressionModel`) is
    fitted to the cells of ``condition`` (all cells if no condition is
    given) and evaluated at every cell of ``adata``, giving denoised
    expression and its uncertainty.

    Parameters
    ----------
    adata
        Annotated data matrix. Expression is read from ``adata.X`` or
        ``adata.layers[layer]`` (dense, CSR or CSC, backed or a dask array; read block by block).
    groupby
        Column of ``adata.obs`` holding conditions; give it together with
        ``condition`` to fit on one condition's cells only. ``None`` (the
        default, with ``condition=None``) fits on all cells.
    condition
        Category of ``groupby`` whose cells the model is fitted to.
    obsm_key
        Cell-state representation in ``adata.obsm``.
    layer
        Layer to read expression from; ``None`` uses ``adata.X``.
    genes
        Genes to smooth, as names or a boolean mask; ``None`` smooths all.
    sample_col
        Column of ``adata.obs`` with replicate samples; adds the variance
        between replicates to the standard deviation.
    key_added
        Prefix of the output layers and key of the record in ``adata.uns``.
    copy
        Return a modified copy instead of writing into ``adata``.
    n_landmarks
        Number of landmarks.
    landmarks
        Landmark coordinates (``n_landmarks x d``) to use instead.
    ls
        Kernel length scale; ``None`` derives it from the data times ``ls_factor``.
    ls_factor
        Multiplier of the data-driven length scale.
    sigma
        Observation noise of the Gaussian process.
    use_empirical_variance
        Add each gene's state-dependent empirical variance to the standard deviation.
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when evaluating.
    progress
        Show progress bars.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes (float32, NaN
    in the columns of genes not smoothed):

    ``adata.layers[f"{key_added}_smoothed"]``
        Smoothed expression at every cell.
    ``adata.layers[f"{key_added}_std"]``
        Its standard deviation (posterior, plus empirical and replicate
        variance where enabled).
    ``adata.uns[key_added]`` : dict
        ``params``, ``version``, ``condition``, ``groupby``, ``obsm_key``,
        ``landmarks``, ``ls`` and ``fields``.

    When the two layers would exceed ``kompot.settings.memory_budget`` (or
    with ``kompot.settings.layers_on_disk = True``) they are written to zarr
    stores and are dask arrays reading them, as for
    :func:`compute_differential_expression` (``docs/scaling.md``).

    Examples
    --------
    >>> adata = kompot.datasets.toy()
    >>> kompot.tl.compute_smoothed_expression(adata, "condition", "control")
    >>> imputed = adata.layers["kompot_smooth_smoothed"]
    """
    params = dict(locals())
    key_added = inp.check_key_added(key_added)
    X, dropped = informative_columns(adata, obsm_key, inp.representation(adata, obsm_key))
    if (groupby is None) != (condition is None):
        raise ValueError(
            "Pass groupby and condition together (to fit on one condition's cells), or neither "
            f"(to fit on all cells); got groupby={groupby!r}, condition={condition!r}."
        )
    if groupby is None:
        mask = np.ones(adata.n_obs, dtype=bool)
    else:
        mask = inp.condition_mask(adata, groupby, condition)
    samples = None
    if sample_col is not None:
        (samples,) = inp.sample_labels(adata, sample_col, (mask,), (condition or "all cells",))
    source = inp.expression_source(adata, layer)
    gene_idx = inp.gene_indices(adata, genes)
    if genes is not None:
        params["genes"] = adata.var_names[gene_idx].tolist()
    landmarks = inp.check_landmarks(landmarks, X.shape[1], obsm_key)
    n_landmarks = inp.check_positive(n_landmarks, "n_landmarks", integer=True, allow_none=True)
    ls = inp.check_positive(ls, "ls", allow_none=True)
    ls_factor = inp.check_positive(ls_factor, "ls_factor")
    sigma = inp.check_positive(sigma, "sigma")
    batch_size = inp.check_positive(batch_size, "batch_size", integer=True)
    random_state = inp.check_random_state(random_state)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    cells = inp.expression_rows(source, gene_idx)
    scale = check_expression_scale(cells, gene_idx, what)
    result = run_smoothed_expression(
        X, mask, inp.finite_rows(cells, mask, what), sample_indices=samples,
        landmarks=landmarks, n_landmarks=n_landmarks, ls=ls, ls_factor=ls_factor, sigma=sigma,
        use_empirical_variance=use_empirical_variance, random_state=random_state,
        batch_size=batch_size, progress=progress,
    )
    record = make_record(
        params, obsm_key=obsm_key, groupby=groupby, condition=condition,
        log_base=log1p_base(adata), expression_scale=scale or "log-normalised",
        obsm_columns_dropped=dropped, **result.fitted,
    )
    return write_result(adata, SmoothKeys(key_added), result, record, gene_idx=gene_idx,
                        copy=copy)
