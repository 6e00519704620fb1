"""``kompot.tl.compute_differential_expression``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import DEKeys
from ..core.blocks import block_slices
from ..models import DifferentialExpression
from ..models.null import expression_null_distances
from . import _inputs as inp
from ._defaults import DE_LS_FACTOR, N_LANDMARKS, N_NULL_GENES, N_PERMUTATIONS, OBSM_KEY
from ._input_meaning import check_expression_scale, informative_columns, log1p_base
from ._record import make_record, write_run

# Cells predicted at once; bounds the float64 working memory to chunk x genes.
_PREDICT_CHUNK = 20_000


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
    key_added: str = "kompot_de",
    copy: bool = False,
    n_landmarks: int | None = N_LANDMARKS,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float = DE_LS_FACTOR,
    sigma: float = 1.0,
    use_empirical_variance: bool = True,
    allow_single_condition_variance: bool = False,
    fdr: bool = True,
    fdr_threshold: float = 0.05,
    n_permutations: int = N_PERMUTATIONS,
    n_null_genes: int | None = N_NULL_GENES,
    store_layers: bool = True,
    random_state: int | None = 0,
    batch_size: int = 500,
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
        ``adata.layers[layer]`` (dense, CSR or CSC; usually log-normalised).
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
        ``n_obs x n_vars``: 40 GB at a million cells and 2,000 genes);
        ``False`` writes the per-gene results only, and then memory does not
        grow with cells x genes (cells are predicted in chunks).
    random_state
        Seed of the landmark selection and of the permutations.
    batch_size
        Cells per block when evaluating.
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
        ``obsm_key``, ``landmarks``, ``ls`` and ``fields`` (names written,
        by slot).

    Examples
    --------
    >>> adata = kompot.datasets.toy()
    >>> kompot.tl.compute_differential_expression(adata, "condition", "control", "treated")
    >>> hits = adata.var.query("kompot_de_control_to_treated_is_de")
    """
    params = dict(locals())
    # ---- validate everything before any computation or write
    key_added = inp.check_key_added(key_added)
    X, dropped = informative_columns(adata, obsm_key, inp.representation(adata, obsm_key))
    mask1, mask2 = inp.condition_masks(adata, groupby, condition1, condition2)
    samples = [None, None]
    if sample_col is not None:
        samples = inp.sample_labels(
            adata, sample_col, (mask1, mask2), (condition1, condition2),
            allow_single_condition_variance=allow_single_condition_variance,
        )
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
    if fdr:
        fdr_threshold = inp.check_probability(fdr_threshold, "fdr_threshold")
        n_permutations = inp.check_positive(n_permutations, "n_permutations", integer=True)
        n_null_genes = inp.check_positive(n_null_genes, "n_null_genes", integer=True,
                                          allow_none=True)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    scale = check_expression_scale(source, gene_idx, what)
    Y1 = inp.dense_block(source, mask1, gene_idx, what)
    Y2 = inp.dense_block(source, mask2, gene_idx, what)

    # ---- compute
    de_kwargs = dict(
        n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance,
        random_state=random_state, batch_size=batch_size,
    )
    fit_kwargs = dict(
        sigma=sigma, ls=ls, ls_factor=ls_factor, landmarks=landmarks,
        allow_single_condition_variance=allow_single_condition_variance,
    )
    model = DifferentialExpression(**de_kwargs)
    model.fit(X[mask1], Y1, X[mask2], Y2, condition1_sample_indices=samples[0],
              condition2_sample_indices=samples[1], **fit_kwargs)
    in_pair = mask1 | mask2
    mean_lfc, per_cell = _predict_in_chunks(model, X, in_pair, store_layers, progress)
    mahalanobis = model.compute_mahalanobis_distances(X, progress=progress)
    fitted_ls = model.model1_.ls_
    table = None
    if fdr:
        # The union of both conditions' cells is the same under any relabelling,
        # so the null reuses the real run's landmarks and length scale exactly.
        null_fit = {**fit_kwargs, "landmarks": model.landmarks_, "ls": fitted_ls,
                    "mean_weights": model.prior_mean_weights_,
                    "variance_mean_weights": model.prior_variance_weights_}
        null = expression_null_distances(
            X[mask1], Y1, X[mask2], Y2, n_permutations=n_permutations,
            condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
            de_kwargs=de_kwargs, fit_kwargs=null_fit, n_null_genes=n_null_genes,
            # Whole-sample splits shift all genes' distances together (few
            # samples); single-cell permutations do not, and there the
            # rescaling would only cost power when many genes change.
            rescale_to=None if sample_col is None else mahalanobis,
            random_state=random_state, progress=progress,
        )
        table = model.compute_fdr(null, threshold=fdr_threshold,
                                  gene_names=adata.var_names[gene_idx])

    # ---- write
    keys = DEKeys(key_added, str(condition1), str(condition2))
    per_gene = {keys.mean_lfc: mean_lfc, keys.mahalanobis: mahalanobis}
    if table is not None:
        per_gene.update({
            keys.pvalue: table["pvalue"].to_numpy(),
            keys.local_fdr: table["local_fdr"].to_numpy(),
            keys.tail_fdr: table["tail_fdr"].to_numpy(),
            keys.is_de: table["is_de"].to_numpy(),
        })
    var = {name: _full_column(values, gene_idx, adata.var_names) for name, values in per_gene.items()}
    layers = {}
    if store_layers:
        names = {
            "condition1_smoothed": keys.smoothed(condition1),
            "condition2_smoothed": keys.smoothed(condition2),
            "condition1_std": keys.std(condition1),
            "condition2_std": keys.std(condition2),
            "fold_change": keys.fold_change,
        }
        layers = {names[k]: full_layer(v, gene_idx, adata.n_vars) for k, v in per_cell.items()}
    record = make_record(
        params, landmarks=model.landmarks_, ls=fitted_ls, obsm_key=obsm_key, groupby=groupby,
        condition1=str(condition1), condition2=str(condition2), log_base=log1p_base(adata),
        expression_scale=scale or "log-normalised", obsm_columns_dropped=dropped,
    )
    if copy:
        adata = adata.copy()
    write_run(adata, key_added, record, var=var, layers=layers)
    return adata if copy else None


