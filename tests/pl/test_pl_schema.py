"""kompot.pl takes its field names, titles and signs from the analyses' schemas."""

import numpy as np
import pandas as pd
import pytest

import kompot
import kompot.pl as kpl
from kompot._keys import DAKeys
from kompot.models import DA_SCHEMA, DE_SCHEMA

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")
C1, C2 = "control", "treated"


@pytest.fixture(scope="module")
def runs(result):
    """The shared result plus a ratio run with replicates and a density run: every DA field."""
    adata = result.copy()
    fast = {"n_landmarks": 100, "progress": False}
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, sample_col="sample",
                                             key_added="reps", **fast)
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, method="density",
                                             n_permutations=2, key_added="dens", **fast)
    return adata


def _run_with(adata, name: str) -> str:
    """A run of ``adata`` that wrote the field ``name``."""
    for key in ("kompot_da", "reps", "dens"):
        if DAKeys(key, C1, C2).name(name) in adata.uns[key]["fields"]["obs"]:
            return key
    raise AssertionError(f"no run wrote {name!r}")


@pytest.mark.parametrize("name", DA_SCHEMA.names)
def test_every_da_field_is_plottable_by_name(runs, name, assert_centred):
    field = DA_SCHEMA[name]
    key = _run_with(runs, name)
    ax = kpl.embedding(runs, "X_umap", color=name, key=key)
    assert ax.get_title().startswith(field.label)
    stored = runs.obs[DAKeys(key, C1, C2).name(name)]
    scatter = ax.collections[0]
    if isinstance(stored.dtype, pd.CategoricalDtype):
        assert len(scatter.get_offsets()) == runs.n_obs
        return
    drawn = np.sort(np.asarray(scatter.get_array(), dtype=np.float64))
    np.testing.assert_array_equal(drawn, np.sort(stored.to_numpy(dtype=np.float64)))
    if field.signed:
        assert_centred(scatter.norm)
    else:
        assert scatter.norm.vmin == pytest.approx(np.nanmin(stored))


def test_condition_fields_name_their_condition(runs):
    ax = kpl.embedding(runs, "X_umap", color="log_density2", key="dens")
    assert ax.get_title() == f"{DA_SCHEMA['log_density2'].label}, {C2}"


def test_a_field_the_run_did_not_write_says_so(runs):
    with pytest.raises(KeyError, match="did not write 'lfc_sample_std'"):
        kpl.embedding(runs, "X_umap", color="lfc_sample_std")


def test_volcano_labels_come_from_the_schema(runs):
    ax = kpl.volcano_de(runs, score="tail_fdr", n_top_labels=0)
    assert ax.get_ylabel() == f"\u2212log10 {DE_SCHEMA['tail_fdr'].label}"
    assert ax.get_xlabel().startswith(DE_SCHEMA["mean_lfc"].label_for(None))
    ax = kpl.volcano_da(runs)
    assert ax.get_xlabel().startswith(DA_SCHEMA["lfc"].label)
    assert ax.get_ylabel().endswith(DA_SCHEMA["lfc_fdr"].label)
