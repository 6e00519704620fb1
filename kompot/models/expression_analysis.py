"""The whole expression analyses on arrays: differential expression (fit, null, FDR, calls)
and smoothing.

:func:`run_differential_expression` and :func:`run_smoothed_expression` are
what :func:`kompot.tl.compute_differential_expression` and
:func:`kompot.tl.compute_smoothed_expression` run once they have read the
AnnData; an array user gets the same numbers from them.
"""

from __future__ import annotations

import numpy as np

from ..core import precision
from ..core.blocks import block_slices
from ..core.fdr import fdr_dataframe
from ..core.landmarks import shared_hyperparameters
from ..parallel import SerialExecutor, executor_for
from . import gene_blocks
from ._schema import DE_SCHEMA, SMOOTH_SCHEMA, AnalysisResult
from .abundance_analysis import checked_masks
from .covariate_adjustment import check_covariates
from .differential_expression import _check_conditions
from .expression_model import ExpressionModel
from .layer_store import layer_store_for, predict_chunk_size, read_layers, store_chunk_rows
from .replicate_prior import prior_summary


def run_differential_expression(
    X: np.ndarray,
    mask1: np.ndarray,
    mask2: np.ndarray,
    Y1,
    Y2,
    *,
    condition1_sample_indices: np.ndarray | None = None,
    condition2_sample_indices: np.ndarray | None = None,
    allow_single_condition_variance: bool = False,
    moderate_replicates: bool = True,
    condition1_covariates: np.ndarray | None = None,
    condition2_covariates: np.ndarray | None = None,
    covariate_names=None,
    n_landmarks: int | None = None,
    use_empirical_variance: bool = True,
    sigma: float = 1.0,
    ls: float | None = None,
    ls_factor: float = 10.0,
    landmarks: np.ndarray | None = None,
    fdr: bool = True,
    fdr_threshold: float = 0.05,
    n_permutations: int = 5,
    n_null_genes: int | None = None,
    layers: bool = True,
    random_state: int | None = 0,
    batch_size: int = 500,
    predict_chunk: int | None = None,
    layer_store=None,
    gene_block_size: int | None = None,
    client=None,
    progress: bool = False,
) -> AnalysisResult:
    """Which genes change between two conditions: distances, permutation FDR and calls.

    Both conditions' expression is fitted (:class:`DifferentialExpression`),
    every gene gets the Mahalanobis distance between the two fits at the
    landmarks and, with ``fdr``, a p-value, local and tail FDR and a call
    against a null from refits with permuted labels: whole samples when
    sample indices are given, otherwise cells within groups of similar
    states. The smoothed expression is evaluated at every row of ``X``.

    Genes are independent given the landmarks, the length scale and the
    permutations, which are fixed once; the genes are then computed in blocks
    (:mod:`kompot.models.gene_blocks`), in this process or on a Dask cluster,
    with the same results either way.

    Parameters
    ----------
    X, mask1, mask2
        Cell states and the masks of the two conditions' rows, as for
        :func:`~kompot.models.run_differential_abundance`.
    Y1, Y2
        Expression (cells x genes, dense or sparse, or
        :class:`~kompot.core.cell_rows.CellRows` views read block by block)
        of the rows ``X[mask1]`` and ``X[mask2]``, in that order.
    condition1_sample_indices, condition2_sample_indices
        Replicate sample of each cell of ``Y1`` and ``Y2``, or ``None``.
    allow_single_condition_variance
        Allow one condition without replicates.
    moderate_replicates
        With sample indices, shrink each gene's replicate covariance towards
        what all genes share (empirical Bayes; learned from a pilot of up
        to 500 genes, :mod:`kompot.models.replicate_prior`) before the
        distances are computed, in the real fit and in the null alike.
        With few samples per condition this is what gives the test its power
        (``docs/significance.md``).
    condition1_covariates, condition2_covariates
        Numeric covariate design (cells x covariates) of the rows of ``Y1``
        and ``Y2``, or ``None``. Their per-gene linear effects, learned within
        groups of similar states of each condition, are removed from the
        expression before the fits
        (:func:`~kompot.models.covariate_adjustment.adjust_for_covariates`),
        and learned again with each permutation's labels in the null
        (permutations that line up with a covariate are left out).
    covariate_names
        Labels of the covariate columns, for error messages.
    n_landmarks, use_empirical_variance, sigma, ls, ls_factor, landmarks
        As for :class:`DifferentialExpression` and its ``fit``.
    fdr
        Compute the permutation null, p-values, FDRs and calls.
    fdr_threshold
        Tail FDR at or below which a gene is called (``is_de``).
    n_permutations
        Label permutations of the null.
    n_null_genes
        Genes drawn per permutation (``None``: all).
    layers
        Return the cells x genes fields; without them memory does not grow
        with cells x genes (the mean fold change needs no per-cell arrays).
    random_state, batch_size, progress
        Seed, cells per block and progress bars.
    predict_chunk
        Cells predicted at once; ``None``: from ``kompot.settings.memory_budget``
        (:func:`~kompot.models.layer_store.predict_chunk_size`).
    layer_store
        Where the layers go: ``None`` follows ``kompot.settings``
        (``layers_on_disk``: by default to disk when they would exceed
        ``memory_budget``; ``layers_dir``), ``False`` in memory, ``True`` to
        disk under ``settings.layers_dir``, a directory path to disk under
        it. On disk each chunk of cells is written into zarr stores in a new
        subdirectory, and the layers are returned as dask arrays reading
        them (:mod:`kompot.models.layer_store`).
    gene_block_size
        Genes per block. ``None``: in this process one block (all genes at
        once, the fastest); on a cluster blocks within a memory budget per
        worker, at least one per worker thread
        (:func:`~kompot.models.gene_blocks.gene_block_size`). Each block
        repeats the kernel factorisations of all cells, so small blocks
        bound memory at the cost of time.
    client
        Where the gene blocks run: ``None`` follows
        ``kompot.settings.dask_client`` (by default in this process),
        ``False`` computes in this process, a ``distributed.Client`` or a
        scheduler address on that Dask cluster.

    Returns
    -------
    An :class:`AnalysisResult` over :data:`DE_SCHEMA`: per gene of ``Y1``
    and per row of ``X`` (layers, float32); ``fitted`` holds ``landmarks``,
    ``ls`` and, with moderated replicates, ``replicate_prior`` (its degrees of
    freedom ``df``, ``scale``, ``residual_df`` and the ``weight`` of a gene's
    own covariance); ``model`` is the fitted :class:`DifferentialExpression` when all
    genes formed one block computed in this process, else ``None``.
    """
    samples = (condition1_sample_indices, condition2_sample_indices)
    X, mask1, mask2 = checked_masks(X, mask1, mask2)
    if (condition1_covariates is None) != (condition2_covariates is None):
        raise ValueError("Give covariates for both conditions' cells, or for neither.")
    covariates = None
    if condition1_covariates is not None:
        check_covariates(X[mask1], condition1_covariates, X[mask2], condition2_covariates,
                         names=covariate_names)
        covariates = (condition1_covariates, condition2_covariates, covariate_names)
    _check_conditions(X[mask1], Y1, X[mask2], Y2)
    store = layer_store_for(layer_store, X.shape[0], Y1.shape[1],
                            len(gene_blocks.LAYERS)) if layers else None
    # Fixed once for all gene blocks (DifferentialExpression.fit would choose
    # the same from the same cells and seed).
    landmarks, ls = shared_hyperparameters(
        [X[mask1], X[mask2]], n_landmarks=n_landmarks, landmarks=landmarks, ls=ls,
        ls_factor=ls_factor, random_state=random_state)
    predict_chunk = predict_chunk or predict_chunk_size(X.shape[0], Y1.shape[1], layers,
                                                        n_landmarks=len(landmarks))
    null = None
    if fdr:
        null = gene_blocks.plan_null(X[mask1], Y1, X[mask2], Y2, samples, landmarks,
                                     n_permutations=n_permutations, n_null_genes=n_null_genes,
                                     random_state=random_state,
                                     covariates=None if covariates is None else covariates[:2])
    with executor_for(client) as executor:
        in_process = isinstance(executor, SerialExecutor)
        blocks = gene_blocks.gene_blocks(Y1, Y2, gene_block_size or (
            Y1.shape[1] if in_process else gene_blocks.gene_block_size(
                X.shape[0], Y1.shape[1], layers, executor.slots)))
        plan = gene_blocks.GeneBlockPlan(
            X, mask1, mask2, samples,
            de_kwargs=dict(n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance,
                           random_state=random_state, batch_size=batch_size),
            fit_kwargs=dict(sigma=sigma, ls=ls, ls_factor=ls_factor, landmarks=landmarks,
                            allow_single_condition_variance=allow_single_condition_variance),
            layers=layers, predict_chunk=predict_chunk, null=null, layer_store=store,
            covariates=covariates, precision=precision.resolved(int(mask1.sum() + mask2.sum())),
            keep_model=in_process and len(blocks) == 1,
            progress=progress and in_process and len(blocks) == 1)
        if moderate_replicates:
            plan = gene_blocks.with_replicate_prior(plan, Y1, Y2, len(blocks))
        parts = executor.map(gene_blocks.fit_gene_block, plan, blocks, progress=progress,
                             desc="DE gene blocks")
    values = _joined(parts, X.shape[0], Y1.shape[1])
    if fdr:
        # Whole-sample splits shift all genes' distances together (few
        # samples); single-cell permutations do not, and there the
        # rescaling would only cost power when many genes change.
        rescale_to = None if samples[0] is None else values["mahalanobis"]
        pooled = gene_blocks.pooled_null([p["null"] for p in parts], rescale_to)
        table = fdr_dataframe(values["mahalanobis"], pooled, fdr_threshold)
        values.update({name: table[name].to_numpy()
                       for name in ("pvalue", "local_fdr", "tail_fdr", "is_de")})
    options = ({"fdr"} if fdr else set()) | ({"layers"} if layers else set())
    fitted = dict(landmarks=landmarks, ls=ls)
    if parts[0]["replicate_prior"] is not None:
        fitted["replicate_prior"] = prior_summary(parts[0]["replicate_prior"])
    return AnalysisResult(DE_SCHEMA, values, fitted, options, parts[0].get("model"))


