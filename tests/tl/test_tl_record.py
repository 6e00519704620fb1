"""write_run replaces a run all at once: a failure at any step leaves the earlier run intact."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from tl_testing import assert_adata_equal

from kompot.tl import _record


class Interrupted(BaseException):
    """Stands in for a KeyboardInterrupt (not an Exception, like the real one)."""


def _adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(6, 4)))
    adata.obs["user"] = list("abcabc")
    adata.var["user"] = np.arange(4)
    adata.layers["user"] = np.ones((6, 4))
    adata.uns["user"] = {"x": 1}
    return adata


def _write(adata, tag: float) -> None:
    """One run under key "k": a column in obs and var, a layer and an uns entry."""
    _record.write_run(
        adata, "k", {"params": {"tag": tag}},
        obs={"k_score": pd.Series(np.full(adata.n_obs, tag), index=adata.obs_names)},
        var={"k_gene": np.full(adata.n_vars, tag)},
        layers={"k_layer": np.full(adata.shape, tag)},
        uns={"k_colors": ["red", "blue"]},
    )


@pytest.fixture()
def written():
    adata = _adata()
    _write(adata, 1.0)
    return adata, adata.copy()


def test_rerun_replaces_the_fields(written):
    adata, _ = written
    _write(adata, 2.0)
    assert adata.uns["k"]["params"]["tag"] == 2.0
    assert adata.uns["k"]["fields"] == {"obs": ["k_score"], "var": ["k_gene"],
                                        "layers": ["k_layer"], "uns": ["k_colors"]}
    assert (adata.obs["k_score"] == 2.0).all() and (adata.layers["k_layer"] == 2.0).all()
    assert list(adata.obs.columns) == ["user", "k_score"]
    assert adata.uns["user"] == {"x": 1}


@pytest.mark.parametrize("step", ["_previous_fields", "_frame_with", "_stage"])
def test_failure_while_building_changes_nothing(written, monkeypatch, step):
    adata, before = written

    def fail(*args, **kwargs):
        raise Interrupted

    monkeypatch.setattr(_record, step, fail)
    with pytest.raises(Interrupted):
        _write(adata, 2.0)
    assert_adata_equal(adata, before)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("call", range(4))  # obs, var, layers, uns
def test_failure_while_swapping_restores_every_slot(written, monkeypatch, call, when):
    adata, before = written
    original = _record._set_slot
    calls = []

    def flaky(adata_, slot, value):
        calls.append(slot)
        if len(calls) == call + 1:
            if when == "after":
                original(adata_, slot, value)  # the slot is already swapped when it fails
            raise Interrupted
        original(adata_, slot, value)

    monkeypatch.setattr(_record, "_set_slot", flaky)
    with pytest.raises(Interrupted):
        _write(adata, 2.0)
    assert_adata_equal(adata, before)
    assert adata.uns["k"]["params"]["tag"] == 1.0


def test_a_bad_layer_is_refused_before_anything_changes(written):
    adata, before = written
    with pytest.raises(ValueError, match="Layer 'k_layer' has shape"):
        _record.write_run(adata, "k", {"params": {}}, layers={"k_layer": np.ones((5, 4))})
    assert_adata_equal(adata, before)


def test_uns_keeps_its_identity(written):
    adata, _ = written
    uns = adata.uns
    _write(adata, 3.0)
    assert adata.uns is uns and uns["k"]["params"]["tag"] == 3.0


def test_a_view_becomes_actual_and_its_parent_stays_as_it_was(written):
    adata, before = written
    view = adata[:4]
    with pytest.warns(ad.ImplicitModificationWarning, match="view"):
        _write(view, 2.0)
    assert not view.is_view and view.uns["k"]["params"]["tag"] == 2.0
    assert (view.layers["k_layer"] == 2.0).all() and view.n_obs == 4
    assert_adata_equal(adata, before)
