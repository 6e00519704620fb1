"""Developer sessions: ``nox -s tests lint wheel tutorials docs bench``."""

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session):
    """The test suite against an editable install."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def wheel(session):
    """The test suite against the built wheel, run from outside the source tree."""
    session.install("build")
    tmp = Path(session.create_tmp()).resolve()
    session.run("python", "-m", "build", "--wheel", "--outdir", str(tmp))
    wheel_file = sorted(tmp.glob("kompot-*.whl"))[-1]
    session.install(f"{wheel_file}[test]")
    tests_dir = str(Path("tests").resolve())
    session.chdir(tmp)
    # Outside the source tree, ``import kompot`` can only find the installed wheel.
    session.run("python", "-c", "import kompot; assert 'site-packages' in kompot.__file__")
    session.run("pytest", tests_dir, "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session):
    """ruff over the package, tests, benchmarks, tutorials, docs/conf.py and this file."""
    session.install("ruff")
    session.run("ruff", "check", "kompot", "tests", "benchmarks", "tutorials", "docs", "noxfile.py")


@nox.session
def tutorials(session):
    """Execute the tutorials (``tutorials/NN_*.py``) and rewrite their notebooks."""
    session.install("-e", ".[tutorials]")
    session.run("python", "tutorials/build.py", *session.posargs)


@nox.session
def docs(session):
    """The documentation -> docs/_build/html (index.html); every warning is an error.

    The tutorials (``tutorials/NN_*.py``) are executed during the build (a few
    minutes on 2 cores). ``nox -s docs -- -E`` rebuilds from scratch; other
    arguments go to sphinx-build as well.
    """
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", *session.posargs,
                "docs", "docs/_build/html")


@nox.session
def bench(session):
    """Benchmarks -> benchmarks/RESULTS.md (not tests; never in CI).

    ``nox -s bench``: speed of the model classes at 10k cells (a few minutes).
    ``nox -s bench -- --full``: speed at 10k and 50k cells, speed and agreement
    against kompot 0.8.0 (tl calls, and per stage of the model classes), DA accuracy against Milo and MELD, DE accuracy
    against kompot 0.8.0 and pseudobulk DESeq2 (about 1.5 hours on 2 cores).
    The peers' virtual environments are created on first use
    (``benchmarks/side_envs.py``).
    ``nox -s bench -- --scale``: DA + DE with FDR through kompot.tl at 10k and
    100k cells x 2,000 genes and 200k x 1,000 (sparse X), wall time and peak
    RSS per size, with a log-log figure (``benchmarks/scale.py``; about an
    hour on 2 cores; ``--huge`` after it adds 1M x 2,000).
    """
    session.install("-e", ".")
    if "--scale" in session.posargs:
        extra = [a for a in session.posargs if a != "--scale"]
        session.run("python", "benchmarks/scale.py", *extra)
        return
    if "--full" not in session.posargs:
        session.run("python", "benchmarks/run.py", "--quick")
        return
    session.run("python", "benchmarks/run.py")
    session.run("python", "benchmarks/peer_compare.py")
    session.run("python", "benchmarks/stages.py")
    session.run("python", "benchmarks/accuracy_da.py")
    session.run("python", "benchmarks/accuracy_da.py", "--fractal")
    session.run("python", "benchmarks/accuracy_da.py", "--peer")
    session.run("python", "benchmarks/accuracy_de.py")
    session.run("python", "benchmarks/speed_da.py")  # DA speed against Milo (its child in .milo-venv)
