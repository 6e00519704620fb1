"""The whole expression analyses on arrays: differential expression (fit, null, FDR, calls)
and smoothing.

:func:`run_differential_expression` and :func:`run_smoothed_expression` are
what :func:`kompot.tl.compute_differential_expression` and
:func:`kompot.tl.compute_smoothed_expression` run once they have read the
AnnData; an array user gets the same numbers from them.
"""

from __future__ import annotations

import numpy as np

from ..core.blocks import block_slices
from ._schema import DE_SCHEMA, SMOOTH_SCHEMA, AnalysisResult
from .abundance_analysis import checked_masks
from .differential_expression import DifferentialExpression
from .expression_model import ExpressionModel
from .null import expression_null_distances

# Cells predicted at once; bounds the float64 working memory to chunk x genes.
PREDICT_CHUNK = 20_000
_LAYERS = ("condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std",
           "fold_change")


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
    predict_chunk: int = PREDICT_CHUNK,
    progress: bool = False,
) -> AnalysisResult:
    """Which genes change between two conditions: distances, permutation FDR and calls.

    Both conditions' expression is fitted (:class:`DifferentialExpression`),
    every gene gets the Mahalanobis distance between the two fits at the
    landmarks and, with ``fdr``, a p-value, local and tail FDR and a call
    against a null from refits with permuted labels: whole samples when
    sample indices are given, otherwise cells within groups of similar
    states. The smoothed expression is evaluated at every row of ``X``.

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
        with cells x genes (cells are predicted in chunks).
    random_state, batch_size, progress
        Seed, cells per block and progress bars.
    predict_chunk
        Cells predicted at once.

    Returns
    -------
    An :class:`AnalysisResult` over :data:`DE_SCHEMA`: per gene of ``Y1``
    and per row of ``X`` (layers, float32); ``fitted`` holds ``landmarks`` and ``ls``.
    """
    samples = (condition1_sample_indices, condition2_sample_indices)
    X, mask1, mask2 = checked_masks(X, mask1, mask2)
    de_kwargs = dict(n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance,
                     random_state=random_state, batch_size=batch_size)
    fit_kwargs = dict(sigma=sigma, ls=ls, ls_factor=ls_factor, landmarks=landmarks,
                      allow_single_condition_variance=allow_single_condition_variance)
    model = DifferentialExpression(**de_kwargs)
    model.fit(X[mask1], Y1, X[mask2], Y2, condition1_sample_indices=samples[0],
              condition2_sample_indices=samples[1], **fit_kwargs)
    mean_lfc, values = _predict_in_chunks(model, X, mask1 | mask2, layers, progress,
                                          predict_chunk)
    values.update(mean_lfc=mean_lfc,
                  mahalanobis=model.compute_mahalanobis_distances(X, progress=progress))
    if fdr:
        # The union of both conditions' cells is the same under any relabelling,
        # so the null reuses the real run's landmarks and length scale exactly.
        null_fit = {**fit_kwargs, "landmarks": model.landmarks_, "ls": model.model1_.ls_,
                    "mean_weights": model.prior_mean_weights_,
                    "variance_mean_weights": model.prior_variance_weights_}
        null = expression_null_distances(
            X[mask1], Y1, X[mask2], Y2, n_permutations=n_permutations,
            condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
            de_kwargs=de_kwargs, fit_kwargs=null_fit, n_null_genes=n_null_genes,
            # Whole-sample splits shift all genes' distances together (few
            # samples); single-cell permutations do not, and there the
            # rescaling would only cost power when many genes change.
            rescale_to=None if samples[0] is None else values["mahalanobis"],
            random_state=random_state, progress=progress,
        )
        table = model.compute_fdr(null, threshold=fdr_threshold)
        values.update({name: table[name].to_numpy()
                       for name in ("pvalue", "local_fdr", "tail_fdr", "is_de")})
    options = ({"fdr"} if fdr else set()) | ({"layers"} if layers else set())
    fitted = dict(landmarks=model.landmarks_, ls=model.model1_.ls_)
    return AnalysisResult(DE_SCHEMA, values, fitted, options, model)


def _predict_in_chunks(model, X, in_pair, layers, progress, chunk):
    """Mean fold change over the two conditions' cells, and float32 per-cell results.

    Predicting in chunks of cells keeps only one chunk in float64 at a time, so
    that without layers memory does not grow with the number of cells times genes.
    """
    chunks = list(block_slices(X.shape[0], chunk, progress=progress, desc="predict expression"))
    per_cell = {}
    fc_sum = None
    for s in chunks:
        part = model.predict(X[s], progress=False)
        in_chunk = part["fold_change"][in_pair[s]].sum(axis=0)
        fc_sum = in_chunk if fc_sum is None else fc_sum + in_chunk
        if not layers:
            continue
        for name in _LAYERS:
            if name not in per_cell:
                per_cell[name] = np.empty((X.shape[0], part[name].shape[1]), np.float32)
            per_cell[name][s] = part[name]
    return fc_sum / in_pair.sum(), per_cell


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
    progress: bool = False,
) -> AnalysisResult:
    """Expression smoothed over cell states, fitted to the rows ``X[mask]``, at every row of ``X``.

    ``Y`` is the expression (cells x genes) of the rows ``X[mask]``;
    ``sample_indices`` their replicate samples, whose spread then enters the
    standard deviation. The other options are those of
    :class:`ExpressionModel` and its ``fit``.

    Returns
    -------
    An :class:`AnalysisResult` over :data:`SMOOTH_SCHEMA` (``smoothed`` and
    ``std``, rows of ``X`` x genes of ``Y``); ``fitted`` holds ``landmarks`` and ``ls``.
    """
    model = ExpressionModel(n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance,
                            random_state=random_state, batch_size=batch_size)
    model.fit(X[np.asarray(mask, bool)], Y, sigma=sigma, ls=ls, ls_factor=ls_factor,
              landmarks=landmarks, sample_indices=sample_indices)
    values = {"smoothed": model.predict(X, progress=progress),
              "std": model.std(X, progress=progress)}
    return AnalysisResult(SMOOTH_SCHEMA, values, dict(landmarks=model.landmarks_, ls=model.ls_),
                          set(), model)
