"""Every field and uns entry written by kompot.tl survives write_h5ad -> read_h5ad."""

import anndata as ad
import numpy as np
import pandas as pd
from tl_testing import C1, C2, FAST, assert_nested_equal

import kompot.tl


def test_round_trip(small, tmp_path):
    adata = small.copy()
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, sample_col="sample", **FAST)
    kompot.tl.compute_differential_expression(
        adata, "condition", C1, C2, genes=list(adata.var_names[:8]), n_permutations=2, **FAST
    )
    kompot.tl.compute_smoothed_expression(adata, groupby="condition", condition=C2, **FAST)
    path = tmp_path / "kompot.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)

    for key in ("kompot_da", "kompot_de", "kompot_smooth"):
        record = adata.uns[key]
        assert_nested_equal(record, back.uns[key], path=f"uns[{key!r}]")
        assert set(record) >= {"params", "version", "landmarks", "ls", "fields", "groupby",
                               "obsm_key"}
        fields = back.uns[key]["fields"]
        for name in fields["obs"]:
            pd.testing.assert_series_equal(back.obs[name], adata.obs[name], check_index_type=False)
        for name in fields["var"]:
            pd.testing.assert_series_equal(back.var[name], adata.var[name], check_index_type=False)
        for name in fields["layers"]:
            assert back.layers[name].dtype == adata.layers[name].dtype
            np.testing.assert_array_equal(back.layers[name], adata.layers[name])
        for name in fields["uns"]:
            assert_nested_equal(list(adata.uns[name]), list(back.uns[name]))
    # Booleans, integers and None (as "None") come back as they went in.
    params = back.uns["kompot_de"]["params"]
    assert params["fdr"] is True and params["n_permutations"] == 2
    assert params["sample_col"] == "None" and params["layer"] == "None"
    assert list(params["genes"]) == list(adata.var_names[:8])
    assert back.uns["kompot_da"]["params"]["sample_col"] == "sample"
    assert isinstance(back.obs[f"kompot_da_{C1}_to_{C2}_lfc_direction"].dtype, pd.CategoricalDtype)
