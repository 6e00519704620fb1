"""Shared fixtures: small seeded data sets with known answers."""

import numpy as np
import pytest

import kompot


@pytest.fixture(scope="session")
def toy():
    """The package's toy data set at its defaults (2,000 cells x 200 genes)."""
    return kompot.datasets.toy(seed=0)


@pytest.fixture(scope="session")
def toy_split(toy):
    """Cell states and log expression of the toy data, split by condition."""
    treated = (toy.obs["condition"] == "treated").to_numpy()
    X = toy.obsm["DM_EigenVectors"]
    Y = np.asarray(toy.X, dtype=np.float64)
    samples = toy.obs["sample"].astype(str).to_numpy()
    return {
        "X1": X[~treated], "X2": X[treated], "Y1": Y[~treated], "Y2": Y[treated],
        "s1": samples[~treated], "s2": samples[treated], "X": X, "treated": treated,
    }


@pytest.fixture()
def blobs():
    """Two conditions on two Gaussian blobs; condition 2 has 3x more cells in blob B."""
    rng = np.random.default_rng(1)
    X1 = np.concatenate([rng.normal(0, 1, (600, 4)), rng.normal(4, 1, (200, 4))])
    X2 = np.concatenate([rng.normal(0, 1, (600, 4)), rng.normal(4, 1, (600, 4))])
    return X1, X2
