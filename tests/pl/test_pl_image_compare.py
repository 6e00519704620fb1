"""The image comparison fails when content is lost, and when a reference is missing."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

import kompot.pl as kpl

REFERENCE = "volcano_da"


def _save(fig, path):
    fig.savefig(path, dpi=40)
    plt.close(fig)
    return path


def _volcano_da(result, change=None):
    with matplotlib.style.context("default"):
        fig = kpl.volcano_da(result, return_fig=True)
        if change is not None:
            change(fig.axes[0])
    return fig


def _half_of_the_points(ax):
    for collection in ax.collections:
        offsets = collection.get_offsets()
        collection.set_offsets(offsets[: len(offsets) // 2])


def _no_rule(ax):
    for line in [line for line in ax.lines if line.get_linestyle() == "--"]:
        line.remove()


def _rms(expected, actual) -> float:
    report = compare_images(str(expected), str(actual), tol=0, in_decorator=True)
    return 0.0 if report is None else report["rms"]


def test_redrawn_figure_matches(result, tmp_path, compare_image_files, image_tolerance):
    from pathlib import Path

    reference = Path(__file__).parent / "_images" / f"{REFERENCE}.png"
    actual = _save(_volcano_da(result), tmp_path / "again.png")
    assert _rms(reference, actual) <= image_tolerance / 10
    compare_image_files(actual, reference)


@pytest.mark.parametrize("change", [_half_of_the_points, _no_rule], ids=["half_points", "no_rule"])
def test_lost_content_fails(result, tmp_path, compare_image_files, image_tolerance, change):
    from pathlib import Path

    reference = Path(__file__).parent / "_images" / f"{REFERENCE}.png"
    actual = _save(_volcano_da(result, change), tmp_path / "changed.png")
    assert _rms(reference, actual) > 2 * image_tolerance
    with pytest.raises(AssertionError, match="RMS"):
        compare_image_files(actual, reference)


def test_missing_reference_fails(tmp_path, compare_image_files, monkeypatch):
    monkeypatch.delenv("KOMPOT_UPDATE_IMAGES", raising=False)
    fig, ax = plt.subplots()
    ax.plot(np.arange(3))
    actual = _save(fig, tmp_path / "actual.png")
    expected = tmp_path / "references" / "absent.png"
    with pytest.raises(pytest.fail.Exception, match="KOMPOT_UPDATE_IMAGES=1"):
        compare_image_files(actual, expected)
    assert not expected.exists()
    monkeypatch.setenv("KOMPOT_UPDATE_IMAGES", "1")
    compare_image_files(actual, expected)  # written on request, then compared
    assert expected.exists()
