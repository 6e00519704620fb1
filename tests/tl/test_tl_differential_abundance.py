"""kompot.tl.compute_differential_abundance on the toy data."""

import logging

import anndata
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from tl_testing import C1, C2, FAST, assert_adata_equal

import kompot.tl
from kompot._keys import DIRECTION_CATEGORIES, DIRECTION_COLORS, DAKeys

KEYS = DAKeys("kompot_da", C1, C2)


@pytest.fixture(scope="module")
def da(small):
    """The toy data with one DA run at the default key; a third condition gets cells too."""
    adata = small.copy()
    # Relabel some cells as a third condition: they must still get values.
    condition = adata.obs["condition"].astype(str).to_numpy().copy()
    condition[:60] = "other"
    adata.obs["condition"] = pd.Categorical(condition)
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    return adata


def test_fields_dtypes_and_shapes(da):
    for name in (KEYS.lfc, KEYS.lfc_std, KEYS.zscore, KEYS.neg_log10_ptp, KEYS.lfc_pvalue):
        col = da.obs[name]
        assert col.dtype == np.float64, name
        assert np.isfinite(col).all(), f"{name} must be defined at every cell"
    # FDR and calls are about the two compared conditions only
    other = (da.obs["condition"] == "other").to_numpy()
    fdr = da.obs[KEYS.lfc_fdr].to_numpy()
    assert np.isnan(fdr[other]).all() and np.isfinite(fdr[~other]).all()
    assert (da.obs.loc[other, KEYS.direction] == "neutral").all()
    direction = da.obs[KEYS.direction]
    assert isinstance(direction.dtype, pd.CategoricalDtype)
    assert list(direction.cat.categories) == list(DIRECTION_CATEGORIES)
    assert list(da.uns[KEYS.direction_colors]) == list(DIRECTION_COLORS)
    assert (da.obs[KEYS.lfc_std] > 0).all()
    assert (da.obs[KEYS.neg_log10_ptp] >= 0).all()


def test_columns_are_consistent(da):
    obs = da.obs
    # Without samples the p-value is the posterior's normal tail.
    np.testing.assert_allclose(obs[KEYS.zscore], obs[KEYS.lfc] / obs[KEYS.lfc_std], rtol=1e-6)
    np.testing.assert_allclose(obs[KEYS.neg_log10_ptp], -np.log10(obs[KEYS.lfc_pvalue] / 2),
                               rtol=1e-8)
    up = obs[KEYS.direction] == "up"
    down = obs[KEYS.direction] == "down"
    assert up.any() and down.any()
    assert (obs.loc[up, KEYS.lfc] > 0).all() and (obs.loc[down, KEYS.lfc] < 0).all()
    called = (up | down).to_numpy()
    compared = (obs["condition"] != "other").to_numpy()
    assert np.array_equal(called, compared & (obs[KEYS.lfc_fdr] <= 0.05).to_numpy())


def test_density_method_keeps_its_columns(small):
    adata = small.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, method="density",
                                             n_permutations=3, **FAST)
    obs = adata.obs
    np.testing.assert_allclose(obs[KEYS.lfc], obs[KEYS.log_density(C2)] - obs[KEYS.log_density(C1)])
    np.testing.assert_allclose(obs[KEYS.zscore], obs[KEYS.lfc] / obs[KEYS.lfc_std], rtol=1e-6)
    assert sorted(adata.uns["kompot_da"]["fields"]["obs"]) == sorted(KEYS.obs_columns("density"))
    assert adata.uns["kompot_da"]["method"] == "density"
    called = obs[KEYS.direction] != "neutral"
    assert (obs.loc[called, KEYS.lfc_fdr] <= 0.05).all()


def test_ptp_rule_keeps_its_thresholds(small):
    adata = small.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, direction_by="ptp",
                                             **FAST)
    obs = adata.obs
    up = obs[KEYS.direction] == "up"
    assert up.any()
    assert (obs.loc[up, KEYS.lfc] > 1.0).all()
    assert (obs.loc[up, KEYS.neg_log10_ptp] > -np.log10(0.05)).all()


