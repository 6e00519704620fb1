"""The package itself: no side effects at import, fast import, release metadata."""

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest

import kompot

ROOT = Path(kompot.__file__).resolve().parent.parent
IMPORT_SECONDS = 1.5

# Runs in a fresh interpreter: JAX's settings and logging before and after
# `import kompot` and `kompot.datasets.toy()`.
_SIDE_EFFECTS = """
import json, logging, sys
import jax
def state():
    return {
        "x64": bool(jax.config.jax_enable_x64),
        "platforms": jax.config.jax_platforms,
        "platform_name": getattr(jax.config, "jax_platform_name", None),  # older JAX
        "root_handlers": len(logging.getLogger().handlers),
        "root_level": logging.getLogger().level,
        "mellon_handlers": len(logging.getLogger("mellon").handlers),
        "mellon_loaded": "mellon" in sys.modules,
    }
before = state()
import kompot
after_import = state()
kompot.datasets.toy(n_cells=300, n_genes=30)
after_toy = state()
print(json.dumps([before, after_import, after_toy]))
"""

_IMPORT_TIME = """
import time
t = time.perf_counter()
import kompot
print(time.perf_counter() - t)
"""


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT.parent, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_import_changes_neither_jax_nor_logging():
    before, after_import, after_toy = json.loads(_run(_SIDE_EFFECTS))
    assert before["mellon_loaded"] is False
    assert after_import == before
    assert after_toy == before


def test_import_is_fast():
    # The fastest of three fresh interpreters, so that a busy machine does not fail it.
    seconds = min(float(_run(_IMPORT_TIME)) for _ in range(3))
    assert seconds <= IMPORT_SECONDS, f"import kompot took {seconds:.2f} s"


def test_heavy_parts_load_on_first_use():
    loaded = _run("import sys, kompot; print(sorted(m for m in ('kompot.tl', 'kompot.pl', "
                  "'kompot.datasets', 'mellon', 'jax', 'matplotlib', 'anndata', 'sklearn') "
                  "if m in sys.modules))")
    assert loaded == "[]"
    assert kompot.tl.compute_differential_expression is not None
    assert {"tl", "pl", "datasets"} <= set(dir(kompot))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kompot.nope  # noqa: B018


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_version_comes_from_pyproject():
    version = _pyproject()["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", version)
    direct_url = json.loads(distribution("kompot").read_text("direct_url.json") or "{}")
    if direct_url.get("url") != ROOT.as_uri():
        pytest.skip("the installed kompot metadata belongs to another source tree")
    assert kompot.__version__ == version


def test_release_metadata():
    project = _pyproject()
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause" in licence and "the kompot developers" in licence
    assert (ROOT / "kompot" / "py.typed").is_file()
    assert f"## {project['version']}" in (ROOT / "CHANGELOG.md").read_text()
