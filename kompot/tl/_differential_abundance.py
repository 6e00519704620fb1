"""``kompot.tl.compute_differential_abundance``."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import DIRECTION_CATEGORIES, DIRECTION_COLORS, DAKeys
from ..core.density import fractal_dimension
from ..core.fdr import zscore_fdr
from ..core.landmarks import length_scale, nearest_neighbor_distances
from ..core.stats import direction as call_direction
from ..models import DifferentialAbundance, DifferentialAbundanceRatio
from ..models.abundance_ratio import MIN_CELLS_PER_CONDITION
from ..models.null import abundance_null_zscores
from . import _inputs as inp
from ._defaults import DA_LS_FACTOR, N_LANDMARKS, N_PERMUTATIONS, OBSM_KEY
from ._input_meaning import informative_columns
from ._record import make_record, write_run


def compute_differential_abundance(
    adata: ad.AnnData,
    groupby: str,
    condition1: str,
    condition2: str,
    *,
    obsm_key: str = OBSM_KEY,
    sample_col: str | None = None,
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
    # ---- validate everything before any computation or write
    key_added = inp.check_key_added(key_added)
    X, dropped = informative_columns(adata, obsm_key, inp.representation(adata, obsm_key))
    mask1, mask2 = inp.condition_masks(adata, groupby, condition1, condition2)
    for condition, mask in ((condition1, mask1), (condition2, mask2)):
        if mask.sum() < MIN_CELLS_PER_CONDITION:
            raise ValueError(
                f"Condition {condition!r} has {int(mask.sum())} cells in adata.obs[{groupby!r}]; "
                f"differential abundance needs at least {MIN_CELLS_PER_CONDITION} cells per "
                "condition. Merge it with a similar condition or leave it out."
            )
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
    options = dict(
        landmarks=inp.check_landmarks(landmarks, X.shape[1], obsm_key),
        n_landmarks=inp.check_positive(n_landmarks, "n_landmarks", integer=True, allow_none=True),
        ls=inp.check_positive(ls, "ls", allow_none=True),
        ls_factor=inp.check_positive(ls_factor, "ls_factor", allow_none=True),
        batch_size=inp.check_positive(batch_size, "batch_size", integer=True, allow_none=True),
        random_state=inp.check_random_state(random_state),
        allow_single_condition_variance=allow_single_condition_variance,
        samples=samples, progress=progress,
    )
    if log_fold_change_threshold is None:
        log_fold_change_threshold = 0.0 if direction_by == "fdr" else 1.0
    rule = dict(
        lfc=inp.check_nonnegative(log_fold_change_threshold, "log_fold_change_threshold"),
        ptp=inp.check_probability(ptp_threshold, "ptp_threshold"),
        fdr=inp.check_probability(fdr_threshold, "fdr_threshold"),
        by=direction_by,
    )
    if method == "ratio":
        _check_density_only(dimensionality, sync_parameters)
        options["amplitude"] = inp.check_positive(amplitude, "amplitude", allow_none=True)
        result, extra = _run_ratio(X, mask1, mask2, rule, **options)
    else:
        if amplitude is not None:
            raise ValueError("amplitude applies to method='ratio' only; leave it None.")
        options.update(
            dimensionality=_check_dimensionality(dimensionality),
            sync_parameters=sync_parameters,
            n_permutations=inp.check_positive(n_permutations, "n_permutations", integer=True),
            fdr=bool(fdr) or direction_by == "fdr",
        )
        result, extra = _run_density(X, mask1, mask2, rule, **options)

    # ---- write
    keys = DAKeys(key_added, str(condition1), str(condition2))
    names = {
        "lfc": keys.lfc, "lfc_std": keys.lfc_std, "zscore": keys.zscore,
        "neg_log10_ptp": keys.neg_log10_ptp, "direction": keys.direction,
        "fdr": keys.lfc_fdr, "pvalue": keys.lfc_pvalue, "sample_std": keys.lfc_sample_std,
        "log_density1": keys.log_density(condition1),
        "log_density2": keys.log_density(condition2),
    }
    result["direction"] = pd.Categorical(result["direction"],
                                         categories=list(DIRECTION_CATEGORIES))
    obs = {names[k]: pd.Series(v, index=adata.obs_names) for k, v in result.items()}
    record = make_record(params, obsm_key=obsm_key, groupby=groupby, method=method, rule=rule,
                         condition1=str(condition1), condition2=str(condition2),
                         obsm_columns_dropped=dropped, **extra)
    if copy:
        adata = adata.copy()
    write_run(adata, key_added, record, obs=obs,
              uns={keys.direction_colors: list(DIRECTION_COLORS)})
    return adata if copy else None


def _check_density_only(dimensionality, sync_parameters) -> None:
    if dimensionality != "features" or sync_parameters:
        raise ValueError(
            "dimensionality and sync_parameters belong to method='density'; the ratio model "
            "has no density dimension. Pass method='density' or leave them at their defaults."
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


def _run_ratio(X, mask1, mask2, rule, *, landmarks, n_landmarks, ls, ls_factor, amplitude,
               batch_size, random_state, allow_single_condition_variance, samples, progress):
    """Fit the label model on both conditions; FDR over their cells only."""
    compared = mask1 | mask2
    if ls is None and ls_factor is not None:
        ls = length_scale(nearest_neighbor_distances(X[compared]), ls_factor)
    model = DifferentialAbundanceRatio(
        n_landmarks=n_landmarks, ls=ls, amplitude=amplitude, fdr_threshold=rule["fdr"],
        log_fold_change_threshold=rule["lfc"], random_state=random_state,
        batch_size=batch_size,
    ).fit(
        X[mask1], X[mask2], landmarks=landmarks,
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        allow_single_condition_variance=allow_single_condition_variance,
    )
    n = len(X)
    result = {k: np.full(n, np.nan) for k in ("lfc", "lfc_std", "zscore", "neg_log10_ptp",
                                              "pvalue", "fdr")}
    with_samples = model.jackknife_ is not None
    if with_samples:
        result["sample_std"] = np.full(n, np.nan)
    result["direction"] = np.full(n, "neutral", dtype=object)
    for rows in (compared, ~compared):
        if not rows.any():
            continue
        out = model.predict(X[rows], progress=progress)
        result["lfc"][rows] = out["log_fold_change"]
        result["lfc_std"][rows] = np.sqrt(out["log_fold_change_uncertainty"])
        result["zscore"][rows] = out["log_fold_change_zscore"]
        result["neg_log10_ptp"][rows] = out["neg_log10_fold_change_ptp"]
        result["pvalue"][rows] = out["log_fold_change_pvalue"]
        if with_samples:
            result["sample_std"][rows] = np.sqrt(out["log_fold_change_sample_variance"])
        if rows is compared:  # FDR and calls only among the compared cells
            result["fdr"][rows] = out["log_fold_change_fdr"]
            result["direction"][rows] = _calls(out, rule)
    extra = dict(landmarks=model.landmarks_, ls=model.ls_, amplitude=model.amplitude_)
    return result, extra


def _calls(out, rule):
    """up/down/neutral by the chosen rule."""
    lfc = out["log_fold_change"]
    if rule["by"] == "fdr":
        evidence, level = -np.log10(np.maximum(out["log_fold_change_fdr"], 1e-300)), rule["fdr"]
    else:
        evidence, level = out["neg_log10_fold_change_ptp"], rule["ptp"]
    return call_direction(lfc, evidence, rule["lfc"], level)


def _run_density(X, mask1, mask2, rule, *, landmarks, n_landmarks, ls, ls_factor, batch_size,
                 random_state, allow_single_condition_variance, samples, progress,
                 dimensionality, sync_parameters, n_permutations, fdr):
    """One density per condition, their difference, and the permutation-scaled FDR."""
    compared = mask1 | mask2
    model = DifferentialAbundance(
        log_fold_change_threshold=rule["lfc"], ptp_threshold=rule["ptp"],
        n_landmarks=n_landmarks, random_state=random_state, batch_size=batch_size,
    )
    if dimensionality == "features":
        d = X.shape[1]
    elif dimensionality == "fractal":
        d = fractal_dimension(X[compared])
    else:
        d = dimensionality
    density_kwargs = {"d": d} if ls is None else {"d": d, "ls": ls}
    model.fit(
        X[mask1], X[mask2], landmarks=landmarks,
        ls_factor=DA_LS_FACTOR if ls_factor is None else ls_factor,
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        sync_parameters=sync_parameters,
        allow_single_condition_variance=allow_single_condition_variance, **density_kwargs,
    )
    out = model.predict(X, progress=progress)
    result = {
        "lfc": out["log_fold_change"],
        "lfc_std": np.sqrt(out["log_fold_change_uncertainty"]),
        "zscore": out["log_fold_change_zscore"],
        "neg_log10_ptp": out["neg_log10_fold_change_ptp"],
        "log_density1": out["log_density_condition1"],
        "log_density2": out["log_density_condition2"],
    }
    if fdr:
        null = abundance_null_zscores(
            X[mask1], X[mask2], X[compared], n_permutations=n_permutations,
            condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
            da_kwargs=dict(n_landmarks=n_landmarks, random_state=random_state,
                           batch_size=batch_size),
            fit_kwargs=dict(landmarks=model.landmarks, ls=model.ls, d=d,
                            sync_parameters=sync_parameters,
                            allow_single_condition_variance=allow_single_condition_variance),
            random_state=random_state, progress=progress,
        )
        result["fdr"] = np.full(len(X), np.nan)
        result["fdr"][compared] = zscore_fdr(out["log_fold_change_zscore"][compared], null,
                                             threshold=rule["fdr"])["fdr"]
        out["log_fold_change_fdr"] = result["fdr"]
    if rule["by"] == "fdr":
        calls = np.full(len(X), "neutral", dtype=object)
        calls[compared] = _calls({k: v[compared] for k, v in out.items()}, rule)
    else:
        calls = out["log_fold_change_direction"]
        calls[~compared] = "neutral"
    result["direction"] = calls
    return result, dict(landmarks=model.landmarks, ls=model.ls, d=float(d))