def _joined(parts: list[dict], n_cells: int, n_genes: int) -> dict[str, np.ndarray]:
    """The gene blocks' per-gene results and layers, in gene order."""
    values = gene_blocks.joined_layers([p["layers"] for p in parts], n_cells, n_genes)
    for name in ("mean_lfc", "mahalanobis"):
        values[name] = np.concatenate([p[name] for p in parts])
    return values


def run_smoothed_expression(
    X: np.ndarray,
    mask: np.ndarray,
    Y,
    *,
    sample_indices: np.ndarray | None = None,
    n_landmarks: int | None = None,
    use_empirical_variance: bool = True,
    random_state: int | None = 0,
    batch_size: int = 500,
    sigma: float = 1.0,
    ls: float | None = None,
    ls_factor: float = 10.0,
    landmarks: np.ndarray | None = None,
    layer_store=None,
    progress: bool = False,
) -> AnalysisResult:
    """Expression smoothed over cell states, fitted to the rows ``X[mask]``, at every row of ``X``.

    ``Y`` is the expression (cells x genes) of the rows ``X[mask]``;
    ``sample_indices`` their replicate samples, whose spread then enters the
    standard deviation. ``layer_store`` chooses where the two layers go, as
    for :func:`run_differential_expression`: ``None`` follows
    ``kompot.settings`` (to disk when they exceed ``memory_budget``), ``False``
    keeps them in memory, ``True`` or a directory writes zarr stores and
    returns dask arrays. Cells are predicted a chunk at a time either way.
    The other options are those of :class:`ExpressionModel` and its ``fit``.

    Returns
    -------
    An :class:`AnalysisResult` over :data:`SMOOTH_SCHEMA` (``smoothed`` and
    ``std``, rows of ``X`` x genes of ``Y``, float32); ``fitted`` holds
    ``landmarks`` and ``ls``.
    """
    store = layer_store_for(layer_store, X.shape[0], Y.shape[1], 2)
    model = ExpressionModel(n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance,
                            random_state=random_state, batch_size=batch_size)
    mask = np.asarray(mask, bool)
    with precision.using(precision.resolved(int(mask.sum()))):
        model.fit(X[mask], Y, sigma=sigma, ls=ls, ls_factor=ls_factor, landmarks=landmarks,
                  sample_indices=sample_indices)
    chunk = predict_chunk_size(X.shape[0], Y.shape[1], True, n_landmarks=len(model.landmarks_))
    values = _smoothed_in_chunks(model, X, Y.shape[1], chunk, store, progress)
    return AnalysisResult(SMOOTH_SCHEMA, values, dict(landmarks=model.landmarks_, ls=model.ls_),
                          set(), model)


def _smoothed_in_chunks(model, X, n_genes: int, chunk: int, store, progress: bool) -> dict:
    """The model's mean and standard deviation at every row of ``X``, as float32 layers.

    One chunk of cells is held in float64 at a time; with a layer store each
    chunk goes straight into its zarr arrays and dask arrays reading them
    are returned.
    """
    n, genes = X.shape[0], slice(0, n_genes)
    if store is not None:
        # Whole zarr chunks per write: no chunk is read back to be completed.
        rows = store_chunk_rows(chunk, n_genes)
        chunk = chunk // rows * rows
    layers = {}
    for s in block_slices(n, chunk, progress=progress, desc="smooth expression"):
        part = {"smoothed": model.predict(X[s], progress=False),
                "std": model.std(X[s], progress=False)}
        for name, value in part.items():
            if name not in layers:
                layers[name] = (np.empty((n, value.shape[1]), np.float32) if store is None
                                else store.create(name, genes, n, chunk))
            layers[name][s] = value.astype(np.float32, copy=False)
    if store is None:
        return layers
    return read_layers([{name: store.path(name, genes) for name in layers}])
