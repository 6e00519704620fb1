"""The ``kompot`` command, run as a separate process like a user would."""

import argparse
import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import kompot
from kompot import cli

ROOT = Path(kompot.__file__).resolve().parent.parent
CONDITIONS = ["--groupby", "condition", "--condition1", "control", "--condition2", "treated"]
TOOLS = {
    "da": kompot.tl.compute_differential_abundance,
    "de": kompot.tl.compute_differential_expression,
    "smooth": kompot.tl.compute_smoothed_expression,
}


def run_kompot(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "kompot", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def assert_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kompot") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "toy.h5ad"
    kompot.datasets.toy(n_cells=300, n_genes=30).write_h5ad(path)
    return path


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in cli.build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version():
    result = run_kompot("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kompot {kompot.__version__}"


@pytest.mark.parametrize("command", ["da", "de", "smooth", "demo"])
def test_help_explains_every_option_in_plain_text(command):
    result = run_kompot(command, "--help")
    assert result.returncode == 0
    assert "`" not in result.stdout
    parser = subcommand_parsers()[command]
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
        assert action.help, f"{action.dest} has no help"


@pytest.mark.parametrize("command", ["da", "de", "smooth"])
def test_options_are_keywords_of_the_tl_function(command):
    parameters = inspect.signature(TOOLS[command]).parameters
    own = {"help", "input", "output", "debug"}
    dests = {a.dest for a in subcommand_parsers()[command]._actions} - own
    assert dests <= set(parameters)


def test_da_matches_the_python_api(toy_file, tmp_path):
    before = fingerprint(toy_file)
    out = tmp_path / "da.h5ad"
    result = run_kompot("da", toy_file, "-o", out, *CONDITIONS, "--sample-col", "sample",
                        "--n-landmarks", 40, "--key-added", "cli_da", "--fdr-threshold", 0.2,
                        "--random-state", 3, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "cells called up" in result.stdout
    assert fingerprint(toy_file) == before

    expected = ad.read_h5ad(toy_file)
    kompot.tl.compute_differential_abundance(
        expected, "condition", "control", "treated", sample_col="sample", n_landmarks=40,
        key_added="cli_da", fdr_threshold=0.2, random_state=3, progress=False,
    )
    written = ad.read_h5ad(out)
    columns = list(expected.uns["cli_da"]["fields"]["obs"])
    assert list(written.uns["cli_da"]["fields"]["obs"]) == columns
    for column in columns:
        got, want = written.obs[column], expected.obs[column]
        if isinstance(want.dtype, pd.CategoricalDtype):
            assert got.astype(str).tolist() == want.astype(str).tolist()
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=column)


def test_de_matches_the_python_api(toy_file, tmp_path):
    before = fingerprint(toy_file)
    out = tmp_path / "de.h5ad"
    genes = [f"gene_{i}" for i in range(0, 30, 2)]
    result = run_kompot("de", toy_file, "-o", out, *CONDITIONS, "--n-landmarks", 40,
                        "--genes", ",".join(genes), "--n-permutations", 2,
                        "--n-null-genes", "all", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "of 15 analysed" in result.stdout
    assert fingerprint(toy_file) == before

    expected = ad.read_h5ad(toy_file)
    kompot.tl.compute_differential_expression(
        expected, "condition", "control", "treated", n_landmarks=40, genes=genes,
        n_permutations=2, n_null_genes=None, progress=False,
    )
    written = ad.read_h5ad(out)
    fields = expected.uns["kompot_de"]["fields"]
    for column in fields["var"]:
        np.testing.assert_allclose(written.var[column].astype(float),
                                   expected.var[column].astype(float),
                                   rtol=0, atol=1e-10, err_msg=column)
    for layer in fields["layers"]:
        np.testing.assert_allclose(written.layers[layer], expected.layers[layer],
                                   rtol=0, atol=1e-6, err_msg=layer)


def test_smooth_writes_its_layers(toy_file, tmp_path):
    out = tmp_path / "smooth.h5ad"
    result = run_kompot("smooth", toy_file, "-o", out, "--groupby", "condition",
                        "--condition", "control", "--genes", "gene_1,gene_2",
                        "--n-landmarks", 30, "--no-progress")
    assert result.returncode == 0, result.stderr
    written = ad.read_h5ad(out)
    smoothed = written.layers["kompot_smooth_smoothed"]
    assert np.isfinite(smoothed[:, [1, 2]]).all() and np.isnan(smoothed[:, 0]).all()


def resolve(arguments, toy_file, tmp_path) -> list[str]:
    notes = tmp_path / "notes.h5ad"
    notes.write_text("not an AnnData")
    paths = {"tmp": tmp_path, "toy": toy_file, "notes": notes}
    return [a.format(**paths) for a in arguments]


OUT = ["-o", "{tmp}/o.h5ad"]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["missing.h5ad", *OUT, *CONDITIONS], ["does not exist"]),
        (["{notes}", *OUT, *CONDITIONS], ["not an h5ad file"]),
        (["{toy}", *OUT, *CONDITIONS, "--obsm-key", "X_pca"], ["kompot: error:", "X_pca"]),
    ],
    ids=["missing", "not-h5ad", "obsm-key"],
)
def test_errors_are_one_line_without_traceback(arguments, words, toy_file, tmp_path):
    before = fingerprint(toy_file)
    result = run_kompot("da", *resolve(arguments, toy_file, tmp_path))
    assert_clean_error(result, *words)
    assert fingerprint(toy_file) == before
    assert not (tmp_path / "o.h5ad").exists()


