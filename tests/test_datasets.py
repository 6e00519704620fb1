"""Tests of the simulated toy data set: layout, determinism and the planted truth."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import kompot.datasets as datasets_module
from kompot.datasets import toy


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    return toy()


def _treated(adata: ad.AnnData) -> np.ndarray:
    return (adata.obs["condition"] == "treated").to_numpy()


def test_shapes_dtypes_and_names(adata):
    n_cells, n_genes = 2000, 200
    assert adata.shape == (n_cells, n_genes)
    assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
    counts = adata.layers["counts"]
    assert isinstance(counts, np.ndarray) and np.issubdtype(counts.dtype, np.integer)
    assert counts.min() >= 0
    states = adata.obsm["DM_EigenVectors"]
    assert states.shape == (n_cells, 10) and states.dtype == np.float64
    assert adata.obsm["X_umap"].shape == (n_cells, 2)
    assert list(adata.obs_names[:2]) == ["cell_0", "cell_1"]
    assert list(adata.var_names[:2]) == ["gene_0", "gene_1"]
    assert adata.obs["condition"].cat.categories.tolist() == ["control", "treated"]
    assert adata.obs["da_region"].dtype == bool
    assert adata.obs["true_log_density_ratio"].dtype == np.float64
    assert adata.var["is_de"].dtype == bool
    assert adata.var["true_lfc"].dtype == np.float64
    cell_types = adata.obs["cell_type"]
    assert isinstance(cell_types.dtype, pd.CategoricalDtype)
    assert len(adata.uns["cell_type_colors"]) == len(cell_types.cat.categories)
    assert adata.uns["toy_params"] == {
        "n_cells": 2000,
        "n_genes": 200,
        "n_de_genes": 20,
        "n_samples": 3,
        "n_dims": 10,
        "da_strength": 2.0,
        "de_strength": 1.5,
        "replicate_effects": True,
        "replicate_spread": 0.0,
        "seed": 0,
    }


def test_x_is_log_normalised_counts(adata):
    counts = adata.layers["counts"].astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    assert np.all(totals > 0)
    expected = np.log1p(counts / totals * 1e4)
    np.testing.assert_allclose(adata.X, expected, rtol=1e-5, atol=1e-5)


def test_same_seed_same_data_other_seed_other_data():
    first, second, other = toy(500, 50, seed=3), toy(500, 50, seed=3), toy(500, 50, seed=4)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.layers["counts"], second.layers["counts"])
    np.testing.assert_array_equal(first.obsm["DM_EigenVectors"], second.obsm["DM_EigenVectors"])
    pd.testing.assert_frame_equal(first.obs, second.obs)
    pd.testing.assert_frame_equal(first.var, second.var)
    assert not np.array_equal(first.X, other.X)
    assert not np.array_equal(first.obsm["X_umap"], other.obsm["X_umap"])


def test_blocks_do_not_depend_on_thread_count(monkeypatch):
    # 12,000 x 400 spans several blocks of cells, each with its own generator.
    threaded = toy(12_000, 400, seed=1)
    monkeypatch.setattr(datasets_module, "_MAX_THREADS", 1)
    serial = toy(12_000, 400, seed=1)
    np.testing.assert_array_equal(threaded.layers["counts"], serial.layers["counts"])


def test_gene_programmes_do_not_depend_on_cell_count():
    pd.testing.assert_frame_equal(toy(1000).var, toy(2000).var)


def test_samples_are_nested_in_conditions(adata):
    obs = adata.obs
    assert obs["sample"].cat.categories.tolist() == [
        "control_1",
        "control_2",
        "control_3",
        "treated_1",
        "treated_2",
        "treated_3",
    ]
    conditions_per_sample = obs.groupby("sample", observed=True)["condition"].nunique()
    assert (conditions_per_sample == 1).all()
    for sample, condition in obs[["sample", "condition"]].drop_duplicates().itertuples(index=False):
        assert sample.startswith(f"{condition}_")
    sizes = obs["sample"].value_counts()
    assert sizes.min() >= 20 and sizes.nunique() > 1
    assert abs(_treated(adata).mean() - 0.5) < 0.01


def _composition_pvalue(adata):
    """Chi-square test that samples of a condition share one cell-type composition
    (statistics and degrees of freedom summed over the two conditions)."""
    statistic, dof = 0.0, 0
    for condition in ("control", "treated"):
        obs = adata.obs[adata.obs["condition"] == condition]
        table = pd.crosstab(obs["sample"].cat.remove_unused_categories(), obs["cell_type"])
        result = stats.chi2_contingency(table)
        statistic, dof = statistic + result.statistic, dof + result.dof
    return stats.chi2.sf(statistic, dof)


def test_replicates_differ_in_composition(adata):
    # Samples differ by more than multinomial noise.
    assert _composition_pvalue(adata) < 0.01


def test_without_replicate_effects_samples_are_exchangeable():
    # Now the differences are consistent with multinomial noise.
    adata = toy(n_cells=3000, replicate_effects=False, seed=1)
    assert _composition_pvalue(adata) > 0.01
    assert adata.uns["toy_params"]["replicate_effects"] is False


def test_planted_abundance_change(adata):
    obs, treated = adata.obs, _treated(adata)
    ratio = obs["true_log_density_ratio"].to_numpy()
    region = obs["da_region"].to_numpy()
    enriched, depleted = ratio >= 1.0, ratio <= -1.0
    assert 0.10 <= enriched.mean() <= 0.25
    assert np.all(region[enriched | depleted])
    assert np.all(ratio[~region] > -1.0) and np.all(ratio[~region] < 1.0)
    assert np.abs(ratio).max() == pytest.approx(2.0)
    background = treated[ratio == 0].mean()
    assert treated[enriched].mean() > background + 0.25
    assert treated[depleted].mean() < background - 0.25
    # The planted log ratio predicts the treated share, logit(share) ~ ratio + offset,
    # up to the replicates' own abundance effects.
    offset = adata.uns["toy_truth"]["background_log_density_ratio"]
    predicted = 1 / (1 + np.exp(-(2.0 + offset)))
    assert treated[np.isclose(ratio, 2.0)].mean() == pytest.approx(predicted, abs=0.1)


def test_no_abundance_change_at_zero_strength():
    adata = toy(600, 20, da_strength=0.0)
    assert np.all(adata.obs["true_log_density_ratio"] == 0.0)
    assert adata.uns["toy_truth"]["background_log_density_ratio"] == 0.0


def test_planted_expression_change(adata):
    region = adata.obs["de_region"].to_numpy()
    is_de, true_lfc = adata.var["is_de"].to_numpy(), adata.var["true_lfc"].to_numpy()
    assert is_de.sum() == 20
    assert np.array_equal(is_de, true_lfc != 0)
    assert sorted(np.unique(true_lfc[is_de])) == [-1.5, 1.5]
    assert (true_lfc > 0).sum() == 10

    # Replicates carry their own expression shifts, so compare per-sample means
    # (pseudobulk) rather than cells, which would count replicate noise as signal.
    samples = adata.obs["sample"].to_numpy()
    names = adata.obs["sample"].cat.categories
    in_treated = np.array([name.startswith("treated") for name in names])

    def condition_difference(mask: np.ndarray) -> np.ndarray:
        means = np.stack([adata.X[mask & (samples == name)].mean(axis=0) for name in names])
        return means[in_treated].mean(axis=0) - means[~in_treated].mean(axis=0)

    def auroc(score: np.ndarray) -> float:
        u = stats.mannwhitneyu(score[is_de], score[~is_de]).statistic
        return u / (is_de.sum() * (~is_de).sum())

    inside = condition_difference(region)
    assert np.all(inside[is_de] * np.sign(true_lfc[is_de]) > 0.3)
    assert auroc(np.abs(inside)) > 0.98
    # Beyond the region's tapered edge (and away from the abundance change) DE
    # genes are no different from the others.
    centre, _, edge = datasets_module._DE_REGION
    far = np.linalg.norm(adata.obsm["X_umap"] - np.asarray(centre), axis=1) > edge
    outside = condition_difference(far & (adata.obs["true_log_density_ratio"] == 0).to_numpy())
    assert 0.25 < auroc(np.abs(outside)) < 0.75


def test_odd_and_zero_numbers_of_de_genes():
    assert (toy(400, 30, n_de_genes=5, n_samples=2).var["true_lfc"] > 0).sum() == 3
    assert not toy(400, 30, n_de_genes=0, n_samples=2).var["is_de"].any()
    assert toy(400, 30, n_de_genes=30, n_samples=2).var["is_de"].all()


def test_h5ad_round_trip(adata, tmp_path):
    path = tmp_path / "toy.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X, adata.X)
    np.testing.assert_array_equal(back.layers["counts"], adata.layers["counts"])
    np.testing.assert_array_equal(back.obsm["DM_EigenVectors"], adata.obsm["DM_EigenVectors"])
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    pd.testing.assert_frame_equal(back.var, adata.var)
    assert dict(back.uns["toy_params"]) == adata.uns["toy_params"]
    assert list(back.uns["cell_type_colors"]) == adata.uns["cell_type_colors"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_genes": 10, "n_de_genes": 11}, "n_de_genes"),
        ({"n_de_genes": -1}, "n_de_genes"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_cells": 100, "n_samples": 3}, "n_cells"),
        ({"n_cells": 2.5}, "n_cells"),
        ({"n_cells": True}, "n_cells"),
        ({"n_genes": 0}, "n_genes"),
        ({"n_dims": 1}, "n_dims"),
        ({"seed": -1}, "seed"),
        ({"da_strength": np.nan}, "da_strength"),
        ({"da_strength": 6.0}, "da_strength"),
        ({"de_strength": np.inf}, "de_strength"),
        ({"replicate_effects": "no"}, "replicate_effects"),
        ({"replicate_spread": -0.5}, "replicate_spread"),
        ({"replicate_spread": np.nan}, "replicate_spread"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy(**kwargs)


def _between_sample_sd(adata):
    """Per gene, the SD over samples of the sample's mean log expression (control only)."""
    control = adata.obs["condition"].to_numpy() == "control"
    samples = adata.obs["sample"].to_numpy()[control]
    X = np.asarray(adata.X)[control]
    means = np.stack([X[samples == s].mean(axis=0) for s in np.unique(samples)])
    return means.std(axis=0)


