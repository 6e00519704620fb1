"""Developer sessions: ``nox -s tests lint wheel bench``."""

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
    tmp = session.create_tmp()
    session.run("python", "-m", "build", "--wheel", "--outdir", tmp)
    wheels = sorted(p for p in __import__("pathlib").Path(tmp).glob("kompot-*.whl"))
    session.install(f"{wheels[-1]}[test]")
    tests_dir = str(__import__("pathlib").Path("tests").resolve())
    session.chdir(tmp)
    # --import-mode=importlib with the source tree absent from sys.path: kompot comes from the wheel
    session.run("python", "-c", "import kompot, sys; assert 'site-packages' in kompot.__file__, kompot.__file__")
    session.run("pytest", tests_dir, "-p", "no:cacheprovider", "--import-mode=importlib",
                "--rootdir", tmp, *session.posargs)


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
