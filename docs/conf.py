"""Sphinx configuration of kompot's documentation (``nox -s docs``)."""

from __future__ import annotations

import os
from importlib.metadata import version as _version

project = "kompot"
author = "the kompot developers"
copyright = "the kompot developers"
release = _version("kompot")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]

# ---- sources -------------------------------------------------------------
# The tutorials live in ../tutorials (jupytext "percent" sources with their
# executed notebooks beside them); docs/tutorials is a link to that folder.
# The .py sources are the documents, executed during the build; the stored
# .ipynb copies, tutorials/build.py and tutorials/README.md are left out, so
# that every tutorial appears once.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
exclude_patterns = [
    "_build",
    "conf.py",
    "tutorials/*.ipynb",
    "tutorials/build.py",
    "tutorials/README.md",
    "tutorials/.ipynb_checkpoints",
    "**/__pycache__",
]
templates_path = ["_templates"]

# ---- notebooks -----------------------------------------------------------
# Every tutorial runs top to bottom at every build, and an error fails it.
# KOMPOT_DOCS_EXECUTE=off skips execution (for quick edits of the text only).
nb_execution_mode = os.environ.get("KOMPOT_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# ---- API reference -------------------------------------------------------
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections as a list like "Parameters": not as separate objects
# (a fitted attribute would be described twice where a property of the same
# name exists), and entries naming several attributes ("landmarks_, ls_")
# stay one entry.
napoleon_custom_sections = [("Attributes", "params_style"), ("Returns", "as written")]
# "Returns" (an alias of no known section: napoleon's generic rendering) is
# kept as its author wrote it. kompot's Returns sections are prose and reST
# definition lists (the fields a kompot.tl function writes, as "name : type"
# terms), which napoleon would parse as one bold return value per line,
# showing the terms' backticks literally.
napoleon_use_rtype = False

# ---- output --------------------------------------------------------------
html_theme = "furo"
html_title = f"kompot {release}"
html_static_path = ["_static"]
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

