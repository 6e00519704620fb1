"""Developer sessions: ``nox -s tests lint wheel bench``."""

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
    """ruff over the package, tests, benchmarks and this file."""
    session.install("ruff")
    session.run("ruff", "check", "kompot", "tests", "benchmarks", "noxfile.py")


@nox.session
def bench(session):
    """Speed and accuracy benchmarks; writes benchmarks/RESULTS.md. ``-- --full`` for all sizes."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)
