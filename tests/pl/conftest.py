"""Fixtures of the kompot.pl tests: real kompot.tl runs on a small toy data set.

Image references live in ``tests/pl/_images``. A missing reference is written
on the first run (commit it). To regenerate them all after an intended change
of the plots or of kompot.tl's results::

    KOMPOT_REGENERATE_IMAGES=1 .venv/bin/python -m pytest tests/pl -p no:cacheprovider
"""

import logging
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.testing.compare import compare_images  # noqa: E402

import kompot  # noqa: E402
import kompot.tl  # noqa: E402
from kompot._keys import DAKeys, DEKeys  # noqa: E402

IMAGES = Path(__file__).parent / "_images"
IMAGE_DPI = 40
IMAGE_TOLERANCE = 20
C1, C2 = "control", "treated"


@pytest.fixture(scope="session")
def result():
    """toy(600 cells, 40 genes) with one DA and one DE run; never modify it, copy it."""
    adata = kompot.datasets.toy(n_cells=600, n_genes=40, seed=0)
    logging.getLogger("mellon").setLevel(logging.WARNING)
    fast = {"n_landmarks": 100, "progress": False}
    kompot.tl.compute_differential_abundance(adata, "condition", C1, C2, **fast)
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, **fast)
    return adata


@pytest.fixture(scope="session")
def da_keys():
    return DAKeys("kompot_da", C1, C2)


@pytest.fixture(scope="session")
def de_keys():
    return DEKeys("kompot_de", C1, C2)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# Helpers as fixtures, so that the tests also run with --import-mode=importlib.
@pytest.fixture(scope="session")
def assert_centred():
    def check(norm) -> None:
        """A colour norm centred at 0 with symmetric limits."""
        assert norm.vmin == pytest.approx(-norm.vmax)
        assert norm.vmax > 0
        assert float(norm(0.0)) == pytest.approx(0.5)

    return check


@pytest.fixture(scope="session")
def assert_no_overlap():
    def check(boxes) -> None:
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (a, b)

    return check


@pytest.fixture(scope="session")
def sorted_rows():
    def rows(a) -> np.ndarray:
        """Rows in lexicographic order, to compare point sets drawn in any order."""
        a = np.asarray(a, dtype=np.float64)
        return a[np.lexsort(a.T[::-1])]

    return rows


@pytest.fixture()
def check_image(tmp_path):
    """Compare a figure with its reference PNG (written when missing)."""

    def check(fig, name: str) -> None:
        actual = tmp_path / f"{name}.png"
        fig.savefig(actual, dpi=IMAGE_DPI)
        expected = IMAGES / f"{name}.png"
        if not expected.exists() or os.environ.get("KOMPOT_REGENERATE_IMAGES"):
            IMAGES.mkdir(exist_ok=True)
            shutil.copyfile(actual, expected)
        diff = compare_images(str(expected), str(actual), tol=IMAGE_TOLERANCE)
        assert diff is None, diff

    return check
