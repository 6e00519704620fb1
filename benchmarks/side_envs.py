"""The benchmarks' side virtual environments, created from the package index on first use.

The peers never share an environment with kompot: the published kompot 0.8.0
has the same import name, and Milo/MELD pin versions that would break ours.

    python benchmarks/side_envs.py          # create both (a few minutes each)
    python benchmarks/side_envs.py peer     # only kompot 0.8.0

Each benchmark calls :func:`python` for the interpreter it needs, which builds
the environment if it is missing. Nothing here runs in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (directory, pip install steps run in order)
ENVS = {
    # kompot 0.8.0 from the package index; scanpy for its AnnData inputs.
    "peer": (HERE / ".peer-venv", [["kompot==0.8.0", "scanpy"]]),
    # Milo (pertpy, with the pydeseq2 solver, no R) and MELD. MELD's scprep
    # pins pandas<2.1, which breaks pertpy's import; re-pinning pandas
    # afterwards makes both import (pip reports the conflict, both work).
    # pynndescent 0.7.0 with scipy 1.17 fails in sc.pp.neighbors from 8,192
    # cells on ('csr_array' object has no attribute 'getnnz'): pin below 0.7.
    "field": (HERE / ".milo-venv", [
        ["pertpy", "pydeseq2", "scanpy"],
        ["statsmodels<0.15", "filelock", "meld"],
        ["pandas>=2.2,<3", "pynndescent<0.7"],
    ]),
}


def python(name: str) -> Path:
    """Interpreter of the side environment ``name``, created first if missing."""
    directory, steps = ENVS[name]
    interpreter = directory / "bin" / "python"
    if interpreter.exists():
        return interpreter
    print(f"creating {directory} (one time) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    for packages in steps:
        subprocess.run([str(interpreter), "-m", "pip", "install", "-q", *packages], check=True)
    return interpreter


if __name__ == "__main__":
    for env in sys.argv[1:] or list(ENVS):
        print(env, python(env))
