"""Small simulated data sets with known answers, for tests, docs and benchmarks.

:func:`toy` draws cells on a branching trajectory in a 2-D latent space, splits
them into two conditions with replicate samples, plants a region where the
"treated" condition is more abundant (and one where it is less abundant), and
gives a few genes a condition-specific shift inside another region. Every
planted effect is written next to the data, so results can be scored against it.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["toy", "with_batch_abundance", "with_batch_effect"]

CONDITIONS = ("control", "treated")

# The trajectory: a trunk that splits into two branches, as (start, end) in 2-D.
_SEGMENTS = np.array(
    [
        [[0.0, 0.0], [2.0, 0.0]],  # trunk
        [[2.0, 0.0], [4.0, 1.6]],  # branch A
        [[2.0, 0.0], [4.0, -1.6]],  # branch B
    ]
)
# Spread of cells around the trajectory in the latent plane.
_WIDTH = 0.15
# Isotropic noise of the n_dims-dimensional representation, per dimension.
_EMBEDDING_NOISE = 0.05

# Cell types: the first and second half of each segment.
CELL_TYPES = (
    "progenitor",
    "transitional",
    "A_early",
    "A_mature",
    "B_early",
    "B_mature",
)
CELL_TYPE_COLORS = ("#7f7f7f", "#bcbd22", "#aec7e8", "#1f77b4", "#ffbb78", "#ff7f0e")

Region = tuple[tuple[float, float], float, float]
# Planted regions: (centre, radius where the effect is full, radius where it ends).
# Enriched near the tip of branch A, depleted near the tip of branch B, and
# expression changes in the late trunk, away from both.
_ENRICHED: Region = ((3.8, 1.44), 0.15, 0.4)
_DEPLETED: Region = ((3.6, -1.28), 0.35, 0.65)
_DE_REGION: Region = ((1.4, 0.0), 0.35, 0.65)
# Where with_batch_abundance makes batch B relatively richer: the start of the trunk,
# away from both planted abundance regions.
_BATCH_REGION: Region = ((0.5, 0.0), 0.45, 0.75)

# Smooth basis on the latent plane: expression programmes and sample effects.
_BASIS_WIDTH = 0.5
_SAMPLE_ABUNDANCE_SD = 0.3  # per-sample log-density bumps
_SAMPLE_EXPRESSION_SD = 0.1  # per-sample, per-gene log-mean shifts
_SAMPLE_SIZE_SPREAD = 0.2  # sample sizes vary by up to +-20 %
_MIN_CELLS_PER_SAMPLE_MEAN = 20
_MAX_ABS_DA_STRENGTH = 5.0
_TARGET_SUM = 1e4
_CHUNK_ENTRIES = 2_000_000  # cells x genes generated at a time (bounds memory)
_MAX_THREADS = 8


def _basis_centres() -> np.ndarray:
    """Points along the trajectory where the smooth basis functions sit."""
    fractions = np.array([0.0, 0.33, 0.67, 1.0])
    centres = [seg[0] + f * (seg[1] - seg[0]) for seg in _SEGMENTS for f in fractions]
    return np.unique(np.round(np.array(centres), 6), axis=0)


def _rbf(latent: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Gaussian bumps of every centre at every point, shape (n, n_centres)."""
    sq = ((latent[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * sq / _BASIS_WIDTH**2)


def _region_weight(latent: np.ndarray, region: Region) -> np.ndarray:
    """1 inside the region's core, 0 beyond its edge, a smooth step in between."""
    centre, inner, outer = region
    dist = np.linalg.norm(latent - np.asarray(centre), axis=1)
    x = np.clip((outer - dist) / (outer - inner), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _in_region(latent: np.ndarray, region: Region) -> np.ndarray:
    return _region_weight(latent, region) >= 0.5


def _planted_log_ratio(latent: np.ndarray, strength: float) -> np.ndarray:
    """Planted log(treated / control) density ratio, 0 outside the planted regions."""
    return strength * (_region_weight(latent, _ENRICHED) - _region_weight(latent, _DEPLETED))


def _propose(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells from the baseline density: a segment by length, a position on it, a spread."""
    starts, ends = _SEGMENTS[:, 0], _SEGMENTS[:, 1]
    lengths = np.linalg.norm(ends - starts, axis=1)
    segment = rng.choice(len(_SEGMENTS), size=n, p=lengths / lengths.sum())
    t = rng.random(n)
    latent = starts[segment] + t[:, None] * (ends[segment] - starts[segment])
    latent += rng.normal(scale=_WIDTH, size=(n, 2))
    return latent, segment, t


def _sample_cells(
    rng: np.random.Generator,
    n: int,
    log_weight: Callable[[np.ndarray], np.ndarray],
    log_weight_bound: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` cells from the baseline density tilted by ``exp(log_weight)``.

    Rejection sampling in batches (no loop over cells); ``log_weight_bound`` must
    bound ``log_weight`` from above, which makes the draw exact.
    """
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    remaining, acceptance = n, 0.5
    while remaining > 0:
        size = int(np.ceil(1.2 * remaining / acceptance)) + 64
        latent, segment, t = _propose(rng, size)
        keep = np.log(rng.random(size)) < log_weight(latent) - log_weight_bound
        acceptance = max(keep.mean(), 1e-3)
        idx = np.flatnonzero(keep)[:remaining]
        parts.append((latent[idx], segment[idx], t[idx]))
        remaining -= idx.size
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _sample_sizes(rng: np.random.Generator, n: int, n_samples: int) -> np.ndarray:
    """Split ``n`` cells over samples with sizes that differ by up to +-20 %."""
    shares = 1.0 + _SAMPLE_SIZE_SPREAD * rng.uniform(-1.0, 1.0, n_samples)
    sizes = np.floor(n * shares / shares.sum()).astype(int)
    sizes[: n - sizes.sum()] += 1
    return sizes


def _draw_cells(
    rng_layout: np.random.Generator,
    rng_cells: np.random.Generator,
    n_cells: int,
    n_samples: int,
    da_strength: float,
    centres: np.ndarray,
    replicate_scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent positions, cell-type codes and sample codes, in shuffled order.

    Samples ``0 .. n_samples - 1`` are control, the rest treated. Each sample's
    density is the baseline tilted by the planted ratio (treated only) and by
    its own random smooth bumps.
    """
    n_centres = centres.shape[0]
    sample_effects = rng_layout.normal(scale=_SAMPLE_ABUNDANCE_SD, size=(2, n_samples, n_centres))
    sample_effects *= replicate_scale  # drawn either way: the random streams stay aligned
    parts = []
    for c, n_cond in enumerate((n_cells // 2, n_cells - n_cells // 2)):
        strength = da_strength if CONDITIONS[c] == "treated" else 0.0
        for k, n_k in enumerate(_sample_sizes(rng_layout, n_cond, n_samples)):
            effect = sample_effects[c, k]

            def log_weight(z: np.ndarray, strength=strength, effect=effect) -> np.ndarray:
                return _planted_log_ratio(z, strength) + _rbf(z, centres) @ effect

            # The regions are disjoint and the bumps peak at 1: a valid bound.
            bound = abs(strength) + np.clip(effect, 0.0, None).sum()
            latent, segment, t = _sample_cells(rng_cells, n_k, log_weight, bound)
            parts.append((latent, 2 * segment + (t >= 0.5), np.full(n_k, c * n_samples + k)))
    # Shuffle so that the row order carries no information.
    order = rng_cells.permutation(n_cells)
    latent, cell_type_code, sample_code = (
        np.concatenate(p)[order] for p in zip(*parts, strict=True)
    )
    return latent, cell_type_code, sample_code


@dataclass(frozen=True)
class _Genes:
    """Per-gene parameters of the expression model (log scale)."""

    base: np.ndarray  # (G,) baseline log mean
    loadings: np.ndarray  # (n_centres, G) smooth programme along the trajectory
    inverse_dispersion: np.ndarray  # (G,) negative-binomial size
    sample_shift: np.ndarray  # (n_samples_total, G) replicate effects
    depth_shift: np.ndarray  # (n_samples_total,) replicate sequencing depth
    true_lfc: np.ndarray  # (G,) planted change in treated cells of the DE region


def _draw_genes(
    rng: np.random.Generator,
    n_genes: int,
    n_de_genes: int,
    n_samples_total: int,
    de_strength: float,
    centres: np.ndarray,
    replicate_scale: float,
) -> _Genes:
    """Smooth expression programmes, replicate effects and the planted DE genes."""
    n_centres = centres.shape[0]
    base = rng.normal(-0.5, 1.0, n_genes)
    loadings = np.zeros((n_centres, n_genes))
    for _ in range(2):  # each gene follows two random bumps
        rows = rng.integers(0, n_centres, n_genes)
        np.add.at(loadings, (rows, np.arange(n_genes)), rng.normal(0.0, 1.2, n_genes))
    inverse_dispersion = np.exp(rng.normal(np.log(5.0), 0.3, n_genes))
    sample_shift = rng.normal(scale=_SAMPLE_EXPRESSION_SD, size=(n_samples_total, n_genes))
    depth_shift = rng.normal(scale=0.1, size=n_samples_total)
    sample_shift *= replicate_scale
    depth_shift *= replicate_scale

    # DE genes come from the middle of the expression ranking in the DE region:
    # expressed enough for the change to show, but without the top genes whose
    # change would shift every cell's library size (and so every other gene
    # after normalisation). The less expressed half goes up, the rest down,
    # which roughly balances the library size as well.
    centre_level = base + (_rbf(np.array([_DE_REGION[0]]), centres) @ loadings)[0]
    ranked = np.argsort(-centre_level, kind="stable")
    n_candidates = max(n_de_genes, n_genes // 2)
    skip = min(n_genes // 4, n_genes - n_candidates)
    de_genes = rng.choice(ranked[skip : skip + n_candidates], size=n_de_genes, replace=False)
    de_genes = de_genes[np.argsort(centre_level[de_genes], kind="stable")]
    n_up = (n_de_genes + 1) // 2
    true_lfc = np.zeros(n_genes)
    true_lfc[de_genes[:n_up]] = de_strength
    true_lfc[de_genes[n_up:]] = -de_strength
    return _Genes(base, loadings, inverse_dispersion, sample_shift, depth_shift, true_lfc)


def _simulate_counts(
    log_mean: Callable[[slice], np.ndarray],
    n_cells: int,
    inverse_dispersion: np.ndarray,
    seed_seq: np.random.SeedSequence,
) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial counts and their log1p-normalised values, block by block.

    Each block of cells has its own generator spawned from ``seed_seq``, so the
    result does not depend on how many threads run the blocks. numpy releases
    the GIL while drawing, which makes threads worthwhile at benchmark sizes.
    """
    n_genes = inverse_dispersion.size
    counts = np.empty((n_cells, n_genes), dtype=np.int32)
    X = np.empty((n_cells, n_genes), dtype=np.float32)
    block = max(1, _CHUNK_ENTRIES // n_genes)
    blocks = [slice(lo, min(lo + block, n_cells)) for lo in range(0, n_cells, block)]

    def fill(rows: slice, block_seed: np.random.SeedSequence) -> None:
        rng = np.random.default_rng(block_seed)
        mean = np.exp(log_mean(rows))
        # Gamma-Poisson mixture = negative binomial with this mean.
        gamma = rng.standard_gamma(inverse_dispersion, size=mean.shape)
        block_counts = rng.poisson(mean * (gamma / inverse_dispersion))
        counts[rows] = block_counts
        totals = block_counts.sum(axis=1, keepdims=True)
        scale = (_TARGET_SUM / np.maximum(totals, 1)).astype(np.float32)
        X[rows] = np.log1p(block_counts.astype(np.float32) * scale)

    seeds = seed_seq.spawn(len(blocks))
    n_workers = min(len(blocks), os.cpu_count() or 1, _MAX_THREADS)
    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(fill, blocks, seeds))  # list() re-raises worker errors
    else:
        for rows, block_seed in zip(blocks, seeds, strict=True):
            fill(rows, block_seed)
    return counts, X


def _check_int(value: object, name: str, minimum: int) -> int:
    try:
        as_int = operator.index(value)  # rejects floats such as 2.5
    except TypeError:
        raise ValueError(f"`{name}` must be an integer, got {value!r}.") from None
    if isinstance(value, bool) or as_int < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(as_int)


def _check_finite(value: object, name: str) -> float:
    as_float = float(value)  # type: ignore[arg-type]
    if not np.isfinite(as_float):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    return as_float


def toy(
    n_cells: int = 2000,
    n_genes: int = 200,
    *,
    n_de_genes: int = 20,
    n_samples: int = 3,
    n_dims: int = 10,
    da_strength: float = 2.0,
    de_strength: float = 1.5,
    replicate_effects: bool = True,
    replicate_spread: float = 0.0,
    seed: int = 0,
) -> ad.AnnData:
    """Two conditions on a branching trajectory, with planted abundance and expression changes.

    Cells lie around a trunk that splits into two branches in a 2-D latent
    space. Half are "control", half "treated", each split into ``n_samples``
    replicate samples with their own small random abundance and expression
    effects. Relative to control, treated cells are ``exp(da_strength)`` times
    more abundant near the tip of branch A (about 15-20 % of all cells at the
    defaults) and ``exp(da_strength)`` times less abundant near the tip of
    branch B. ``n_de_genes`` genes (half up, half down) change their mean by
    ``de_strength`` in natural-log units in treated cells of the late trunk.

    Parameters
    ----------
    n_cells, n_genes
        Size of the data set.
    n_de_genes
        Number of genes with a planted expression change (0 to ``n_genes``).
    n_samples
        Replicate samples per condition.
    n_dims
        Dimensions of the cell-state representation (at least 2).
    da_strength
        Natural log of the planted abundance ratio (at most 5 in magnitude;
        negative swaps enrichment and depletion; 0 plants none).
    de_strength
        Natural-log shift of the DE genes' mean counts in treated cells.
    replicate_effects
        Give each sample its own abundance bumps, per-gene expression shifts
        and sequencing depth. With ``False`` the samples of a condition are
        exchangeable draws, so an analysis that ignores ``sample`` is valid;
        everything else (cells, genes, planted effects) is unchanged.
    replicate_spread
        How much the genes differ in the size of their samples' expression
        shifts: each gene's shifts are scaled by ``exp(replicate_spread * z)``
        with ``z`` standard normal per gene (0: all genes alike; 1: a gene at
        one standard deviation varies 2.7 times as much between samples as
        a typical one). Drawn from a stream of its own, so the data at 0 are
        those of earlier versions.
    seed
        Seed of the random generator; equal seeds give identical data.

    Returns
    -------
    AnnData with

    - ``X``: log1p of counts scaled to 10,000 per cell (float32, dense);
      ``layers["counts"]``: the raw counts (int32).
    - ``obsm["DM_EigenVectors"]``: the cell states (float64, ``n_dims`` columns),
      a random orthonormal map of the latent plane plus isotropic noise;
      ``obsm["X_umap"]``: the latent plane itself, for plotting.
    - ``obs``: ``condition`` (control / treated), ``sample`` (``control_1`` ...,
      nested in the conditions), ``cell_type`` (with ``uns["cell_type_colors"]``),
      ``true_log_density_ratio`` (planted log(treated / control) density ratio,
      0 outside the planted regions; a density ratio of normalised densities
      is this plus ``uns["toy_truth"]["background_log_density_ratio"]``),
      ``da_region`` (inside a planted abundance region) and ``de_region``
      (inside the region of the expression change). The replicates' own
      abundance effects are noise around this truth and not part of it.
    - ``var``: ``true_lfc`` (planted natural-log change of the mean count of
      treated cells in the core of ``de_region``, tapering to 0 at its edge;
      0 for other genes) and ``is_de`` (``true_lfc != 0``).
    - ``uns["toy_params"]``: the arguments of this call; ``uns["toy_truth"]``:
      ``background_log_density_ratio`` as above.
    """
    n_cells, n_genes, n_de_genes, n_samples, n_dims, seed = _check_sizes(
        n_cells, n_genes, n_de_genes, n_samples, n_dims, seed
    )
    da_strength, de_strength, replicate_scale = _check_effects(
        da_strength, de_strength, replicate_effects
    )
    replicate_spread = _check_finite(replicate_spread, "replicate_spread")
    if replicate_spread < 0:
        raise ValueError(f"`replicate_spread` must be >= 0, got {replicate_spread}.")
    sim = _simulate(n_cells, n_genes, n_de_genes, n_samples, n_dims, da_strength, de_strength,
                    replicate_scale, seed, replicate_spread)
    adata = _assemble(sim, n_samples)
    adata.uns["toy_params"] = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_de_genes": n_de_genes,
        "n_samples": n_samples,
        "n_dims": n_dims,
        "da_strength": da_strength,
        "de_strength": de_strength,
        "replicate_effects": replicate_effects,
        "replicate_spread": replicate_spread,
        "seed": seed,
    }
    adata.uns["toy_truth"] = {"background_log_density_ratio": sim.background}
    return adata


def _check_sizes(n_cells, n_genes, n_de_genes, n_samples, n_dims, seed) -> tuple[int, ...]:
    """The integer arguments of :func:`toy`, validated."""
    n_cells = _check_int(n_cells, "n_cells", 1)
    n_genes = _check_int(n_genes, "n_genes", 1)
    n_de_genes = _check_int(n_de_genes, "n_de_genes", 0)
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_dims = _check_int(n_dims, "n_dims", 2)
    seed = _check_int(seed, "seed", 0)
    if n_de_genes > n_genes:
        raise ValueError(
            f"`n_de_genes` ({n_de_genes}) exceeds `n_genes` ({n_genes}); lower n_de_genes "
            "or raise n_genes."
        )
    min_cells = 2 * n_samples * _MIN_CELLS_PER_SAMPLE_MEAN
    if n_cells < min_cells:
        raise ValueError(
            f"`n_cells` ({n_cells}) is too small for {n_samples} samples per condition; use "
            f"n_cells >= {min_cells} ({_MIN_CELLS_PER_SAMPLE_MEAN} cells per sample on "
            "average) or fewer samples."
        )
    return n_cells, n_genes, n_de_genes, n_samples, n_dims, seed


def _check_effects(da_strength, de_strength, replicate_effects) -> tuple[float, float, float]:
    """``da_strength``, ``de_strength`` and the replicate effects' scale (1 or 0), validated."""
    da_strength = _check_finite(da_strength, "da_strength")
    if not isinstance(replicate_effects, bool | np.bool_):
        raise ValueError(f"`replicate_effects` must be True or False, got {replicate_effects!r}.")
    de_strength = _check_finite(de_strength, "de_strength")
    if abs(da_strength) > _MAX_ABS_DA_STRENGTH:
        raise ValueError(
            f"`da_strength` ({da_strength}) must lie within +-{_MAX_ABS_DA_STRENGTH}; "
            "larger ratios leave almost no treated cells in the depleted region."
        )
    return da_strength, de_strength, 1.0 if replicate_effects else 0.0


@dataclass(frozen=True)
class _Simulation:
    """Everything :func:`toy` draws, before it becomes an AnnData."""

    latent: np.ndarray  # (n, 2) positions in the latent plane
    states: np.ndarray  # (n, n_dims) the cell-state representation
    cell_type_code: np.ndarray
    sample_code: np.ndarray
    condition_code: np.ndarray
    genes: _Genes
    counts: np.ndarray
    X: np.ndarray
    planted_log_ratio: np.ndarray  # (n,) planted log(treated / control) density ratio
    background: float  # offset between planted and normalised log ratios


def _simulate(
    n_cells: int,
    n_genes: int,
    n_de_genes: int,
    n_samples: int,
    n_dims: int,
    da_strength: float,
    de_strength: float,
    replicate_scale: float,
    seed: int,
    replicate_spread: float = 0.0,
) -> _Simulation:
    """Cells, cell states, genes and counts, each from its own random stream."""
    # Independent streams: e.g. the gene programmes stay the same when only
    # the number of cells changes.
    layout_seq, cells_seq, genes_seq, mc_seq, counts_seq, spread_seq = (
        np.random.SeedSequence(seed).spawn(6))
    rng_layout, rng_cells = np.random.default_rng(layout_seq), np.random.default_rng(cells_seq)
    centres = _basis_centres()

    latent, cell_type_code, sample_code = _draw_cells(
        rng_layout, rng_cells, n_cells, n_samples, da_strength, centres, replicate_scale
    )
    condition_code = sample_code // n_samples
    rotation, _ = np.linalg.qr(rng_layout.normal(size=(n_dims, 2)))
    states = latent @ rotation.T + rng_cells.normal(scale=_EMBEDDING_NOISE, size=(n_cells, n_dims))
    log_depth = rng_cells.normal(0.0, 0.25, n_cells)

    # Normalising constant of the treated density relative to control, so the
    # offset between planted and normalised log ratios can be reported.
    mc_latent, _, _ = _propose(np.random.default_rng(mc_seq), 100_000)
    background = -float(np.log(np.mean(np.exp(_planted_log_ratio(mc_latent, da_strength)))))

    genes = _draw_genes(
        np.random.default_rng(genes_seq), n_genes, n_de_genes, 2 * n_samples, de_strength,
        centres, replicate_scale,
    )
    log_depth += genes.depth_shift[sample_code]
    if replicate_spread:
        sizes = np.exp(replicate_spread * np.random.default_rng(spread_seq).normal(size=n_genes))
        genes.sample_shift[:] *= sizes  # the array, not the frozen field
    de_weight = _region_weight(latent, _DE_REGION) * (condition_code == 1)
    basis = _rbf(latent, centres)

    def log_mean(rows: slice) -> np.ndarray:
        out = basis[rows] @ genes.loadings + genes.base + genes.sample_shift[sample_code[rows]]
        out += log_depth[rows, None] + de_weight[rows, None] * genes.true_lfc
        return out

    counts, X = _simulate_counts(log_mean, n_cells, genes.inverse_dispersion, counts_seq)
    return _Simulation(latent, states, cell_type_code, sample_code, condition_code, genes,
                       counts, X, _planted_log_ratio(latent, da_strength), background)


def _assemble(sim: _Simulation, n_samples: int) -> ad.AnnData:
    """The simulated data and their ground truth as an AnnData."""
    n_cells, n_genes = sim.X.shape
    sample_names = [f"{cond}_{k + 1}" for cond in CONDITIONS for k in range(n_samples)]
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical.from_codes(sim.condition_code, categories=list(CONDITIONS)),
            "sample": pd.Categorical.from_codes(sim.sample_code, categories=sample_names),
            "cell_type": pd.Categorical.from_codes(sim.cell_type_code,
                                                   categories=list(CELL_TYPES)),
            "true_log_density_ratio": sim.planted_log_ratio,
            "da_region": _in_region(sim.latent, _ENRICHED) | _in_region(sim.latent, _DEPLETED),
            "de_region": _in_region(sim.latent, _DE_REGION),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(
        {"is_de": sim.genes.true_lfc != 0, "true_lfc": sim.genes.true_lfc},
        index=pd.Index([f"gene_{g}" for g in range(n_genes)]),
    )
    adata = ad.AnnData(X=sim.X, obs=obs, var=var)
    adata.layers["counts"] = sim.counts
    adata.obsm["DM_EigenVectors"] = sim.states
    adata.obsm["X_umap"] = sim.latent
    adata.uns["cell_type_colors"] = list(CELL_TYPE_COLORS)
    return adata


def with_batch_effect(
    adata: ad.AnnData, *, n_genes: int = 50, strength: float = 0.7, seed: int = 0
) -> ad.AnnData:
    """A copy of :func:`toy` data whose samples fall into two batches, with a planted batch effect.

    Within each condition the samples (in order) are split between batch
    ``"A"`` and ``"B"`` so that the batch is partly confounded with the
    condition: control has more samples in ``A``, treated more in ``B``
    (3 vs 3 samples: 2 + 1 and 1 + 2), and control has both batches, so the
    batch's effect can be told apart from the condition's. In batch ``B``,
    ``n_genes`` genes without a planted condition change get their counts
    multiplied by ``exp(+strength)`` or ``exp(-strength)`` (half each, drawn
    as Poisson additions or binomial thinning); ``X`` is then recomputed
    from the counts.

    Returns
    -------
    A new AnnData with ``obs["batch"]`` and ``var["is_batch_gene"]`` added,
    ``X`` and ``layers["counts"]`` changed; the input is not modified.
    """
    if "toy_params" not in adata.uns or "counts" not in adata.layers:
        raise ValueError("with_batch_effect expects data made by kompot.datasets.toy().")
    strength = _check_finite(strength, "strength")
    rng = np.random.default_rng(_check_int(seed, "seed", 0))
    out = adata.copy()
    batch = _batch_of_samples(out.obs)
    candidates = np.flatnonzero(~out.var["is_de"].to_numpy(bool))
    n_genes = min(_check_int(n_genes, "n_genes", 0), candidates.size)
    genes = np.sort(rng.choice(candidates, size=n_genes, replace=False))
    counts = np.asarray(out.layers["counts"]).astype(np.int64)
    in_b = np.flatnonzero(batch == "B")
    for k, g in enumerate(genes):
        c = counts[in_b, g]
        if k % 2 == 0:
            counts[in_b, g] = c + rng.poisson(c * np.expm1(strength))
        else:
            counts[in_b, g] = rng.binomial(c, np.exp(-strength))
    totals = counts.sum(axis=1, keepdims=True)
    out.layers["counts"] = counts.astype(np.int32)
    out.X = np.log1p(counts * (_TARGET_SUM / np.maximum(totals, 1))).astype(np.float32)
    out.obs["batch"] = pd.Categorical(batch, categories=["A", "B"])
    out.var["is_batch_gene"] = np.isin(np.arange(out.n_vars), genes)
    return out


def with_batch_abundance(adata: ad.AnnData, *, strength: float = 3.0,
                         seed: int = 0) -> ad.AnnData:
    """A subset of :func:`toy` data with a batch that shifts the cell-state composition.

    The samples fall into batches ``"A"`` and ``"B"`` as in
    :func:`with_batch_effect`, partly confounded with the condition (with
    3 samples per condition, control has 2 samples in ``A`` and 1 in ``B``,
    treated 1 in ``A`` and 2 in ``B``; with 4, 3 + 1 and 1 + 3). Cells are
    then removed at random so that batch ``B`` is relatively richer at the
    start of the trunk, a region away from the planted abundance changes:
    with ``w`` rising from 0 at the region's edge to 1 in its core, a cell
    of batch ``A`` is kept with probability ``exp(-strength * w / 2)``, one
    of batch ``B`` with ``exp(-strength * (1 - w) / 2)``. So in the region's
    core batch ``B`` has ``exp(strength)`` times the relative abundance of
    batch ``A``, in both conditions alike. Within a batch the conditions'
    log density ratio is still the planted one (up to a constant), but
    pooled over the batches the treated condition, which holds more of
    batch ``B``, looks enriched in the region (at most by the ratio of its
    share of batch ``B`` samples to control's, ``log 2`` or ``log 3``
    above): a false differential abundance that a model with the batch as a
    covariate should not report.

    Parameters
    ----------
    adata
        Data made by :func:`toy`.
    strength
        Natural log of the relative abundance of batch ``B`` over ``A`` in
        the region's core (>= 0; 0 removes no cells).
    seed
        Seed of the removal.

    Returns
    -------
    A new AnnData of the kept cells (in their order) with ``obs["batch"]``
    and ``obs["batch_region"]`` (inside the region, weight at least 0.5)
    added; ``uns["batch_abundance"]`` records ``strength`` and ``seed``.
    ``obs["true_log_density_ratio"]`` and ``obs["da_region"]`` keep the
    planted condition effect, which the batch does not change. The input is
    not modified.
    """
    if "toy_params" not in adata.uns or "X_umap" not in adata.obsm:
        raise ValueError("with_batch_abundance expects data made by kompot.datasets.toy().")
    strength = _check_finite(strength, "strength")
    if strength < 0:
        raise ValueError(f"`strength` must be >= 0, got {strength}.")
    rng = np.random.default_rng(_check_int(seed, "seed", 0))
    batch = _batch_of_samples(adata.obs)
    weight = _region_weight(np.asarray(adata.obsm["X_umap"]), _BATCH_REGION)
    thinning = np.where(batch == "A", weight, 1.0 - weight)
    kept = rng.random(adata.n_obs) < np.exp(-0.5 * strength * thinning)
    out = adata[kept].copy()
    out.obs["batch"] = pd.Categorical(batch[kept], categories=["A", "B"])
    out.obs["batch_region"] = weight[kept] >= 0.5
    out.uns["batch_abundance"] = {"strength": strength, "seed": int(seed)}
    return out


def _batch_of_samples(obs: pd.DataFrame) -> np.ndarray:
    """Batch of each cell: per condition, the first samples in ``A``, the rest in ``B``."""
    n = int(obs["sample"].nunique() // obs["condition"].nunique())
    # control: all but max(1, n // 3) samples in A; treated: n // 3 samples in A.
    in_a = {CONDITIONS[0]: n - max(1, n // 3), CONDITIONS[1]: n // 3}
    rank = obs["sample"].cat.codes.to_numpy() % n  # toy's samples: control_1..n, treated_1..n
    first = np.array([in_a[c] for c in obs["condition"].astype(str)])
    return np.where(rank < first, "A", "B")
