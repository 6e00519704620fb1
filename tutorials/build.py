"""Execute the tutorials and write them as notebooks with their outputs.

    python tutorials/build.py                 # every tutorial
    python tutorials/build.py 02              # those whose name starts with 02

The sources are the ``NN_*.py`` files (jupytext "percent" format: reviewable
diffs, runnable as plain scripts); the ``.ipynb`` next to each is generated
from it, executed top to bottom in a fresh kernel. Edit the ``.py`` and
rebuild; ``nox -s tutorials`` does the same in a clean environment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def build(source: Path) -> Path:
    notebook = jupytext.read(source)
    start = time.perf_counter()
    # Run from the tutorials folder, as a reader opening the notebook would.
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    target = source.with_suffix(".ipynb")
    nbformat.write(notebook, target)
    print(f"{target.name}: executed in {time.perf_counter() - start:.0f} s")
    return target


def main(prefixes: list[str]) -> int:
    sources = sorted(p for p in HERE.glob("[0-9][0-9]_*.py")
                     if not prefixes or p.name.startswith(tuple(prefixes)))
    if not sources:
        print(f"no tutorial matches {prefixes}", file=sys.stderr)
        return 1
    for source in sources:
        build(source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
