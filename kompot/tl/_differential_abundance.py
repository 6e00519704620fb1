"""``kompot.tl.compute_differential_abundance``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import DIRECTION_CATEGORIES, DIRECTION_COLORS, DAKeys
from ..core.density import fractal_dimension
from ..core.fdr import zscore_fdr
from ..core.stats import direction as call_direction
from ..models import DifferentialAbundance
from ..models.null import abundance_null_zscores
from . import _inputs as inp
from ._defaults import DA_LS_FACTOR, N_LANDMARKS, N_PERMUTATIONS, OBSM_KEY
from ._record import make_record, write_run


def compute_differential_abundance(
    adata: ad.AnnData,
    groupby: str,
    condition1: str,
    condition2: str,
    *,
    obsm_key: str = OBSM_KEY,
    sample_col: str | None = None,
    key_added: str = "kompot_da",
    copy: bool = False,
    n_landmarks: int | None = N_LANDMARKS,
    landmarks: np.ndarray | None = None,
    ls: float | None = None,
    ls_factor: float = DA_LS_FACTOR,
    dimensionality: float | str = "features",
    log_fold_change_threshold: float = 1.0,
    ptp_threshold: float = 0.05,
    sync_parameters: bool = False,
    allow_single_condition_variance: bool = False,
    fdr: bool = False,
    fdr_threshold: float = 0.05,
    n_permutations: int = N_PERMUTATIONS,
    direction_by: str = "ptp",
    random_state: int | None = 0,
    batch_size: int | None = None,
    progress: bool = True,
) -> ad.AnnData | None:
    """Where in cell-state space does one condition have more cells than the other?

    A Gaussian-process density of cell states is fitted to each condition's
    cells (:class:`~kompot.DifferentialAbundance`), on landmarks and a length
    scale shared by both conditions, and evaluated at **every** cell of
    ``adata`` (cells of other conditions included). The log fold change is
    ``log density(condition2) - log density(condition1)`` in natural-log units,
    each density normalised by its condition's number of cells.

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
        conditions. When given, the variance between replicates is added to
        the uncertainty of the fold change.
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
        Kernel length scale; ``None`` derives it from nearest-neighbour
        distances of both conditions' cells, times ``ls_factor``.
    ls_factor
        Multiplier of the data-driven length scale; smaller values resolve
        smaller regions.
    dimensionality
        Dimension ``d`` of the density model: the log density of a cell goes
        as ``-d`` times the log distance to its nearest neighbour, so ``d``
        sets the scale of the log fold change. ``"features"`` (mellon's
        default): the number of columns of the representation.
        ``"fractal"``: the cells' local (fractal) dimension, estimated once
        on both conditions together
        (:func:`kompot.core.density.fractal_dimension`). On representations
        with many more columns than the cells' intrinsic dimension (e.g. 50
        principal components) ``"fractal"`` brings the log fold change to
        the scale of the true log ratio and ranks changed populations
        better; it also makes far fewer cells pass
        ``log_fold_change_threshold`` (see ``docs/significance.md``). Or a
        positive number.
    log_fold_change_threshold
        Minimum absolute log fold change for an ``"up"``/``"down"`` call.
    ptp_threshold
        Maximum posterior tail probability for an ``"up"``/``"down"`` call.
    sync_parameters
        Compute the density's dimensionality and prior mean once on both
        conditions together rather than per condition.
    allow_single_condition_variance
        With ``sample_col``, allow one condition without replicates; the
        other condition's replicate variance then stands in for both.
    fdr
        Also compute a false-discovery rate per cell: the z-scores' scale is
        calibrated on ``n_permutations`` refits with permuted condition
        labels (whole samples with ``sample_col``), then Benjamini–Hochberg
        is applied over cells (see ``docs/method.md``). Costs one refit of
        both densities per permutation.
    fdr_threshold
        FDR level of a call when ``direction_by="fdr"``.
    n_permutations
        Permutations for ``fdr``.
    direction_by
        ``"ptp"``: a cell is up/down when ``|lfc|`` passes
        ``log_fold_change_threshold`` and its PTP passes ``ptp_threshold``
        (per cell, no multiple-testing control). ``"fdr"``: the FDR must pass
        ``fdr_threshold`` instead (implies ``fdr=True``).
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
        Log fold change of density (natural log).
    ``adata.obs[f"{prefix}_lfc_std"]`` : float64
        Posterior standard deviation of the log fold change.
    ``adata.obs[f"{prefix}_lfc_zscore"]`` : float64
        Log fold change divided by its standard deviation.
    ``adata.obs[f"{prefix}_neg_log10_lfc_ptp"]`` : float64
        ``-log10`` of the one-sided posterior tail probability.
    ``adata.obs[f"{prefix}_lfc_direction"]`` : categorical
        ``"down"``, ``"neutral"`` or ``"up"``; colours in
        ``adata.uns[f"{prefix}_lfc_direction_colors"]``.
    ``adata.obs[f"{key_added}_{condition}_log_density"]`` : float64
        Normalised log density, one column per condition.
    ``adata.obs[f"{prefix}_lfc_fdr"]`` : float64
        Only with ``fdr``: Benjamini–Hochberg FDR of each cell.
    ``adata.uns[key_added]`` : dict
        ``params``, ``version``, ``condition1``, ``condition2``, ``groupby``,
        ``obsm_key``, ``landmarks``, ``ls``, ``d`` (the density's dimension)
        and ``fields`` (names written, by slot).

    Examples
    --------
    >>> adata = kompot.datasets.toy()
    >>> kompot.tl.compute_differential_abundance(adata, "condition", "control", "treated")
    >>> calls = adata.obs["kompot_da_control_to_treated_lfc_direction"]
    """
    params = dict(locals())
    # ---- validate everything before any computation or write
    key_added = inp.check_key_added(key_added)
    X = inp.representation(adata, obsm_key)
    mask1, mask2 = inp.condition_masks(adata, groupby, condition1, condition2)
    samples = [None, None]
    if sample_col is not None:
        samples = inp.sample_labels(
            adata, sample_col, (mask1, mask2), (condition1, condition2),
            allow_single_condition_variance=allow_single_condition_variance,
        )
    landmarks = inp.check_landmarks(landmarks, X.shape[1], obsm_key)
    n_landmarks = inp.check_positive(n_landmarks, "n_landmarks", integer=True, allow_none=True)
    ls = inp.check_positive(ls, "ls", allow_none=True)
    ls_factor = inp.check_positive(ls_factor, "ls_factor")
    if dimensionality not in ("features", "fractal"):
        if isinstance(dimensionality, str):
            raise ValueError(
                "dimensionality must be 'features', 'fractal' or a positive number, "
                f"got {dimensionality!r}."
            )
        dimensionality = inp.check_positive(dimensionality, "dimensionality")
    inp.check_nonnegative(log_fold_change_threshold, "log_fold_change_threshold")
    inp.check_probability(ptp_threshold, "ptp_threshold")
    batch_size = inp.check_positive(batch_size, "batch_size", integer=True, allow_none=True)
    random_state = inp.check_random_state(random_state)
    if direction_by not in ("ptp", "fdr"):
        raise ValueError(f"direction_by must be 'ptp' or 'fdr', got {direction_by!r}.")
    fdr = bool(fdr) or direction_by == "fdr"
    if fdr:
        inp.check_probability(fdr_threshold, "fdr_threshold")
        n_permutations = inp.check_positive(n_permutations, "n_permutations", integer=True)

    # ---- compute
    model = DifferentialAbundance(
        log_fold_change_threshold=log_fold_change_threshold,
        ptp_threshold=ptp_threshold,
        n_landmarks=n_landmarks,
        random_state=random_state,
        batch_size=batch_size,
    )
    density_kwargs = {} if ls is None else {"ls": ls}
    if dimensionality == "features":
        d = X.shape[1]
    elif dimensionality == "fractal":
        d = fractal_dimension(X[mask1 | mask2])
    else:
        d = dimensionality
    density_kwargs["d"] = d
    model.fit(
        X[mask1], X[mask2], landmarks=landmarks, ls_factor=ls_factor,
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        sync_parameters=sync_parameters,
        allow_single_condition_variance=allow_single_condition_variance,
        **density_kwargs,
    )
    out = model.predict(X, progress=progress)
    cell_fdr = None
    if fdr:
        null = abundance_null_zscores(
            X[mask1], X[mask2], X, n_permutations=n_permutations,
            condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
            da_kwargs=dict(n_landmarks=n_landmarks, random_state=random_state,
                           batch_size=batch_size),
            fit_kwargs=dict(landmarks=model.landmarks, ls=model.ls, d=d,
                            sync_parameters=sync_parameters,
                            allow_single_condition_variance=allow_single_condition_variance),
            random_state=random_state, progress=progress,
        )
        cell_fdr = zscore_fdr(out["log_fold_change_zscore"], null, threshold=fdr_threshold)["fdr"]
    if direction_by == "fdr":
        # The same rule as the PTP call, with the FDR in place of the PTP.
        out["log_fold_change_direction"] = call_direction(
            out["log_fold_change"], -np.log10(np.maximum(cell_fdr, 1e-300)),
            log_fold_change_threshold, fdr_threshold,
        )

    # ---- write
    keys = DAKeys(key_added, str(condition1), str(condition2))
    index = adata.obs_names
    obs = {
        keys.lfc: out["log_fold_change"],
        keys.lfc_std: np.sqrt(out["log_fold_change_uncertainty"]),
        keys.zscore: out["log_fold_change_zscore"],
        keys.neg_log10_ptp: out["neg_log10_fold_change_ptp"],
        keys.direction: pd.Categorical(
            out["log_fold_change_direction"], categories=list(DIRECTION_CATEGORIES)
        ),
        keys.log_density(condition1): out["log_density_condition1"],
        keys.log_density(condition2): out["log_density_condition2"],
    }
    if cell_fdr is not None:
        obs[keys.lfc_fdr] = cell_fdr
    obs = {k: pd.Series(v, index=index) for k, v in obs.items()}
    record = make_record(
        params, landmarks=model.landmarks, ls=model.ls, d=float(d), obsm_key=obsm_key,
        groupby=groupby,
        condition1=str(condition1), condition2=str(condition2),
    )
    if copy:
        adata = adata.copy()
    write_run(
        adata, key_added, record, obs=obs,
        uns={keys.direction_colors: list(DIRECTION_COLORS)},
    )
    return adata if copy else None
