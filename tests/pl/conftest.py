"""Fixtures of the kompot.pl tests: real kompot.tl runs on a small toy data set.

Image references live in ``tests/pl/_images``. A missing reference fails the
test. To write missing references, or to regenerate them all after an
intended change of the plots or of kompot.tl's results (then look at them
before committing them)::

    KOMPOT_UPDATE_IMAGES=1 .venv/bin/python -m pytest tests/pl -p no:cacheprovider
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
# RMS difference (0-255 grey levels, matplotlib's compare_images) above which a
# figure differs from its reference. Redrawing gives RMS 0-0.01 (in one process,
# in a new one, with one or many BLAS threads); losing content gives far more at
# this size: the dashed rule lines of volcano_da 2.4, a tenth of its points 5.7,
# half of them 14, one gene label of volcano_de 4.6. test_pl_image_compare.py
# checks that such losses fail.
IMAGE_TOLERANCE = 1.0
UPDATE_IMAGES = "KOMPOT_UPDATE_IMAGES"
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


def image_difference(expected: Path, actual: Path, tol: float = IMAGE_TOLERANCE) -> dict | None:
    """matplotlib's comparison: ``None`` when the RMS is within ``tol``, else its report."""
    return compare_images(str(expected), str(actual), tol=tol, in_decorator=True)


def check_image_file(actual: Path, expected: Path) -> None:
    """Fail unless ``actual`` matches ``expected``; a missing reference fails too.

    With ``KOMPOT_UPDATE_IMAGES=1`` the reference is (over)written instead.
    """
    if os.environ.get(UPDATE_IMAGES) == "1":
        expected.parent.mkdir(exist_ok=True)
        shutil.copyfile(actual, expected)
    if not expected.exists():
        pytest.fail(f"No reference image {expected}; run the tests with {UPDATE_IMAGES}=1 to "
                    "write it, look at it, and commit it.")
    diff = image_difference(expected, actual)
    assert diff is None, f"RMS {diff['rms']:.3f} > {IMAGE_TOLERANCE}: {diff['diff']}"


@pytest.fixture()
def check_image(tmp_path):
    """Compare a figure with its reference PNG in tests/pl/_images."""

    def check(fig, name: str) -> None:
        actual = tmp_path / f"{name}.png"
        fig.savefig(actual, dpi=IMAGE_DPI)
        check_image_file(actual, IMAGES / f"{name}.png")

    return check


@pytest.fixture(scope="session")
def image_tolerance():
    return IMAGE_TOLERANCE


@pytest.fixture(scope="session")
def compare_image_files():
    """``check_image_file(actual, expected)``: the comparison the image tests make."""
    return check_image_file
