"""Constants and assertions shared by the kompot.tl tests (imported as a plain module)."""

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

# Few landmarks and no progress bars keep every run well under a second.
FAST = {"n_landmarks": 100, "progress": False}
C1, C2 = "control", "treated"


def assert_adata_equal(a: ad.AnnData, b: ad.AnnData) -> None:
    """The slots kompot.tl may write hold the same keys and values in both objects."""
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert list(a.layers.keys()) == list(b.layers.keys())
    for key in a.layers:
        assert_array_equal(a.layers[key], b.layers[key])
    assert list(a.obsm.keys()) == list(b.obsm.keys())
    for key in a.obsm:
        assert_array_equal(a.obsm[key], b.obsm[key])
    assert_array_equal(a.X, b.X)
    assert_nested_equal(dict(a.uns), dict(b.uns))


def assert_array_equal(x, y) -> None:
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    y = y.toarray() if sparse.issparse(y) else np.asarray(y)
    np.testing.assert_array_equal(x, y)


def assert_nested_equal(x, y, path="uns") -> None:
    """Equal nested dicts; lists and arrays compare by value (h5ad turns lists into arrays)."""
    if isinstance(x, dict) or isinstance(y, dict):
        assert isinstance(x, dict) and isinstance(y, dict), path
        assert sorted(x) == sorted(y), path
        for key in x:
            assert_nested_equal(x[key], y[key], f"{path}[{key!r}]")
    elif isinstance(x, list | tuple | np.ndarray) or isinstance(y, list | tuple | np.ndarray):
        xa, ya = np.asarray(x), np.asarray(y)
        assert xa.shape == ya.shape, path
        if xa.size:
            np.testing.assert_array_equal(xa, ya, err_msg=path)
    else:
        assert x == y and type(x) is type(y), f"{path}: {x!r} != {y!r}"
