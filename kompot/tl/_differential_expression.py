"""``kompot.tl.compute_differential_expression``."""

from __future__ import annotations

import anndata as ad
import numpy as np

from .._keys import DEKeys
from ..models import run_differential_expression
from . import _inputs as inp
from ._defaults import DE_LS_FACTOR, N_LANDMARKS, N_NULL_GENES, N_PERMUTATIONS, OBSM_KEY
from ._input_meaning import check_expression_scale, informative_columns, log1p_base
from ._record import make_record, write_result

# Cells predicted at once; None: from kompot.settings.memory_budget (read at
# call time, so that tests can shrink it).
_PREDICT_CHUNK = None


def compute_differential_expression(
    adata: ad.AnnData,
    groupby: str,
    condition1: str,
    condition2: str,
    *,
    obsm_key: str = OBSM_KEY,
    layer: str | None = None,
    genes=None,
    sample_col: str | None = None,
    covariates=None,
    key_added: str = "kompot_de",
    copy: bool = False,
    n_landmarks: int | None = N_LANDMARKS,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float = DE_LS_FACTOR,
    sigma: float = 1.0,
    use_empirical_variance: bool = True,
    allow_single_condition_variance: bool = False,
    moderate_replicates: bool = True,
    fdr: bool = True,
    fdr_threshold: float = 0.05,
    n_permutations: int = N_PERMUTATIONS,
    n_null_genes: int | None = N_NULL_GENES,
    store_layers: bool = True,
    random_state: int | None = 0,
    batch_size: int = 500,
    client=None,
    progress: bool = True,
) -> ad.AnnData | None:
    """Which genes change between two conditions, and in which cell states?

    Each condition's expression is a Gaussian process over cell states
    (:class:`~kompot.DifferentialExpression`), fitted on landmarks and a
    length scale shared by both conditions. The smoothed expression and its
    uncertainty are evaluated at **every** cell of ``adata``; each gene gets a
    Mahalanobis distance between the two conditions' expression surfaces
    (at the landmarks, with both posteriors' covariance) and, with ``fdr``,
    a significance from a null distribution obtained by permuting the
    condition labels while keeping every cell's state: whole replicate
    samples when ``sample_col`` is given, otherwise cells within small groups
    of similar states, so that each condition keeps its cell-state
    composition (see ``docs/significance.md``).

    Parameters
    ----------
    adata
        Annotated data matrix. Expression is read from ``adata.X`` or
        ``adata.layers[layer]`` (usually log-normalised): dense, CSR or CSC,
        a backed file (``read_h5ad(path, backed="r")``) or a dask array
        (``anndata.experimental.read_elem_lazy``), one block of cells at a
        time and never copied whole.
    groupby
        Column of ``adata.obs`` holding the condition of each cell.
    condition1
        Reference condition, a category of ``groupby``.
    condition2
        Condition compared with the reference; positive fold changes mean
        higher expression in ``condition2``.
    obsm_key
        Cell-state representation in ``adata.obsm`` (e.g. diffusion
        components or ``"X_pca"``).
    layer
        Layer to read expression from; ``None`` uses ``adata.X``.
    genes
        Genes to analyse, as names or a boolean mask over ``adata.var_names``;
        ``None`` analyses all. Genes are independent given the cell-state
        model, so a subset gives the same values as the full run for the
        deterministic fields (not for the FDR fields, whose null is pooled
        over the analysed genes).
    sample_col
        Column of ``adata.obs`` with replicate samples nested in the
        conditions; adds between-replicate variance and makes the null swap
        whole samples.
    covariates
        Column(s) of ``adata.obs`` whose effect on expression is removed
        before the conditions are compared (e.g. ``["batch"]``, ``"sex"``,
        ``"age"``). Categorical columns enter as one indicator per level
        besides the first, numeric ones linearly. Each gene's covariate
        effect is learned from cells of the same condition and a similar
        cell state (``docs/significance.md``), so a covariate must vary
        within a condition: one nested in the conditions raises a ValueError.
    key_added
        Prefix of every output field and key of the record in ``adata.uns``.
        Re-running with the same key replaces that run's fields.
    copy
        Return a modified copy instead of writing into ``adata``.
    n_landmarks
        Number of landmarks shared by both conditions.
    landmarks
        Landmark coordinates (``n_landmarks x d``) to use instead.
    ls
        Kernel length scale; ``None`` derives it from the data times ``ls_factor``.
    ls_factor
        Multiplier of the data-driven length scale.
    sigma
        Observation noise of the expression Gaussian processes.
    use_empirical_variance
        Add each gene's state-dependent empirical variance to the uncertainty.
    allow_single_condition_variance
        With ``sample_col``, allow one condition without replicates; the
        other condition's replicate variance then stands in for both.
    moderate_replicates
        With ``sample_col``, shrink each gene's replicate covariance towards
        what all genes share (empirical Bayes, as limma moderates variances)
        before the distances are computed. With two to five samples per
        condition a gene's own replicate covariance is estimated from almost
        nothing; moderation is what gives the test its power there, and the
        null applies it too, so the FDR stays calibrated
        (``docs/significance.md``). Ignored without ``sample_col``.
    fdr
        Compute p-values and false-discovery rates from the permutation null.
    fdr_threshold
        Tail FDR at or below which a gene is called differentially expressed.
    n_permutations
        Label permutations of the null (each refits both conditions for all
        analysed genes, whose distances are pooled into the null).
    n_null_genes
        Genes drawn at random per permutation for the null (all analysed
        genes when there are fewer); ``None`` uses all. The null then costs
        ``n_permutations`` refits of at most this many genes, whatever the
        panel size. Beyond the ``n_permutations * n_null_genes`` null
        distances, p-values come from a generalised Pareto fit to the null's
        tail, which is valid but conservative: with replicates (few distinct
        sample splits) and thousands of genes, ``None`` finds more genes at
        the same FDR (``docs/significance.md``).
    store_layers
        Write the cells x genes layers (five float32 arrays of
        ``n_obs x n_vars``: 40 GB at a million cells and 2,000 genes).
        Layers larger than ``kompot.settings.memory_budget`` are written to
        zarr stores on disk (under ``kompot.settings.layers_dir``) a chunk
        of cells at a time and stored as dask arrays reading them
        (``docs/scaling.md``; ``kompot.settings.layers_on_disk`` forces
        either way). ``False`` writes the per-gene results only, and then
        memory does not grow with cells x genes (the expression is read in
        blocks, and the mean fold change needs no per-cell arrays).
    random_state
        Seed of the landmark selection and of the permutations.
    batch_size
        Cells per block when evaluating.
    client
        Where the genes are computed (in blocks): ``None`` follows
        ``kompot.settings.dask_client`` (by default in this process),
        ``False`` computes in this process, a ``distributed.Client`` or a
        scheduler address on that Dask cluster (``pip install
        'kompot[dask]'``). The results are the same either way
        (``docs/scaling.md``).
    progress
        Show progress bars.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. With
    ``prefix = f"{key_added}_{condition1}_to_{condition2}"``, per gene (NaN,
    or ``False`` for ``is_de``, at genes not analysed):

    ``adata.var[f"{prefix}_mean_lfc"]`` : float64
        Mean fold change over the cells of both conditions.
    ``adata.var[f"{prefix}_mahalanobis"]`` : float64
        Mahalanobis distance between the two conditions.
    ``adata.var[f"{prefix}_pvalue"]``, ``[f"{prefix}_local_fdr"]``, ``[f"{prefix}_tail_fdr"]`` : float64
        Empirical p-value, local and tail FDR (only with ``fdr=True``).
    ``adata.var[f"{prefix}_is_de"]`` : bool
        Tail FDR at most ``fdr_threshold`` (only with ``fdr=True``).

    Per cell and gene (float32, NaN in columns of genes not analysed; only
    with ``store_layers=True``):

    ``adata.layers[f"{key_added}_{condition}_smoothed"]``
        Smoothed expression, one layer per condition.
    ``adata.layers[f"{key_added}_{condition}_std"]``
        Its standard deviation (posterior, empirical and replicate variance),
        one layer per condition.
    ``adata.layers[f"{prefix}_fold_change"]``
        ``condition2`` minus ``condition1`` smoothed expression.
    ``adata.uns[key_added]`` : dict
        ``params``, ``version``, ``condition1``, ``condition2``, ``groupby``,
        ``obsm_key``, ``landmarks``, ``ls``, with ``sample_col`` and
        ``moderate_replicates`` the ``replicate_prior`` (``df``, ``scale``,
        ``residual_df``, ``weight``) and ``fields`` (names written,
        by slot).

    Examples
    --------
    >>> adata = kompot.datasets.toy()
    >>> kompot.tl.compute_differential_expression(adata, "condition", "control", "treated")
    >>> hits = adata.var.query("kompot_de_control_to_treated_is_de")
    """
    params = dict(locals())
    # Where it ran does not change the results, and a client cannot be stored.
    del params["client"]
    key_added = inp.check_key_added(key_added)
    X, dropped = informative_columns(adata, obsm_key, inp.representation(adata, obsm_key))
    mask1, mask2 = inp.condition_masks(adata, groupby, condition1, condition2)
    samples = [None, None]
    if sample_col is not None:
        samples = inp.sample_labels(
            adata, sample_col, (mask1, mask2), (condition1, condition2),
            allow_single_condition_variance=allow_single_condition_variance,
        )
    designs, names = (None, None), None
    if covariates is not None:
        designs, names = inp.covariate_design(adata, covariates, (mask1, mask2), groupby)
        params["covariates"] = [covariates] if isinstance(covariates, str) else list(covariates)
    source = inp.expression_source(adata, layer)
    gene_idx = inp.gene_indices(adata, genes)
    if genes is not None:
        params["genes"] = adata.var_names[gene_idx].tolist()
    options = dict(
        landmarks=inp.check_landmarks(landmarks, X.shape[1], obsm_key),
        n_landmarks=inp.check_positive(n_landmarks, "n_landmarks", integer=True, allow_none=True),
        ls=inp.check_positive(ls, "ls", allow_none=True),
        ls_factor=inp.check_positive(ls_factor, "ls_factor"),
        sigma=inp.check_positive(sigma, "sigma"),
        batch_size=inp.check_positive(batch_size, "batch_size", integer=True),
        random_state=inp.check_random_state(random_state),
        **_fdr_options(fdr, fdr_threshold, n_permutations, n_null_genes),
    )
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    # Views of the expression, read a block of cells at a time: never copied whole.
    cells = inp.expression_rows(source, gene_idx)
    scale = check_expression_scale(cells, gene_idx, what)
    result = run_differential_expression(
        X, mask1, mask2, inp.finite_rows(cells, mask1, what), inp.finite_rows(cells, mask2, what),
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        allow_single_condition_variance=allow_single_condition_variance,
        moderate_replicates=inp.check_bool(moderate_replicates, "moderate_replicates"),
        condition1_covariates=designs[0], condition2_covariates=designs[1],
        covariate_names=names,
        use_empirical_variance=use_empirical_variance, layers=store_layers,
        predict_chunk=_PREDICT_CHUNK, client=client, progress=progress, **options,
    )
    record = make_record(
        params, obsm_key=obsm_key, groupby=groupby, condition1=str(condition1),
        condition2=str(condition2), log_base=log1p_base(adata),
        expression_scale=scale or "log-normalised", obsm_columns_dropped=dropped,
        **result.fitted,
    )
    keys = DEKeys(key_added, str(condition1), str(condition2))
    return write_result(adata, keys, result, record, gene_idx=gene_idx, copy=copy)


def _fdr_options(fdr, fdr_threshold, n_permutations, n_null_genes) -> dict:
    """The null's options, checked only when the FDR is computed."""
    if not fdr:
        return dict(fdr=False, fdr_threshold=fdr_threshold, n_permutations=n_permutations,
                    n_null_genes=n_null_genes)
    return dict(
        fdr=True,
        fdr_threshold=inp.check_probability(fdr_threshold, "fdr_threshold"),
        n_permutations=inp.check_positive(n_permutations, "n_permutations", integer=True),
        n_null_genes=inp.check_positive(n_null_genes, "n_null_genes", integer=True,
                                        allow_none=True),
    )
