"""The whole differential-abundance analysis on arrays: fit, null, FDR and calls.

:func:`run_differential_abundance` is what :func:`kompot.tl.compute_differential_abundance`
runs once it has read the AnnData; an array user gets the same numbers from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core import precision
from ..core.blocks import block_slices
from ..core.density import fractal_dimension
from ..core.fdr import zscore_fdr
from ..core.landmarks import length_scale_of
from ..core.stats import direction as call_direction
from ..parallel import SerialExecutor, executor_for
from ._schema import DA_SCHEMA, AnalysisResult
from .abundance_ratio import DifferentialAbundanceRatio
from .differential_abundance import DifferentialAbundance
from .null import abundance_null_zscores

# Cells per task when the ratio model predicts (a multiple of its default
# prediction block, so that in process the blocks are the same as without tasks).
CELLS_PER_TASK = 100_000


@dataclass(frozen=True)
class CallRule:
    """When a cell is called ``"up"`` or ``"down"`` rather than ``"neutral"``.

    ``by="fdr"``: its FDR is below ``fdr`` (compared on the ``-log10``
    scale) and ``|lfc|`` exceeds ``lfc``. ``by="ptp"``: its posterior tail
    probability is below ``ptp`` and ``|lfc|`` exceeds ``lfc``, a per-cell
    rule without multiple-testing control.
    """

    by: Literal["fdr", "ptp"] = "fdr"
    lfc: float = 0.0
    ptp: float = 0.05
    fdr: float = 0.05

    def __post_init__(self):
        if self.by not in ("fdr", "ptp"):
            raise ValueError(f"CallRule.by (direction_by) must be 'ptp' or 'fdr', got {self.by!r}.")

    @classmethod
    def default(cls, by: str = "fdr", lfc: float | None = None, **thresholds) -> CallRule:
        """The rule with kompot's default fold-change threshold: 0 by FDR, 1 by PTP."""
        return cls(by, (0.0 if by == "fdr" else 1.0) if lfc is None else lfc, **thresholds)

    def as_record(self) -> dict:
        return {"lfc": self.lfc, "ptp": self.ptp, "fdr": self.fdr, "by": self.by}

    def calls(self, lfc: np.ndarray, fdr: np.ndarray | None, neg_log10_ptp: np.ndarray):
        """``"up"``/``"down"``/``"neutral"`` per cell (object array)."""
        if self.by == "fdr":
            evidence, level = -np.log10(np.maximum(fdr, 1e-300)), self.fdr
        else:
            evidence, level = neg_log10_ptp, self.ptp
        return call_direction(lfc, evidence, self.lfc, level)