def test_record(da):
    record = da.uns["kompot_da"]
    assert record["condition1"] == C1 and record["condition2"] == C2
    assert record["groupby"] == "condition" and record["obsm_key"] == "DM_EigenVectors"
    assert record["version"] == kompot.__version__
    assert record["landmarks"].shape == (100, da.obsm["DM_EigenVectors"].shape[1])
    assert isinstance(record["ls"], float) and record["ls"] > 0
    assert record["params"]["sample_col"] == "None"
    assert record["params"]["n_landmarks"] == 100
    assert sorted(record["fields"]["obs"]) == sorted(KEYS.obs_columns())
    assert record["method"] == "ratio" and record["amplitude"] > 0
    assert list(record["fields"]["uns"]) == [KEYS.direction_colors]
    assert list(record["fields"]["var"]) == [] and list(record["fields"]["layers"]) == []
    assert kompot._keys.keys_from_uns(da, "kompot_da", DAKeys) == KEYS


def test_planted_region_is_found(small):
    """AUROC of |z| for the planted DA region at the tl defaults."""
    adata = kompot.datasets.toy(n_cells=1000, n_genes=20, seed=0)
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    auroc = roc_auc_score(adata.obs["da_region"], np.abs(adata.obs[KEYS.zscore]))
    assert auroc >= 0.85
    # The enriched tip is called up more often than anywhere else.
    enriched = adata.obs["true_log_density_ratio"] > 1
    up = adata.obs[KEYS.direction] == "up"
    assert up[enriched].mean() > up[~enriched].mean()


def test_swapping_conditions(da):
    swapped = da.copy()
    kompot.tl.compute_differential_abundance(swapped, "condition", C2, C1, key_added="swap", **FAST)
    back = DAKeys("swap", C2, C1)
    obs = swapped.obs
    np.testing.assert_allclose(obs[back.lfc], -obs[KEYS.lfc], atol=1e-8)
    np.testing.assert_allclose(obs[back.zscore], -obs[KEYS.zscore], atol=1e-8)
    np.testing.assert_allclose(obs[back.lfc_std], obs[KEYS.lfc_std], rtol=1e-8)
    np.testing.assert_allclose(obs[back.neg_log10_ptp], obs[KEYS.neg_log10_ptp], rtol=1e-8)
    flip = {"up": "down", "down": "up", "neutral": "neutral"}
    assert (obs[back.direction].astype(str) == obs[KEYS.direction].astype(str).map(flip)).all()


def test_samples_make_the_test_stricter(da):
    adata = da.copy()
    kompot.tl.compute_differential_abundance(
        adata, "condition", C1, C2, sample_col="sample", key_added="reps", **FAST
    )
    reps = DAKeys("reps", C1, C2)
    np.testing.assert_allclose(adata.obs[reps.lfc], adata.obs[KEYS.lfc], atol=1e-10)
    assert (adata.obs[reps.lfc_pvalue] >= adata.obs[KEYS.lfc_pvalue] - 1e-12).all()
    assert (adata.obs[reps.lfc_sample_std] > 0).all()
    assert sorted(adata.uns["reps"]["fields"]["obs"]) == sorted(reps.obs_columns(samples=True))
    assert adata.uns["reps"]["params"]["sample_col"] == "sample"


def test_same_key_replaces_only_its_run(da):
    adata = da.copy()
    untouched = adata.obs.drop(columns=KEYS.obs_columns())
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, key_added="second", **FAST)
    second = adata.obs[DAKeys("second", C1, C2).obs_columns()].copy()
    # Same key, other direction: the earlier run's columns give way to the new ones.
    kompot.tl.compute_differential_abundance(adata, "condition", C2, C1, **FAST)
    new = DAKeys("kompot_da", C2, C1)
    for name in (KEYS.lfc, KEYS.zscore, KEYS.direction, KEYS.lfc_std, KEYS.neg_log10_ptp):
        assert name not in adata.obs
    assert KEYS.direction_colors not in adata.uns
    assert set(new.obs_columns()) <= set(adata.obs.columns)
    assert new.direction_colors in adata.uns
    assert adata.uns["kompot_da"]["condition1"] == C2
    pd.testing.assert_frame_equal(adata.obs[DAKeys("second", C1, C2).obs_columns()], second)
    pd.testing.assert_frame_equal(adata.obs[untouched.columns], untouched)
    assert "second" in adata.uns


