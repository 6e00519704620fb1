"""``kompot.tl.compute_differential_abundance``."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import DAKeys
from ..models import CallRule, run_differential_abundance
from ..models.abundance_ratio import MIN_CELLS_PER_CONDITION
from . import _inputs as inp
from ._defaults import DA_LS_FACTOR, N_LANDMARKS, N_PERMUTATIONS, OBSM_KEY
from ._input_meaning import informative_columns
from ._record import make_record, write_result


def compute_differential_abundance(
    adata: ad.AnnData,
    groupby: str,
    condition1: str,
    condition2: str,
    *,
    obsm_key: str = OBSM_KEY,
    sample_col: str | None = None,
    covariates: str | list[str] | None = None,
    method: Literal["ratio", "density"] = "ratio",
    key_added: str = "kompot_da",
    copy: bool = False,
    n_landmarks: int | None = N_LANDMARKS,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float | None = None,
    amplitude: float | None = None,
    dimensionality: float | str = "features",
    log_fold_change_threshold: float | None = None,
    ptp_threshold: float = 0.05,
    sync_parameters: bool = False,
    allow_single_condition_variance: bool = False,
    fdr: bool = True,
    fdr_threshold: float = 0.05,
    n_permutations: int = N_PERMUTATIONS,
    direction_by: Literal["fdr", "ptp"] = "fdr",
    random_state: int | None = 0,
    batch_size: int | None = None,
    client=None,
    progress: bool = True,
) -> ad.AnnData | None:
    """Where in cell-state space does one condition have more cells than the other?

    Fits a model of cell abundance over cell states to the cells of the two
    conditions and evaluates it at **every** cell of ``adata``. The log fold
    change is ``log p2(x) - log p1(x)`` in natural-log units, each condition's
    density normalised by its number of cells. By default every cell gets a
    false-discovery rate over the cells of the two conditions and an
    up/down/neutral call at ``fdr_threshold``; cells of other conditions get
    the log fold change but no FDR and no call.

    Parameters
    ----------
    adata
        Annotated data matrix; only ``obs`` and ``obsm`` are read.
    groupby
        Column of ``adata.obs`` holding the condition of each cell
        (categorical or strings).
    condition1
        Reference condition, a category of ``groupby``.
    condition2
        Condition compared with the reference; positive fold changes mean more
        cells in ``condition2``.
    obsm_key
        Cell-state representation in ``adata.obsm``, e.g. diffusion
        components (``"DM_EigenVectors"`` from palantir, ``"X_diffmap"`` from
        :func:`scanpy.tl.diffmap`) or ``"X_pca"``.
    sample_col
        Column of ``adata.obs`` with replicate samples, nested in the
        conditions. When given, the variation between replicates enters
        the significance of every cell.
    covariates
        ``"ratio"`` only: column(s) of ``adata.obs`` (e.g. ``"batch"``)
        whose effect on the proportions of the two conditions is fitted
        with the log ratio. Categorical columns enter as one indicator per
        level besides the first, numeric ones linearly; all are centred.
        The classifier becomes ``logit P(condition2 | x, z) = log(n2 / n1) +
        f(x) + z^T beta``, and the log fold change ``f`` is the conditions'
        log density ratio within a covariate level: a batch that holds more
        of one condition's samples and shifts the cell-state composition no
        longer shows up as differential abundance. Its uncertainty includes
        that of ``beta``. Every level must hold cells of both conditions; a
        covariate nested in the conditions raises a ValueError
        (``docs/significance.md``).
    method
        ``"ratio"`` (default): the log density ratio estimated directly from
        the condition labels by one Gaussian-process classifier
        (:class:`~kompot.DifferentialAbundanceRatio`); its length scale and
        amplitude maximise the Laplace evidence, and its log fold change is
        on the scale of the true log ratio whatever the width of the
        representation. With ``sample_col`` a cell is significant only when
        the posterior and a Welch t-test on leave-one-sample-out refits both
        support it; the FDR is Benjamini–Hochberg over the cells of the two
        conditions. On the benchmark grid of ``benchmarks/RESULTS.md`` it
        ranks and calls better than ``"density"`` (see ``docs/significance.md``).
        ``"density"``: one density per condition
        (:class:`~kompot.DifferentialAbundance`) and their difference; its
        FDR calibrates the z-scores' scale on ``n_permutations`` refits with
        permuted labels.
    key_added
        Prefix of every output field and key of the record in ``adata.uns``.
        Re-running with the same key replaces that run's fields.
    copy
        Return a modified copy instead of writing into ``adata``.
    n_landmarks
        Number of landmarks (inducing points) shared by both conditions.
    landmarks
        Landmark coordinates (``n_landmarks x d``) to use instead of
        computing them.
    ls
        Kernel length scale. ``None``: for ``"ratio"`` chosen by the
        evidence (or ``ls_factor`` times the nearest-neighbour rule when
        ``ls_factor`` is given); for ``"density"`` ``ls_factor`` (default
        0.25) times the rule, computed on both conditions' cells.
    ls_factor
        Multiplier of the nearest-neighbour length-scale rule
        ``exp(mean log r + 3)``; smaller values resolve smaller regions.
    amplitude
        ``"ratio"`` only: prior standard deviation of the log ratio;
        ``None`` chooses it by the evidence.
    dimensionality
        ``"density"`` only: dimension ``d`` of the density model, which sets
        the scale of its log fold change. ``"features"``: the number of
        columns of the representation; ``"fractal"``: the cells' local
        dimension (:func:`kompot.core.density.fractal_dimension`); or a
        positive number.
    log_fold_change_threshold
        Minimum absolute log fold change of an up/down call. ``None``: 0
        with ``direction_by="fdr"`` (the FDR alone decides), 1 with
        ``direction_by="ptp"``.
    ptp_threshold
        Maximum posterior tail probability of a call with ``direction_by="ptp"``.
    sync_parameters
        ``"density"`` only: compute the density's dimensionality and prior
        mean once on both conditions together.
    allow_single_condition_variance
        With ``sample_col``, allow one condition without replicates; the
        other condition's replicate variation then stands in for both.
    fdr
        Compute the per-cell FDR (always on with ``direction_by="fdr"``).
        For ``"density"`` it costs ``n_permutations`` refits.
    fdr_threshold
        FDR level of a call with ``direction_by="fdr"``.
    n_permutations
        ``"density"`` only: label permutations of its FDR.
    direction_by
        ``"fdr"`` (default): a cell is up/down when its FDR is at most
        ``fdr_threshold`` (and ``|lfc|`` passes ``log_fold_change_threshold``).
        ``"ptp"``: a per-cell rule, PTP below ``ptp_threshold`` and ``|lfc|``
        above the threshold, **without** multiple-testing control: on data
        without any change it calls many cells (``docs/significance.md``).
    random_state
        Seed of the landmark selection.
    batch_size
        Cells per block when evaluating; ``None`` picks a memory-safe block.
    client
        ``method="ratio"``: where the fitted model predicts, in blocks of
        cells: ``None`` follows ``kompot.settings.dask_client`` (by default
        in this process), ``False`` is this process, or a
        ``distributed.Client`` or scheduler address (``docs/scaling.md``).
        The fit runs in this process.
    progress
        Show progress bars.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. With
    ``prefix = f"{key_added}_{condition1}_to_{condition2}"`` the following
    fields are written (condition names with spaces or slashes get ``_``):

    ``adata.obs[f"{prefix}_lfc"]`` : float64
        Log fold change of abundance (natural log).
    ``adata.obs[f"{prefix}_lfc_std"]`` : float64
        Posterior standard deviation of the log fold change.
    ``adata.obs[f"{prefix}_lfc_zscore"]`` : float64
        Signed z-score (``"ratio"``: the normal score of the p-value).
    ``adata.obs[f"{prefix}_neg_log10_lfc_ptp"]`` : float64
        ``-log10`` of the one-sided tail probability.
    ``adata.obs[f"{prefix}_lfc_direction"]`` : categorical
        ``"down"``, ``"neutral"`` or ``"up"``; colours in
        ``adata.uns[f"{prefix}_lfc_direction_colors"]``.
    ``adata.obs[f"{prefix}_lfc_fdr"]`` : float64
        With ``fdr``: Benjamini–Hochberg FDR over the cells of the two
        conditions (NaN for other cells).
    ``adata.obs[f"{prefix}_lfc_pvalue"]`` : float64
        ``"ratio"`` only: two-sided p-value of each cell.
    ``adata.obs[f"{prefix}_lfc_sample_std"]`` : float64
        ``"ratio"`` with ``sample_col`` only: standard deviation of the log
        fold change between replicate samples (jackknife).
    ``adata.obs[f"{key_added}_{condition}_log_density"]`` : float64
        ``"density"`` only: normalised log density, one column per condition.
    ``adata.uns[key_added]`` : dict
        ``params``, ``version``, ``method``, ``condition1``, ``condition2``,
        ``groupby``, ``obsm_key``, ``landmarks``, ``ls``, ``amplitude``
        (``"ratio"``) or ``d`` (``"density"``), and ``fields`` (names
        written, by slot).

    Examples
    --------
    >>> adata = kompot.datasets.toy()
    >>> kompot.tl.compute_differential_abundance(adata, "condition", "control", "treated",
    ...                                          sample_col="sample")
    >>> calls = adata.obs["kompot_da_control_to_treated_lfc_direction"]
    """
    params = dict(locals())
    # Where it ran does not change the results, and a client cannot be stored.
    del params["client"]
    key_added = inp.check_key_added(key_added)
    X, dropped = informative_columns(adata, obsm_key, inp.representation(adata, obsm_key))
    mask1, mask2 = inp.condition_masks(adata, groupby, condition1, condition2)
    _check_cells_per_condition(mask1, mask2, (condition1, condition2), groupby)
    samples = [None, None]
    if sample_col is not None:
        samples = inp.sample_labels(
            adata, sample_col, (mask1, mask2), (condition1, condition2),
            allow_single_condition_variance=allow_single_condition_variance,
        )
    if method not in ("ratio", "density"):
        raise ValueError(f"method must be 'ratio' or 'density', got {method!r}.")
    if direction_by not in ("ptp", "fdr"):
        raise ValueError(f"direction_by must be 'ptp' or 'fdr', got {direction_by!r}.")
    covariate_options = {}
    if covariates is not None:
        covariate_options = _covariate_options(adata, covariates, method, (mask1, mask2),
                                               groupby)
        params["covariates"] = [covariates] if isinstance(covariates, str) else list(covariates)
    options = dict(
        landmarks=inp.check_landmarks(landmarks, X.shape[1], obsm_key),
        n_landmarks=inp.check_positive(n_landmarks, "n_landmarks", integer=True, allow_none=True),
        ls=inp.check_positive(ls, "ls", allow_none=True),
        ls_factor=inp.check_positive(ls_factor, "ls_factor", allow_none=True),
        batch_size=inp.check_positive(batch_size, "batch_size", integer=True, allow_none=True),
        random_state=inp.check_random_state(random_state),
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        allow_single_condition_variance=allow_single_condition_variance, progress=progress,
        **covariate_options,
    )
    rule = CallRule.default(
        direction_by,
        None if log_fold_change_threshold is None else inp.check_nonnegative(
            log_fold_change_threshold, "log_fold_change_threshold"),
        ptp=inp.check_probability(ptp_threshold, "ptp_threshold"),
        fdr=inp.check_probability(fdr_threshold, "fdr_threshold"),
    )
    options.update(_method_options(method, amplitude, dimensionality, sync_parameters, fdr,
                                   n_permutations))
    if method == "density" and options["ls_factor"] is None:
        options["ls_factor"] = DA_LS_FACTOR
    result = run_differential_abundance(X, mask1, mask2, method=method, rule=rule, client=client,
                                        **options)
    record = make_record(params, obsm_key=obsm_key, groupby=groupby, method=method,
                         rule=rule.as_record(), condition1=str(condition1),
                         condition2=str(condition2), obsm_columns_dropped=dropped,
                         **result.fitted)
    keys = DAKeys(key_added, str(condition1), str(condition2))
    return write_result(adata, keys, result, record, copy=copy)


def _check_cells_per_condition(mask1, mask2, conditions, groupby) -> None:
    for condition, mask in zip(conditions, (mask1, mask2), strict=True):
        if mask.sum() < MIN_CELLS_PER_CONDITION:
            raise ValueError(
                f"Condition {condition!r} has {int(mask.sum())} cells in adata.obs[{groupby!r}]; "
                f"differential abundance needs at least {MIN_CELLS_PER_CONDITION} cells per "
                "condition. Merge it with a similar condition or leave it out."
            )


def _covariate_options(adata, covariates, method, masks, groupby) -> dict:
    """The covariate designs of both conditions' cells, checked for levels in both."""
    if method != "ratio":
        raise ValueError(
            "covariates are supported by method='ratio' only (the density model cannot "
            "adjust for them); use method='ratio'."
        )
    designs, names = inp.covariate_design(adata, covariates, masks, groupby)
    for column in [covariates] if isinstance(covariates, str) else list(covariates):
        values = adata.obs[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            continue
        seen = [set(values[np.asarray(m, bool)].astype(str)) for m in masks]
        only = sorted(seen[0] ^ seen[1])
        if only:
            raise ValueError(
                f"Level(s) {inp.preview(only)} of adata.obs[{column!r}] hold cells of one "
                f"condition only, so they say nothing about the conditions within the level; "
                "subset adata to the levels seen in both conditions, or drop the covariate."
            )
    return dict(condition1_covariates=designs[0], condition2_covariates=designs[1],
                covariate_names=names)


def _method_options(method, amplitude, dimensionality, sync_parameters, fdr,
                    n_permutations) -> dict:
    """The checked options that belong to one method only; the other's must stay unset."""
    if method == "ratio":
        if dimensionality != "features" or sync_parameters:
            raise ValueError(
                "dimensionality and sync_parameters belong to method='density'; the ratio model "
                "has no density dimension. Pass method='density' or leave them at their defaults."
            )
        return {"amplitude": inp.check_positive(amplitude, "amplitude", allow_none=True)}
    if amplitude is not None:
        raise ValueError("amplitude applies to method='ratio' only; leave it None.")
    return dict(
        dimensionality=_check_dimensionality(dimensionality),
        sync_parameters=sync_parameters,
        n_permutations=inp.check_positive(n_permutations, "n_permutations", integer=True),
        fdr=bool(fdr),
    )


def _check_dimensionality(dimensionality):
    if dimensionality in ("features", "fractal"):
        return dimensionality
    if isinstance(dimensionality, str):
        raise ValueError(
            "dimensionality must be 'features', 'fractal' or a positive number, "
            f"got {dimensionality!r}."
        )
    return inp.check_positive(dimensionality, "dimensionality")