def test_replicate_spread_makes_genes_vary_unequally_between_samples():
    plain = toy(n_cells=3000, n_genes=300, n_samples=4, seed=4)
    same = toy(n_cells=3000, n_genes=300, n_samples=4, seed=4, replicate_spread=0.0)
    np.testing.assert_array_equal(np.asarray(plain.X), np.asarray(same.X))
    spread = toy(n_cells=3000, n_genes=300, n_samples=4, seed=4, replicate_spread=1.0)
    # The cells and their states are the same; only the genes' sample shifts are rescaled.
    np.testing.assert_array_equal(plain.obsm["DM_EigenVectors"], spread.obsm["DM_EigenVectors"])
    sd0, sd1 = _between_sample_sd(plain), _between_sample_sd(spread)
    # Relative spread over genes of the between-sample SD: larger with unequal genes.
    # (Sample composition and depth also move a sample's means, equally for all
    # genes' shifts, so the gain is diluted: 0.74 against 0.59 here; without the
    # spread taking effect the two would be equal up to count noise.)
    assert np.std(np.log(sd1)) > 1.15 * np.std(np.log(sd0))


def test_batch_abundance_makes_batch_b_relatively_richer_in_one_region():
    adata = toy(1500, 10, n_de_genes=2, seed=3)
    columns = list(adata.obs.columns)
    out = datasets_module.with_batch_abundance(adata, strength=3.0, seed=1)
    assert adata.n_obs == 1500 and list(adata.obs.columns) == columns  # input untouched
    # The batch is partly confounded with the condition: 2 + 1 and 1 + 2 samples.
    per_sample = out.obs.groupby("sample", observed=True)["batch"].agg(lambda b: b.iloc[0])
    assert list(per_sample) == ["A", "A", "B", "A", "B", "B"]
    assert (out.obs.groupby("sample", observed=True)["batch"].nunique() == 1).all()
    # A subset of the cells, unchanged.
    kept = adata.obs_names.get_indexer(out.obs_names)
    assert (kept >= 0).all() and (np.diff(kept) > 0).all() and 600 < out.n_obs < 1400
    np.testing.assert_array_equal(out.obsm["DM_EigenVectors"], adata.obsm["DM_EigenVectors"][kept])
    pd.testing.assert_series_equal(out.obs["true_log_density_ratio"],
                                   adata.obs["true_log_density_ratio"].iloc[kept])
    # In the region batch B's share of its cells is several times batch A's (exp(3) in the core).
    region, b = out.obs["batch_region"], out.obs["batch"] == "B"
    odds = region[b].mean() / (1 - region[b].mean()) / (region[~b].mean() / (1 - region[~b].mean()))
    assert odds > 5
    assert not (out.obs["batch_region"] & out.obs["da_region"]).any()
    assert datasets_module.with_batch_abundance(adata, strength=0.0).n_obs == adata.n_obs
    with pytest.raises(ValueError, match="strength"):
        datasets_module.with_batch_abundance(adata, strength=-1.0)
