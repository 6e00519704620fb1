"""kompot.tl writes exactly the fields of each analysis's schema, with the schema's dtypes.

These tests iterate the schemas, so a field added to a schema is checked here
without a new test, and a name that drifts between tl, _keys and the
documentation fails.
"""

import dataclasses
import inspect

import numpy as np
import pandas as pd
import pytest
from tl_testing import C1, C2, FAST

import kompot
from kompot._keys import DAKeys, DEKeys, RunKeys, SmoothKeys
from kompot.models import DA_SCHEMA, DE_SCHEMA, SMOOTH_SCHEMA, AnalysisResult, Field, Schema
from kompot.tl._record import write_result

# tl options -> the option tags of the schema ("requires") they switch on.
DA_RUNS = {
    "ratio": ({}, {"ratio", "fdr"}),
    "ratio_samples": ({"sample_col": "sample"}, {"ratio", "fdr", "samples"}),
    "density": ({"method": "density", "n_permutations": 2}, {"density", "fdr"}),
    "density_no_fdr": ({"method": "density", "fdr": False, "direction_by": "ptp"}, {"density"}),
}
DE_RUNS = {
    "fdr": ({"n_permutations": 2}, {"fdr", "layers"}),
    "no_fdr_no_layers": ({"fdr": False, "store_layers": False}, set()),
}


def _check_dtype(field: Field, values) -> None:
    if field.dtype == "category":
        assert isinstance(values.dtype, pd.CategoricalDtype), field.name
        assert tuple(values.cat.categories) == field.categories
    else:
        assert np.asarray(values).dtype == np.dtype(field.dtype), field.name


def _written(adata, key: str) -> dict:
    return {slot: list(names) for slot, names in adata.uns[key]["fields"].items()}


@pytest.fixture(scope="module")
def da_runs(small):
    out = {}
    for name, (options, _) in DA_RUNS.items():
        adata = small.copy()
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **options, **FAST)
        out[name] = adata
    return out


@pytest.mark.parametrize("run", list(DA_RUNS))
def test_da_writes_the_schema_fields_of_its_options(da_runs, run):
    adata, tags = da_runs[run], DA_RUNS[run][1]
    keys = DAKeys("kompot_da", C1, C2)
    written = _written(adata, "kompot_da")
    assert written["obs"] == keys.names(tags, "obs")  # also the order
    for field in DA_SCHEMA.written_with(tags):
        _check_dtype(field, adata.obs[keys.name(field.name)])
        if field.colors is not None:
            assert list(adata.uns[f"{keys.name(field.name)}_colors"]) == list(field.colors)
            assert f"{keys.name(field.name)}_colors" in written["uns"]


def test_every_da_field_is_written_by_some_run(da_runs):
    keys = DAKeys("kompot_da", C1, C2)
    written = set().union(*(adata.uns["kompot_da"]["fields"]["obs"] for adata in da_runs.values()))
    assert written == {keys.name(f.name) for f in DA_SCHEMA}


@pytest.mark.parametrize("run", list(DE_RUNS))
def test_de_writes_the_schema_fields_of_its_options(small, run):
    options, tags = DE_RUNS[run]
    adata = small.copy()
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, genes=["gene_0", "gene_5"],
                                              **options, **FAST)
    keys = DEKeys("kompot_de", C1, C2)
    written = _written(adata, "kompot_de")
    for slot in ("var", "layers"):
        assert written[slot] == keys.names(tags, slot)
    for field in DE_SCHEMA.written_with(tags):
        stored = adata.var[keys.name(field.name)] if field.slot == "var" \
            else adata.layers[keys.name(field.name)]
        _check_dtype(field, stored)
    if tags:  # the full run writes every field
        assert sum(map(len, (written["var"], written["layers"]))) == len(DE_SCHEMA)


def test_smoothing_writes_its_schema(small):
    adata = small.copy()
    kompot.tl.compute_smoothed_expression(adata, **FAST)
    keys = SmoothKeys("kompot_smooth")
    assert _written(adata, "kompot_smooth")["layers"] == keys.names(slot="layers")
    for field in SMOOTH_SCHEMA:
        _check_dtype(field, adata.layers[keys.name(field.name)])


@pytest.mark.parametrize(("keys", "schema"), [
    (DAKeys("k", "a b", "c/d"), DA_SCHEMA),
    (DEKeys("k", "a b", "c/d"), DE_SCHEMA),
    (SmoothKeys("k"), SMOOTH_SCHEMA),
])
def test_every_name_comes_from_the_schema(keys, schema):
    for field in schema:
        name = getattr(keys, field.name)
        assert name == field.column("k", "a b", "c/d")
        assert name.startswith("k_") and name.endswith(f"_{field.suffix}")
    names = keys.names()
    assert len(set(names)) == len(names)  # no two fields share a name


@pytest.mark.parametrize(("function", "schema"), [
    (kompot.tl.compute_differential_abundance, DA_SCHEMA),
    (kompot.tl.compute_differential_expression, DE_SCHEMA),
    (kompot.tl.compute_smoothed_expression, SMOOTH_SCHEMA),
])
def test_docstring_lists_every_field(function, schema):
    returns = inspect.getdoc(function).split("Returns")[1]
    for field in schema:
        assert f"_{field.suffix}\"]" in returns, f"{function.__name__}: {field.name}"


def test_a_new_field_is_one_schema_entry(adata):
    """A field added to a schema gets its name, its slot and its dtype without other edits."""
    extra = Field("lfc_df", "obs", "lfc_df", "float64", "degrees of freedom", "test only")
    extended = Schema("extended", (*DA_SCHEMA.fields, extra))

    @dataclasses.dataclass(frozen=True)
    class ExtendedKeys(RunKeys):
        schema = extended

    keys = ExtendedKeys("ext", C1, C2)
    values = {"lfc": np.zeros(adata.n_obs), "lfc_df": np.arange(adata.n_obs, dtype=float),
              "direction": np.full(adata.n_obs, "neutral", dtype=object)}
    result = AnalysisResult(extended, values)
    write_result(adata, keys, result, {"condition1": C1, "condition2": C2})
    assert keys.lfc_df == "ext_control_to_treated_lfc_df"
    np.testing.assert_array_equal(adata.obs[keys.lfc_df], values["lfc_df"])
    assert adata.uns["ext"]["fields"]["obs"] == [keys.lfc, keys.direction, keys.lfc_df]
