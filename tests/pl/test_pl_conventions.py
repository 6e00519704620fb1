"""scanpy's plotting conventions across every kompot.pl function, and image references."""

import inspect

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import kompot.pl as kpl

pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")

# Each public plot with the arguments for one call on the test result.
CALLS = {
    "volcano_de": ((), {}),
    "volcano_da": ((), {}),
    "embedding": (("X_umap",), {"color": "lfc"}),
    "heatmap": ((), {"groupby": "cell_type"}),
    "direction_barplot": (("cell_type",), {}),
    "expression": (("gene_0",), {}),
}
# expression draws several panels by default; one panel with values=.
SINGLE_PANEL = dict(CALLS, expression=(("gene_0",), {"values": "fold_change"}))


def test_every_public_plot_is_covered():
    assert set(kpl.__all__) == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_signature(name):
    params = inspect.signature(getattr(kpl, name)).parameters
    assert "save" not in params and "figsize" not in params
    assert params["show"].default is None and params["show"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["ax"].default is None and params["return_fig"].default is False


@pytest.mark.parametrize("name", sorted(SINGLE_PANEL))
def test_returns_axes_or_figure(result, name):
    args, kwargs = SINGLE_PANEL[name]
    plot = getattr(kpl, name)
    assert isinstance(plot(result, *args, **kwargs), Axes)
    assert isinstance(plot(result, *args, return_fig=True, **kwargs), Figure)
    fig, ax = plt.subplots()
    assert plot(result, *args, ax=ax, **kwargs) is ax
    assert plt.gcf() is fig  # drew into the given Axes, made no new figure


@pytest.mark.parametrize("name", sorted(CALLS))
def test_show(result, name, monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    args, kwargs = CALLS[name]
    plot = getattr(kpl, name)
    assert plot(result, *args, show=False, **kwargs) is not None and not shown
    assert plot(result, *args, **kwargs) is not None and not shown  # Agg: not interactive
    assert plot(result, *args, show=True, **kwargs) is None and shown == [True]
    monkeypatch.setattr(matplotlib, "is_interactive", lambda: True)
    assert plot(result, *args, **kwargs) is None and shown == [True, True]


def test_rcparams_untouched(result):
    before = dict(matplotlib.rcParams)
    for name, (args, kwargs) in CALLS.items():
        getattr(kpl, name)(result, *args, **kwargs)
    assert dict(matplotlib.rcParams) == before
    fig = kpl.volcano_de(result, return_fig=True)
    assert tuple(fig.get_size_inches()) == tuple(matplotlib.rcParams["figure.figsize"])


# ------------------------------------------------------------------ image references
@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("volcano_de", lambda a: kpl.volcano_de(a, return_fig=True)),
        ("volcano_da", lambda a: kpl.volcano_da(a, return_fig=True)),
        ("embedding_lfc", lambda a: kpl.embedding(a, "X_umap", color=["lfc", "direction"],
                                                  return_fig=True)),
        ("heatmap", lambda a: kpl.heatmap(a, groupby="cell_type", return_fig=True)),
        ("direction_barplot", lambda a: kpl.direction_barplot(a, "cell_type", return_fig=True)),
    ],
)
def test_image(result, check_image, name, draw):
    # matplotlib defaults, so that the references do not depend on a matplotlibrc.
    with matplotlib.style.context("default"):
        check_image(draw(result), name)