# The same reporting path, in-process to save interpreter start-ups.
@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["{toy}", "-o", "{toy}", *CONDITIONS], ["is the input file"]),
        (["{toy}", "-o", "{tmp}", *CONDITIONS], ["is a folder"]),
        (["{toy}", *OUT, "--groupby", "cond", "--condition1", "control",
          "--condition2", "treated"], ["cond"]),
        (["{toy}", *OUT, "--groupby", "condition", "--condition1", "control",
          "--condition2", "placebo"], ["placebo"]),
        (["{toy}", *OUT, *CONDITIONS, "--fdr-threshold", "2"], ["fdr_threshold"]),
    ],
    ids=["same-path", "output-folder", "column", "condition", "tl-value"],
)
def test_input_errors_are_reported_as_one_line(arguments, words, toy_file, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    before = fingerprint(toy_file)
    assert cli.main(["da", *resolve(arguments, toy_file, tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kompot: error:")
    assert all(word in lines[0] for word in words)
    assert fingerprint(toy_file) == before
    assert not (tmp_path / "o.h5ad").exists()


def test_bad_option_value_is_one_usage_line(toy_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["da", str(toy_file), "-o", "o.h5ad", *CONDITIONS, "--n-landmarks", "many"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--n-landmarks" in lines[0]


def test_demo_refuses_too_few_cells(tmp_path):
    result = run_kompot("demo", tmp_path / "demo", "--n-cells", 60)
    assert_clean_error(result, "kompot: error:", "at least")
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_one_cell_below_its_minimum(tmp_path, capsys, monkeypatch):
    from kompot._demo import MIN_CELLS

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["demo", str(tmp_path / "demo"), "--n-cells", str(MIN_CELLS - 1)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kompot: error:") and f"at least {MIN_CELLS}" in err
    assert not (tmp_path / "demo").exists()


def test_debug_shows_the_traceback(toy_file, tmp_path):
    with pytest.raises(KeyError, match="X_pca"):
        cli.main(["da", str(toy_file), "-o", str(tmp_path / "o.h5ad"), *CONDITIONS,
                  "--obsm-key", "X_pca", "--debug"])


def test_demo_writes_results_and_figures(tmp_path):
    from kompot._demo import MIN_CELLS

    result = run_kompot("demo", tmp_path, "--n-cells", MIN_CELLS)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "toy_results.h5ad").is_file()
    assert (tmp_path / "differential_expression.csv").is_file()
    assert len(list(tmp_path.glob("*.png"))) == 6
    # The summary scores the run against the planted truth, and the tables
    # hold the columns a user reads.
    assert "DA (" in result.stdout and "DE (" in result.stdout and "AUROC" in result.stdout
    da = pd.read_csv(tmp_path / "differential_abundance.csv", index_col=0)
    assert set(da["kompot_da_control_to_treated_lfc_direction"]) <= {"up", "down", "neutral"}
    assert len(da) == MIN_CELLS
    de = pd.read_csv(tmp_path / "differential_expression.csv", index_col=0)
    assert "kompot_de_control_to_treated_is_de" in de.columns
