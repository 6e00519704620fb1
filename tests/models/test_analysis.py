"""The analyses of the model layer: an array user gets exactly what kompot.tl writes."""

import numpy as np
import pandas as pd
import pytest

import kompot
from kompot._keys import DAKeys, DEKeys
from kompot.models import (
    DA_SCHEMA,
    DE_SCHEMA,
    AnalysisResult,
    CallRule,
    run_differential_abundance,
    run_differential_expression,
)

C1, C2 = "control", "treated"
FAST = {"n_landmarks": 60}


@pytest.fixture(scope="module")
def toy():
    """300 cells with a third condition, whose cells get fold changes but no FDR or call."""
    adata = kompot.datasets.toy(n_cells=300, n_genes=12, n_de_genes=4, seed=2)
    condition = adata.obs["condition"].astype(str).to_numpy().copy()
    condition[:30] = "other"
    adata.obs["group"] = pd.Categorical(condition)
    adata.obs["replicate"] = adata.obs["sample"].astype(str).where(condition != "other", "x")
    return adata


def _arrays(adata):
    """What an array user holds: states, the two conditions' masks and their samples."""
    X = np.asarray(adata.obsm["DM_EigenVectors"], np.float64)
    group = adata.obs["group"].astype(str).to_numpy()
    mask1, mask2 = group == C1, group == C2
    samples = adata.obs["replicate"].astype(str).to_numpy()
    return X, mask1, mask2, samples[mask1], samples[mask2]


def _assert_matches_obs(result: AnalysisResult, adata, keys) -> None:
    assert sorted(keys.name(f.name) for f in result.fields) == sorted(
        adata.uns[keys.key_added]["fields"]["obs"])
    for field in result.fields:
        stored = adata.obs[keys.name(field.name)]
        if field.dtype == "category":
            np.testing.assert_array_equal(result[field.name], stored.astype(str).to_numpy())
        else:
            np.testing.assert_array_equal(result[field.name], stored.to_numpy())


@pytest.mark.parametrize("method", ["ratio", "density"])
def test_abundance_fdr_and_calls_equal_what_tl_writes(toy, method):
    adata = toy.copy()
    kompot.tl.compute_differential_abundance(
        adata, "group", C1, C2, sample_col="replicate", method=method, n_permutations=2,
        progress=False, **FAST)
    X, mask1, mask2, s1, s2 = _arrays(adata)
    extra = {"ls_factor": 0.25} if method == "density" else {}  # tl's density default
    result = run_differential_abundance(
        X, mask1, mask2, method=method, condition1_sample_indices=s1,
        condition2_sample_indices=s2, n_permutations=2, **FAST, **extra)
    assert "lfc_fdr" in result and "direction" in result
    _assert_matches_obs(result, adata, DAKeys("kompot_da", C1, C2))
    other = ~(mask1 | mask2)
    assert np.isnan(result["lfc_fdr"][other]).all()
    assert (result["direction"][other] == "neutral").all()
    assert np.isfinite(result["lfc"]).all()
    record = adata.uns["kompot_da"]
    np.testing.assert_array_equal(record["landmarks"], result.fitted["landmarks"])
    assert record["ls"] == result.fitted["ls"]


def test_abundance_ptp_rule_without_fdr(toy):
    adata = toy.copy()
    kompot.tl.compute_differential_abundance(
        adata, "group", C1, C2, method="density", fdr=False, direction_by="ptp",
        progress=False, **FAST)
    X, mask1, mask2, _, _ = _arrays(adata)
    rule = CallRule.default("ptp")
    assert rule == CallRule("ptp", 1.0, 0.05, 0.05)
    result = run_differential_abundance(X, mask1, mask2, method="density", rule=rule, fdr=False,
                                        ls_factor=0.25, **FAST)
    assert "lfc_fdr" not in result and result.options == {"density"}
    _assert_matches_obs(result, adata, DAKeys("kompot_da", C1, C2))
    assert adata.uns["kompot_da"]["rule"] == rule.as_record()


def test_expression_fdr_and_calls_equal_what_tl_writes(toy):
    adata = toy.copy()
    kompot.tl.compute_differential_expression(
        adata, "group", C1, C2, sample_col="replicate", n_permutations=2, progress=False,
        **FAST)
    X, mask1, mask2, s1, s2 = _arrays(adata)
    Y = np.asarray(adata.X, np.float64)
    result = run_differential_expression(
        X, mask1, mask2, Y[mask1], Y[mask2], condition1_sample_indices=s1,
        condition2_sample_indices=s2, n_permutations=2, ls_factor=0.5, **FAST)
    keys = DEKeys("kompot_de", C1, C2)
    assert set(result) == set(DE_SCHEMA.names)
    for field in result.fields:
        stored = (adata.var[keys.name(field.name)].to_numpy() if field.slot == "var"
                  else adata.layers[keys.name(field.name)])
        assert stored.dtype == np.dtype(field.dtype), field.name
        np.testing.assert_array_equal(result[field.name], stored)
    assert result["is_de"].dtype == bool


def test_result_is_keyed_by_the_schema():
    values = {"direction": np.array(["up"], dtype=object), "lfc": np.array([1.0])}
    result = AnalysisResult(DA_SCHEMA, values, {"ls": 1.0}, {"ratio"})
    assert list(result) == ["lfc", "direction"]  # schema order
    assert result.fields == (DA_SCHEMA["lfc"], DA_SCHEMA["direction"])
    with pytest.raises(TypeError):
        result.values["lfc"] = np.array([2.0])  # read-only
    with pytest.raises(KeyError, match="did not compute 'lfc_fdr'"):
        result["lfc_fdr"]
    with pytest.raises(KeyError, match="no field 'nope'"):
        result["nope"]
    with pytest.raises(KeyError, match="no fields"):
        AnalysisResult(DA_SCHEMA, {"nope": np.zeros(1)})
    frame = result.to_frame(index=["cell"])
    assert list(frame.columns) == ["lfc", "direction"]
    assert list(frame["direction"].cat.categories) == ["down", "neutral", "up"]


def test_call_rule():
    lfc = np.array([2.0, -2.0, 0.5, 2.0])
    fdr = np.array([0.01, 0.01, 0.01, 0.2])
    ptp = np.array([5.0, 5.0, 5.0, 0.1])
    assert list(CallRule().calls(lfc, fdr, ptp)) == ["up", "down", "up", "neutral"]
    assert list(CallRule.default("ptp").calls(lfc, None, ptp)) == [
        "up", "down", "neutral", "neutral"]
    assert list(CallRule.default("fdr").as_record()) == ["lfc", "ptp", "fdr", "by"]
    with pytest.raises(ValueError, match="direction_by"):
        CallRule("pvalue")


def test_masks_are_checked():
    X = np.zeros((20, 2))
    mask = np.arange(20) < 10
    with pytest.raises(ValueError, match="mask2 must be a boolean mask"):
        run_differential_abundance(X, mask, [1] * 20)
    with pytest.raises(ValueError, match="one entry per row of X"):
        run_differential_expression(X, mask, mask[:5], X, X)
    with pytest.raises(ValueError, match="overlap"):
        run_differential_abundance(X, mask, mask)