def _predict_in_chunks(model, X, in_pair, store_layers, progress):
    """Mean fold change over the two conditions' cells, and float32 per-cell results.

    Predicting in chunks of cells keeps only one chunk in float64 at a time, so
    that with ``store_layers=False`` memory does not grow with the number of
    cells times genes.
    """
    chunks = list(block_slices(X.shape[0], _PREDICT_CHUNK, progress=progress,
                               desc="predict expression"))
    per_cell = {}
    fc_sum = None
    for s in chunks:
        part = model.predict(X[s], progress=False)
        in_chunk = part["fold_change"][in_pair[s]].sum(axis=0)
        fc_sum = in_chunk if fc_sum is None else fc_sum + in_chunk
        if not store_layers:
            continue
        for name in ("condition1_smoothed", "condition2_smoothed", "condition1_std",
                     "condition2_std", "fold_change"):
            if name not in per_cell:
                per_cell[name] = np.empty((X.shape[0], part[name].shape[1]), np.float32)
            per_cell[name][s] = part[name]
    return fc_sum / in_pair.sum(), per_cell


def _full_column(values: np.ndarray, gene_idx: np.ndarray, var_names: pd.Index) -> pd.Series:
    """A per-gene result over all genes: NaN (False for booleans) where not analysed."""
    values = np.asarray(values)
    if values.dtype == bool:
        full = np.zeros(len(var_names), dtype=bool)
    else:
        full = np.full(len(var_names), np.nan, dtype=np.float64)
    full[gene_idx] = values
    return pd.Series(full, index=var_names)


def full_layer(values: np.ndarray, gene_idx: np.ndarray, n_vars: int) -> np.ndarray:
    """A cells x analysed-genes result as a float32 cells x all-genes layer, NaN elsewhere.

    float32 halves the memory of these dense layers; the values are smoothed
    estimates whose uncertainty is far above float32 resolution.
    """
    if gene_idx.size == n_vars:
        return np.asarray(values, dtype=np.float32)  # no copy when already float32
    full = np.full((values.shape[0], n_vars), np.nan, dtype=np.float32)
    full[:, gene_idx] = values
    return full