def run_differential_abundance(
    X: np.ndarray,
    mask1: np.ndarray,
    mask2: np.ndarray,
    *,
    method: Literal["ratio", "density"] = "ratio",
    rule: CallRule | None = None,
    condition1_sample_indices: np.ndarray | None = None,
    condition2_sample_indices: np.ndarray | None = None,
    allow_single_condition_variance: bool = False,
    condition1_covariates: np.ndarray | None = None,
    condition2_covariates: np.ndarray | None = None,
    covariate_names=None,
    landmarks: np.ndarray | None = None,
    n_landmarks: int | None = None,
    ls: float | None = None,
    ls_factor: float | None = None,
    amplitude: float | None = None,
    dimensionality: float | Literal["features", "fractal"] = "features",
    sync_parameters: bool = False,
    fdr: bool = True,
    n_permutations: int = 5,
    random_state: int | None = 0,
    batch_size: int | None = None,
    client=None,
    progress: bool = False,
) -> AnalysisResult:
    """Differential abundance at every row of ``X``, with FDR and calls among the compared cells.

    The model is fitted to the rows ``X[mask1]`` (condition 1) and
    ``X[mask2]`` (condition 2) and evaluated at every row of ``X``. The FDR
    and the up/down calls concern the cells of the two conditions only: rows
    in neither mask get a log fold change, a NaN FDR and ``"neutral"``.

    Parameters
    ----------
    X
        Cell states, ``n_cells x n_dims``.
    mask1, mask2
        Boolean masks over the rows of ``X``: the cells of condition 1 (the
        reference) and of condition 2.
    method
        ``"ratio"``: one Gaussian-process classifier of the log density ratio
        (:class:`DifferentialAbundanceRatio`), FDR by Benjamini–Hochberg on
        its p-values. ``"density"``: one density per condition
        (:class:`DifferentialAbundance`), FDR by Benjamini–Hochberg after
        calibrating the z-scores' scale on ``n_permutations`` label permutations.
    rule
        The call rule; ``None`` is ``CallRule()`` (FDR at 0.05, no fold-change threshold).
    condition1_sample_indices, condition2_sample_indices
        Replicate sample of each cell of ``X[mask1]`` and ``X[mask2]``, or ``None``.
    allow_single_condition_variance
        Allow one condition without replicates.
    condition1_covariates, condition2_covariates
        ``"ratio"`` only: numeric covariate design (cells x covariates) of
        the rows ``X[mask1]`` and ``X[mask2]``, or ``None``. Their effects on
        the odds of condition 2 are fitted with the log ratio, which is then
        the condition's log ratio within covariate levels
        (:class:`DifferentialAbundanceRatio`).
    covariate_names
        Labels of the covariate columns, for messages and ``fitted``.
    landmarks, n_landmarks
        Landmarks to use, or how many to select (``None``: the model's default).
    ls, ls_factor
        Length scale, or the multiplier of the nearest-neighbour rule.
        ``"ratio"``: both ``None`` chooses it by the Laplace evidence.
        ``"density"``: ``ls_factor=None`` uses the model's default.
    amplitude
        ``"ratio"`` only: prior standard deviation of the log ratio (``None``: by evidence).
    dimensionality
        ``"density"`` only: ``"features"``, ``"fractal"`` or a number.
    sync_parameters
        ``"density"`` only: dimensionality and prior mean from both conditions together.
    fdr
        ``"density"`` only: compute the permutation FDR (always with ``rule.by="fdr"``;
        ``"ratio"`` always computes its FDR).
    n_permutations
        ``"density"`` only: label permutations of the FDR.
    random_state, batch_size, progress
        Seed, cells per block and progress bars.
    client
        ``"ratio"`` only: where the fitted model predicts, in blocks of
        cells; ``None`` follows ``kompot.settings.dask_client``, ``False``
        is this process, or a ``distributed.Client`` or scheduler address
        (see :mod:`kompot.parallel`). The fit, and everything of ``"density"``,
        runs in this process.

    Returns
    -------
    An :class:`AnalysisResult` over :data:`DA_SCHEMA`, one entry per row of
    ``X``; ``fitted`` holds ``landmarks``, ``ls`` and ``amplitude``
    (``"ratio"``; with covariates also ``covariate_effects``) or ``d`` (``"density"``).
    """
    rule = CallRule() if rule is None else rule
    X, mask1, mask2 = checked_masks(X, mask1, mask2)
    covariates = None
    if condition1_covariates is not None or condition2_covariates is not None:
        if method != "ratio":
            raise ValueError(
                "Covariates are supported by method='ratio' only (the density model has no "
                "place for them); use method='ratio'."
            )
        covariates = (condition1_covariates, condition2_covariates, covariate_names)
    samples = (condition1_sample_indices, condition2_sample_indices)
    shared = dict(landmarks=landmarks, n_landmarks=n_landmarks, ls=ls, ls_factor=ls_factor,
                  batch_size=batch_size, random_state=random_state, samples=samples,
                  allow_single_condition_variance=allow_single_condition_variance,
                  progress=progress)
    if method == "ratio":
        # Mixed precision keeps the fit's whitened kernel in float32 when only that fits.
        with precision.using(precision.resolved(int(mask1.sum() + mask2.sum()))):
            return _ratio(X, mask1, mask2, rule, amplitude=amplitude, client=client,
                          covariates=covariates, **shared)
    if method == "density":
        return _density(X, mask1, mask2, rule, dimensionality=dimensionality,
                        sync_parameters=sync_parameters, n_permutations=n_permutations,
                        fdr=bool(fdr) or rule.by == "fdr", **shared)
    raise ValueError(f"method must be 'ratio' or 'density', got {method!r}.")