def test_rerun_is_reproducible(da):
    adata = da.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    assert list(adata.obs.columns) == list(da.obs.columns)
    pd.testing.assert_frame_equal(adata.obs, da.obs)


def test_copy(small):
    before = small.copy()
    adata = small.copy()
    out = kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, copy=True, **FAST)
    assert out is not None and out is not adata
    assert_adata_equal(adata, before)
    assert KEYS.lfc in out.obs
    assert kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST) is None
    assert KEYS.lfc in adata.obs


def test_one_log_line_lists_the_fields(small, caplog, info_verbosity):
    adata = small.copy()
    with caplog.at_level(logging.INFO, logger="kompot"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    lines = [r for r in caplog.records if r.name == "kompot" and "wrote" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    for name in KEYS.obs_columns():
        assert name in lines[0].getMessage()


def test_condition_names_with_spaces(small):
    adata = small.copy()
    adata.obs["group"] = adata.obs["condition"].map({C1: "wild type", C2: "knock/out"}).astype("category")
    kompot.tl.compute_differential_abundance(adata, "group", "wild type", "knock/out", **FAST)
    keys = DAKeys("kompot_da", "wild type", "knock/out")
    assert keys.lfc == "kompot_da_wild_type_to_knock_out_lfc"
    assert set(keys.obs_columns()) <= set(adata.obs.columns)
    assert adata.uns["kompot_da"]["condition1"] == "wild type"


def test_view_becomes_actual_and_gets_the_fields(small):
    view = small[small.obs["cell_type"] != "progenitor"]
    with pytest.warns(UserWarning, match="view"):  # anndata's ImplicitModificationWarning
        kompot.tl.compute_differential_abundance(view, "condition", C1, C2, **FAST)
    assert not view.is_view and KEYS.lfc in view.obs
    assert KEYS.lfc not in small.obs


@pytest.mark.parametrize("method", ["ratio", "density"])
def test_fdr_column_and_fdr_directions(adata, method):
    kompot.tl.compute_differential_abundance(
        adata, "condition", C1, C2, sample_col="sample", method=method,
        log_fold_change_threshold=1.0, n_permutations=4, **FAST,
    )
    fdr = adata.obs[KEYS.lfc_fdr].to_numpy()
    assert fdr.dtype == np.float64 and np.all((fdr >= 0) & (fdr <= 1))
    assert KEYS.lfc_fdr in adata.uns["kompot_da"]["fields"]["obs"]
    direction = adata.obs[KEYS.direction].to_numpy()
    lfc = adata.obs[KEYS.lfc].to_numpy()
    called = direction != "neutral"
    assert called.any()
    assert np.all(fdr[called] < 0.05)
    assert np.all(np.abs(lfc[called]) > 1.0)
    assert np.all((direction == "up") == (called & (lfc > 0)))
    # FDR is monotone in |z|: a more extreme z never has a larger FDR
    z = np.abs(adata.obs[KEYS.zscore].to_numpy())
    order = np.argsort(z, kind="stable")
    assert np.all(np.diff(fdr[order]) <= 1e-12)


@pytest.mark.parametrize("method", ["ratio", "density"])
def test_fdr_directions_make_no_calls_without_a_condition_effect(small, method):
    adata = kompot.datasets.toy(n_cells=800, n_genes=40, da_strength=0.0, n_de_genes=0, seed=3)
    rng = np.random.default_rng(0)
    adata.obs["random"] = pd.Categorical(rng.permutation(adata.obs["condition"].to_numpy()))
    kompot.tl.compute_differential_abundance(adata, "random", C1, C2, method=method,
                                             n_permutations=4, **FAST)
    assert set(adata.obs[KEYS.direction]) == {"neutral"}


def test_direction_by_must_be_known(adata):
    before = adata.copy()
    with pytest.raises(ValueError, match="direction_by"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, direction_by="p",
                                                 **FAST)
    assert_adata_equal(adata, before)


def test_dimensionality_sets_the_density_dimension(small):
    k = DAKeys("kompot_da", C1, C2)
    runs = {}
    for dim in ("features", "fractal", 3.0):
        adata = small.copy()
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, method="density",
                                                 dimensionality=dim, fdr=False, **FAST)
        runs[dim] = (adata.uns["kompot_da"]["d"], adata.obs[k.lfc].to_numpy(),
                     adata.obs["true_log_density_ratio"].to_numpy())
    assert runs["features"][0] == small.obsm["DM_EigenVectors"].shape[1]
    assert runs[3.0][0] == 3.0
    # The toy cells lie on a 2-D trajectory with some spread in the other
    # dimensions: their fractal dimension is far below the 10 columns.
    assert 2.0 < runs["fractal"][0] < 6.0
    # The log fold change scales with d: with the number of columns it
    # overshoots the planted log ratio (measured slope 1.62), with the fractal
    # dimension it lies much closer to it (0.86).
    slope = {dim: np.polyfit(truth, lfc, 1)[0] for dim, (_, lfc, truth) in runs.items()}
    print({dim: round(v, 2) for dim, v in slope.items()})
    assert slope["features"] > 1.3
    assert slope["fractal"] < slope["features"] / 1.5
    assert abs(slope["fractal"] - 1) < abs(slope["features"] - 1) / 2


def test_fractal_dimension_ignores_the_order_of_cells(small):
    from kompot.core.density import fractal_dimension

    X = small.obsm["DM_EigenVectors"]
    order = np.random.default_rng(0).permutation(len(X))
    assert fractal_dimension(X) == fractal_dimension(X[order])


@pytest.mark.parametrize("bad", ["fractals", 0, -1.0, float("nan"), True])
def test_dimensionality_must_be_known_or_positive(adata, bad):
    before = adata.copy()
    with pytest.raises(ValueError, match="dimensionality"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, method="density",
                                                 dimensionality=bad)
    assert_adata_equal(adata, before)


def test_cells_of_a_third_condition_change_nothing(small):
    two = small.copy()
    kompot.tl.compute_differential_abundance(two, "condition", C1, C2, sample_col="sample",
                                             **FAST)
    # Add cells of a third condition (shifted copies of some cells) and rerun.
    extra = small[:150].copy()
    extra.obsm["DM_EigenVectors"] = extra.obsm["DM_EigenVectors"] + 0.01
    extra.obs["condition"] = "third"
    extra.obs["sample"] = "third_1"
    extra.obs_names = [f"x{i}" for i in range(extra.n_obs)]
    three = anndata.concat([small, extra])
    for col in ("condition", "sample"):
        three.obs[col] = three.obs[col].astype("category")
    kompot.tl.compute_differential_abundance(three, "condition", C1, C2, sample_col="sample",
                                             **FAST)
    names = two.obs_names
    for col in KEYS.obs_columns(samples=True):
        a, b = two.obs[col], three.obs.loc[names, col]
        if isinstance(a.dtype, pd.CategoricalDtype):
            assert (a.astype(str) == b.astype(str)).all(), col
        else:
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=col)
    third = three.obs["condition"] == "third"
    assert three.obs.loc[third, KEYS.lfc_fdr].isna().all()
    assert np.isfinite(three.obs.loc[third, KEYS.lfc]).all()


