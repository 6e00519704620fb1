"""Fixtures of the kompot.tl tests: a small toy data set."""

import pytest

import kompot
import kompot.tl


@pytest.fixture(scope="session")
def small():
    """800 cells x 40 genes of the toy data set; never modify it, copy it."""
    return kompot.datasets.toy(n_cells=800, n_genes=40, seed=0)


@pytest.fixture()
def adata(small):
    """A fresh copy of the small toy data, free to modify."""
    return small.copy()


@pytest.fixture()
def info_verbosity():
    """kompot.settings.verbosity at "info" (kompot's "wrote ..." lines) for one test."""
    kompot.settings.verbosity = "info"
    yield
    kompot.settings.verbosity = None
