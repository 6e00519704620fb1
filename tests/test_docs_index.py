"""The documentation lists every public function, class and tutorial.

The docs build itself (``nox -s docs``) needs Sphinx and minutes; these
checks need neither and catch the usual drift: a new public function or
tutorial that no page mentions.
"""

import re
from pathlib import Path

import pytest

import kompot

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def _autosummary_entries(page: Path) -> set[str]:
    """Names listed in the autosummary directives of an API page."""
    names, inside = set(), False
    for line in page.read_text().splitlines():
        if line.strip().startswith(".. autosummary::"):
            inside = True
        elif inside and line.strip().startswith("```"):
            inside = False
        elif inside and re.fullmatch(r"\s{3}\w+", line):
            names.add(line.strip())
    return names


@pytest.mark.parametrize(("page", "namespace"), [
    ("tl.md", kompot.tl), ("pl.md", kompot.pl), ("datasets.md", kompot.datasets),
])
def test_api_page_lists_the_namespace(page, namespace):
    assert _autosummary_entries(API / page) == set(namespace.__all__)


def test_api_page_lists_the_model_layer():
    """The model classes (top level) and the array analyses of ``kompot.models``.

    The schema constants (``DA_SCHEMA``, ...) are named in the page's text,
    not in an autosummary.
    """
    import kompot.models

    classes = {name for name in kompot.__all__ if isinstance(getattr(kompot, name), type)
               and not issubclass(getattr(kompot, name), Warning)}
    analyses = {name for name in kompot.models.__all__ if not name.endswith("_SCHEMA")}
    assert _autosummary_entries(API / "models.md") == classes | analyses
    text = (API / "models.md").read_text()
    for name in kompot.models.__all__:
        if name.endswith("_SCHEMA"):
            assert f"kompot.models.{name}" in text, name


def test_every_tutorial_is_in_the_docs_and_the_readme():
    sources = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
    assert sources
    toctree = (ROOT / "docs" / "tutorials.md").read_text()
    readme = (ROOT / "tutorials" / "README.md").read_text()
    for stem in sources:
        assert f"tutorials/{stem}\n" in toctree, stem
        assert f"]({stem}.ipynb)" in readme, stem