def test_fifty_donors_per_condition(small):
    adata = small.copy()
    rng = np.random.default_rng(0)
    donor = rng.integers(0, 50, adata.n_obs).astype(str)
    adata.obs["donor"] = pd.Categorical(adata.obs["condition"].astype(str) + "_" + donor)
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, sample_col="donor",
                                             **FAST)
    assert np.isfinite(adata.obs[KEYS.lfc_pvalue]).all()
    assert (adata.obs[KEYS.lfc_sample_std] > 0).all()


def test_a_tiny_condition_is_refused_before_anything_is_written(small):
    adata = small.copy()
    labels = adata.obs["condition"].astype(str).to_numpy().copy()
    labels[np.flatnonzero(labels == C2)[5:]] = C1  # 5 treated cells left
    adata.obs["condition"] = pd.Categorical(labels)
    before = adata.copy()
    with pytest.raises(ValueError, match="at least 10 cells"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **FAST)
    assert_adata_equal(adata, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"method": "milo"}, "method"), ({"dimensionality": "fractal"}, "method='density'"),
     ({"sync_parameters": True}, "method='density'"),
     ({"method": "density", "amplitude": 1.0}, "amplitude")],
)
def test_options_of_the_other_method_are_refused(adata, kwargs, match):
    before = adata.copy()
    with pytest.raises(ValueError, match=match):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **kwargs)
    assert_adata_equal(adata, before)