def checked_masks(X, mask1, mask2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float64 and the two conditions' masks, checked to be disjoint row masks of ``X``."""
    X = np.asarray(X, np.float64)
    masks = [np.asarray(m) for m in (mask1, mask2)]
    for name, mask in zip(("mask1", "mask2"), masks, strict=True):
        if mask.dtype != bool or mask.shape != (X.shape[0],):
            raise ValueError(f"{name} must be a boolean mask with one entry per row of X "
                             f"({X.shape[0]}), got dtype {mask.dtype} and shape {mask.shape}.")
    if (masks[0] & masks[1]).any():
        raise ValueError("mask1 and mask2 overlap; each cell belongs to one condition.")
    return X, masks[0], masks[1]


def _ratio(X, mask1, mask2, rule, *, landmarks, n_landmarks, ls, ls_factor, amplitude,
           batch_size, random_state, allow_single_condition_variance, samples, progress,
           client, covariates=None):
    """Fit the label model on both conditions; FDR over their cells only."""
    compared = mask1 | mask2
    if ls is None and ls_factor is not None:
        ls = length_scale_of(X[compared], ls_factor)
    model = DifferentialAbundanceRatio(
        n_landmarks=n_landmarks, ls=ls, amplitude=amplitude, fdr_threshold=rule.fdr,
        log_fold_change_threshold=rule.lfc, random_state=random_state, batch_size=batch_size,
    ).fit(
        X[mask1], X[mask2], landmarks=landmarks,
        condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
        allow_single_condition_variance=allow_single_condition_variance,
        **_covariate_options(covariates),
    )
    n = len(X)
    names = ["lfc", "lfc_std", "zscore", "neg_log10_ptp", "lfc_pvalue", "lfc_fdr"]
    with_samples = model.jackknife_ is not None
    if with_samples:
        names.append("lfc_sample_std")
    values = {name: np.full(n, np.nan) for name in names}
    values["direction"] = np.full(n, "neutral", dtype=object)
    with executor_for(client) as executor:
        predicted = [_predict_in_cell_blocks(model, X[rows], executor, progress)
                     if rows.any() else None for rows in (compared, ~compared)]
    for rows, out in zip((compared, ~compared), predicted, strict=True):
        if out is None:
            continue
        values["lfc"][rows] = out["log_fold_change"]
        values["lfc_std"][rows] = np.sqrt(out["log_fold_change_uncertainty"])
        values["zscore"][rows] = out["log_fold_change_zscore"]
        values["neg_log10_ptp"][rows] = out["neg_log10_fold_change_ptp"]
        values["lfc_pvalue"][rows] = out["log_fold_change_pvalue"]
        if with_samples:
            values["lfc_sample_std"][rows] = np.sqrt(out["log_fold_change_sample_variance"])
        if rows is compared:  # FDR and calls only among the compared cells
            values["lfc_fdr"][rows] = out["log_fold_change_fdr"]
            values["direction"][rows] = rule.calls(
                out["log_fold_change"], out["log_fold_change_fdr"],
                out["neg_log10_fold_change_ptp"])
    fitted = dict(landmarks=model.landmarks_, ls=model.ls_, amplitude=model.amplitude_)
    if covariates is not None:
        fitted["covariate_effects"] = model.covariate_effects_
    options = {"ratio", "fdr"} | ({"samples"} if with_samples else set())
    return AnalysisResult(DA_SCHEMA, values, fitted, options, model)


def _covariate_options(covariates) -> dict:
    """The covariate arguments of :meth:`DifferentialAbundanceRatio.fit` (none without)."""
    if covariates is None:
        return {}
    return dict(condition1_covariates=covariates[0], condition2_covariates=covariates[1],
                covariate_names=covariates[2])


def _predict_in_cell_blocks(model: DifferentialAbundanceRatio, X: np.ndarray, executor,
                            progress: bool) -> dict[str, np.ndarray]:
    """``model.predict(X)``, its per-cell moments computed in blocks of cells by ``executor``.

    On a cluster the fitted model is scattered to the workers; the p-values
    and the Benjamini-Hochberg FDR, which pool the cells, are computed here.
    """
    blocks = [X[s] for s in block_slices(len(X), CELLS_PER_TASK)]
    inner = progress and len(blocks) == 1 and isinstance(executor, SerialExecutor)
    parts = executor.map(_ratio_moments, model, [(b, inner) for b in blocks],
                         progress=progress, desc="DA cell blocks", threads=True)
    moments = [None if parts[0][i] is None else np.concatenate([p[i] for p in parts])
               for i in range(4)]
    return model._results(*moments)


def _ratio_moments(model: DifferentialAbundanceRatio, block) -> tuple:
    """Per-cell log ratio, variance, sample variance and df of one block of cells."""
    X, progress = block
    return model._moments(X, progress)


def _density(X, mask1, mask2, rule, *, landmarks, n_landmarks, ls, ls_factor, batch_size,
             random_state, allow_single_condition_variance, samples, progress,
             dimensionality, sync_parameters, n_permutations, fdr):
    """One density per condition, their difference, and the permutation-scaled FDR."""
    compared = mask1 | mask2
    model = DifferentialAbundance(
        log_fold_change_threshold=rule.lfc, ptp_threshold=rule.ptp,
        n_landmarks=n_landmarks, random_state=random_state, batch_size=batch_size,
    )
    d = _dimension(X[compared], dimensionality)
    density_kwargs = {"d": d} if ls is None else {"d": d, "ls": ls}
    if ls_factor is not None:
        density_kwargs["ls_factor"] = ls_factor
    fit_kwargs = dict(condition1_sample_indices=samples[0], condition2_sample_indices=samples[1],
                      sync_parameters=sync_parameters,
                      allow_single_condition_variance=allow_single_condition_variance)
    model.fit(X[mask1], X[mask2], landmarks=landmarks, **fit_kwargs, **density_kwargs)
    out = model.predict(X, progress=progress)
    values = {
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
            fit_kwargs=dict(landmarks=model.landmarks, ls=model.ls, d=d, **{
                k: fit_kwargs[k] for k in ("sync_parameters", "allow_single_condition_variance")}),
            random_state=random_state, progress=progress,
        )
        values["lfc_fdr"] = np.full(len(X), np.nan)
        values["lfc_fdr"][compared] = zscore_fdr(out["log_fold_change_zscore"][compared], null,
                                                 threshold=rule.fdr)["fdr"]
    values["direction"] = np.full(len(X), "neutral", dtype=object)
    values["direction"][compared] = rule.calls(
        values["lfc"][compared], values["lfc_fdr"][compared] if fdr else None,
        values["neg_log10_ptp"][compared])
    fitted = dict(landmarks=model.landmarks, ls=model.ls, d=float(d))
    return AnalysisResult(DA_SCHEMA, values, fitted, {"density"} | ({"fdr"} if fdr else set()),
                          model)


def _dimension(X_compared: np.ndarray, dimensionality) -> float:
    """The density model's dimension ``d`` for the ``dimensionality`` option."""
    if dimensionality == "features":
        return X_compared.shape[1]
    if dimensionality == "fractal":
        return fractal_dimension(X_compared)
    return dimensionality
