"""The ``kompot`` command: run kompot.tl on an h5ad file, or the demo on toy data.

``kompot da|de|smooth INPUT.h5ad ... -o OUTPUT.h5ad`` reads the input, runs
one ``kompot.tl`` function and writes the result to a new file; the input is
never modified. Every option maps to a keyword of that function and is passed
on only when given, so the defaults live in ``kompot.tl`` alone (the help
shows them, read from the function signatures).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import NamedTuple

DEBUG_ENV = "KOMPOT_DEBUG"
# Options of the command itself; everything else in the namespace is a tl keyword.
_COMMAND_KEYS = ("command", "run", "input", "output", "debug")


class UsageError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as a single line that points to --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Wrap help text between words only, never inside an option name such as --direction-by."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Opt(NamedTuple):
    """One ``kompot.tl`` keyword exposed as ``--dashed-name``."""

    name: str
    help: str
    type: object = None
    choices: tuple | None = None


def _dimensionality(text: str):
    if text in ("features", "fractal"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'features', 'fractal' or a number, got {text!r}") from None


def _gene_list(text: str) -> list[str]:
    genes = [g.strip() for g in text.split(",") if g.strip()]
    if not genes:
        raise argparse.ArgumentTypeError("expected comma-separated gene names")
    return genes


def _count_or_all(text: str) -> int | None:
    if text.lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None


# ------------------------------------------------------------ option texts
_OBSM = Opt("obsm_key", "Cell-state representation to use: a key of the AnnData's obsm, "
            "such as X_pca, X_diffmap or DM_EigenVectors.")
_KEY = Opt("key_added", "Prefix of every output name, also the key of the run's record in uns. "
           "A run with the same key in the input is replaced.")
_LANDMARKS = Opt("n_landmarks", "Number of landmark points summarising the cell states; fewer "
                 "is faster and coarser.", int)
_BATCH = Opt("batch_size", "Cells evaluated per block; smaller uses less memory.", int)
_PROGRESS = Opt("progress", "Do not show progress bars.")
_LAYER = Opt("layer", "Layer holding the expression values; without it the main matrix X "
             "(usually log-normalised) is used.")
_GENES = Opt("genes", "Comma-separated gene names to analyse, e.g. CD3E,MS4A1; all genes "
             "without it.", _gene_list)
_SIGMA = Opt("sigma", "Observation noise of the expression model.", float)
_EMPIRICAL = Opt("use_empirical_variance", "Leave each gene's empirical, state-dependent "
                 "variance out of the uncertainty.")
_SINGLE = Opt("allow_single_condition_variance", "With --sample-col, accept a condition without "
              "replicates; the other condition's replicate variation stands in for both.")
_CONDITIONS = [
    Opt("groupby", "Column of the cell table (obs) holding each cell's condition."),
    Opt("condition1", "Reference condition, a value of the --groupby column."),
    Opt("condition2", "Condition compared with the reference; positive fold changes mean more "
        "of it in this condition."),
]

DA_OPTIONS = [
    *_CONDITIONS, _OBSM,
    Opt("sample_col", "Column of obs naming each cell's replicate sample (every sample in one "
        "condition only); the variation between replicates then enters each cell's "
        "significance."),
    Opt("method", "ratio: one classifier of the condition labels estimates the log density "
        "ratio. density: one density per condition, and their difference.",
        choices=("ratio", "density")),
    _KEY, _LANDMARKS,
    Opt("ls", "Kernel length scale. Without it, ratio chooses it from the data and density "
        "uses the nearest-neighbour rule times --ls-factor.", float),
    Opt("ls_factor", "Multiplier of the nearest-neighbour length-scale rule; smaller values "
        "resolve smaller regions. Without it, ratio fits the length scale to the data and "
        "density uses 0.25.", float),
    Opt("amplitude", "Ratio method only: prior standard deviation of the log ratio; fitted to "
        "the data without it.", float),
    Opt("dimensionality", "Density method only: dimension of the density model, 'features' "
        "(columns of the representation), 'fractal' (estimated local dimension) or a number.",
        _dimensionality),
    Opt("log_fold_change_threshold", "Smallest absolute log fold change (natural log) that is "
        "called up or down. Without it: 0 with --direction-by fdr, 1 with ptp.", float),
    Opt("ptp_threshold", "Largest posterior tail probability of a call with --direction-by ptp.",
        float),
    Opt("sync_parameters", "Density method only: estimate the dimensionality and prior mean "
        "once from both conditions together."),
    _SINGLE,
    Opt("fdr", "Skip the per-cell false-discovery rate; only the density method with "
        "--direction-by ptp can do without it."),
    Opt("fdr_threshold", "False-discovery rate at or below which a cell is called up or down "
        "(with --direction-by fdr).", float),
    Opt("n_permutations", "Density method only: label permutations that calibrate its "
        "false-discovery rate; each one refits the model.", int),
    Opt("direction_by", "fdr: call cells up or down by their false-discovery rate. ptp: by "
        "each cell's tail probability alone, without multiple-testing control.",
        choices=("fdr", "ptp")),
    Opt("random_state", "Seed for choosing the landmarks.", int),
    _BATCH, _PROGRESS,
]

DE_OPTIONS = [
    *_CONDITIONS, _OBSM, _LAYER, _GENES,
    Opt("sample_col", "Column of obs naming each cell's replicate sample (every sample in one "
        "condition only); adds the variation between replicates and makes the null swap whole "
        "samples."),
    _KEY, _LANDMARKS,
    Opt("ls", "Kernel length scale; without it, derived from the data times --ls-factor.", float),
    Opt("ls_factor", "Multiplier of the data-derived length scale.", float),
    _SIGMA, _EMPIRICAL, _SINGLE,
    Opt("fdr", "Skip the permutation null: no p-values, false-discovery rates or calls, "
        "much faster."),
    Opt("fdr_threshold", "Tail false-discovery rate at or below which a gene is called "
        "differentially expressed.", float),
    Opt("n_permutations", "Label permutations of the null; each one refits both conditions.",
        int),
    Opt("n_null_genes", "Genes drawn per permutation for the null, or 'all'. With replicates "
        "and a few thousand genes, 'all' finds more genes at a higher cost.", _count_or_all),
    Opt("store_layers", "Write only the per-gene results, not the cells x genes layers "
        "(smoothed expression, its uncertainty and the fold change)."),
    Opt("random_state", "Seed for the landmarks and the permutations.", int),
    _BATCH, _PROGRESS,
]

SMOOTH_OPTIONS = [
    Opt("groupby", "Column of obs holding conditions; with --condition the model is fitted to "
        "that condition's cells only."),
    Opt("condition", "Value of --groupby whose cells the model is fitted to; without "
        "--groupby and --condition all cells are used."),
    _OBSM, _LAYER, _GENES,
    Opt("sample_col", "Column of obs naming each cell's replicate sample; adds the variation "
        "between replicates to the standard deviation."),
    _KEY, _LANDMARKS,
    Opt("ls", "Kernel length scale; without it, derived from the data times --ls-factor.", float),
    Opt("ls_factor", "Multiplier of the data-derived length scale.", float),
    _SIGMA, _EMPIRICAL,
    Opt("random_state", "Seed for choosing the landmarks.", int),
    _BATCH, _PROGRESS,
]


# ------------------------------------------------------------ the parser
def _add_tl_option(parser: argparse.ArgumentParser, func, opt: Opt) -> None:
    """``--dashed-name`` for one keyword of ``func``, left out of the namespace unless given.

    A boolean keyword becomes a switch to its non-default value (``--no-fdr``
    for ``fdr=True``); the help shows the default from the signature.
    """
    default = inspect.signature(func).parameters[opt.name].default
    dashed = opt.name.replace("_", "-")
    if isinstance(default, bool):
        flag = f"--no-{dashed}" if default else f"--{dashed}"
        parser.add_argument(flag, dest=opt.name, action="store_const", const=not default,
                            default=argparse.SUPPRESS, help=opt.help)
        return
    required = default is inspect.Parameter.empty
    shown = "" if required or default is None else f" Default: {default}."
    parser.add_argument(f"--{dashed}", dest=opt.name, type=opt.type, choices=opt.choices,
                        required=required, default=argparse.SUPPRESS, help=opt.help + shown)


def _add_tool(sub, name: str, func, options: list[Opt], summary: str):
    tool = sub.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
    tool.add_argument("input", type=Path, help="AnnData file (.h5ad) to analyse; it is only read.")
    tool.add_argument("-o", "--output", type=Path, required=True,
                      help="File to write the AnnData with the results to (.h5ad); must differ "
                           "from the input.")
    for opt in options:
        _add_tl_option(tool, func, opt)
    _add_debug(tool)
    tool.set_defaults(run=lambda args: _run_tool(args, func))


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"Show the full traceback of an error (or set {DEBUG_ENV}=1).")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, tl
    from ._demo import MIN_CELLS

    parser = _Parser(prog="kompot", formatter_class=_HelpFormatter,
                     description="Differential abundance and expression between two conditions "
                     "in single-cell data (h5ad files).")
    parser.add_argument("--version", action="version", version=f"kompot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tool(sub, "da", tl.compute_differential_abundance, DA_OPTIONS,
              "Differential abundance: where in cell-state space one condition has more cells.")
    _add_tool(sub, "de", tl.compute_differential_expression, DE_OPTIONS,
              "Differential expression: which genes change between two conditions.")
    _add_tool(sub, "smooth", tl.compute_smoothed_expression, SMOOTH_OPTIONS,
              "Smoothed (imputed) expression as a function of cell state.")
    summary = "Differential abundance and expression on simulated toy data, with figures."
    demo = sub.add_parser("demo", help=summary, description=summary,
                          formatter_class=_HelpFormatter)
    demo.add_argument("outdir", nargs="?", default="demo_output", type=Path,
                      help="Folder for the results and figures. Default: demo_output.")
    demo.add_argument("--n-cells", type=int, default=2000,
                      help=f"Number of toy cells, at least {MIN_CELLS}. Default: 2000.")
    demo.add_argument("--seed", type=int, default=0,
                      help="Seed of the toy data. Default: 0.")
    _add_debug(demo)
    demo.set_defaults(run=_run_demo)
    return parser


# ------------------------------------------------------------ running a tool
def _check_paths(source: Path, target: Path) -> None:
    if not source.exists():
        raise UsageError(f"input file {source} does not exist")
    if not source.is_file():
        raise UsageError(f"input {source} is not a file")
    if source.resolve() == target.resolve() or (target.exists() and target.samefile(source)):
        raise UsageError(f"the output {target} is the input file; kompot never modifies its "
                         "input, pass another path to -o")
    if target.is_dir():
        raise UsageError(f"the output {target} is a folder; pass a file name such as "
                         f"{target / 'results.h5ad'}")
    if not target.parent.is_dir():
        raise UsageError(f"the output folder {target.parent} does not exist")


def _read_h5ad(path: Path):
    import anndata as ad
    import h5py

    if not h5py.is_hdf5(path):
        raise UsageError(f"{path} is not an h5ad file (not in HDF5 format)")
    try:
        return ad.read_h5ad(path)
    except Exception as err:  # anndata and h5py raise many kinds for a malformed file
        raise UsageError(f"cannot read {path} as an h5ad file: {_one_line(err)}") from err


def _write_h5ad(adata, path: Path) -> None:
    """Write next to the target first, so a failed write never leaves half a file at ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        adata.write_h5ad(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _run_tool(args: argparse.Namespace, func) -> int:
    _check_paths(args.input, args.output)
    kwargs = {k: v for k, v in vars(args).items() if k not in _COMMAND_KEYS}
    adata = _read_h5ad(args.input)
    start = time.perf_counter()
    func(adata, **kwargs)
    elapsed = time.perf_counter() - start
    _write_h5ad(adata, args.output)
    key_added = kwargs.get("key_added", inspect.signature(func).parameters["key_added"].default)
    print(f"kompot {args.command}: {adata.n_obs} cells x {adata.n_vars} genes in "
          f"{elapsed:.1f} s; wrote {args.output}")
    for line in _summary(adata, key_added):
        print("  " + line)
    return 0


def _summary(adata, key_added: str) -> list[str]:
    """What one run wrote, from its record in ``adata.uns``, and its calls."""
    record = adata.uns[key_added]
    fields = record["fields"]
    lines = [f"{slot}: {', '.join(map(str, fields[slot]))}"
             for slot in ("obs", "var", "layers") if len(fields[slot])]
    lines.append(f"uns: {key_added} (parameters and provenance)")
    for name in fields["obs"]:
        if str(name).endswith("_lfc_direction"):
            counts = adata.obs[name].value_counts()
            lines.append(f"cells called up: {counts.get('up', 0)}, down: "
                         f"{counts.get('down', 0)}, neutral: {counts.get('neutral', 0)}")
    for name in fields["var"]:
        if str(name).endswith("_is_de"):
            analysed = int(adata.var[fields["var"][0]].notna().sum())
            lines.append(f"genes called differentially expressed at FDR "
                         f"{record['params']['fdr_threshold']}: {int(adata.var[name].sum())} "
                         f"of {analysed} analysed")
    return lines


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import MIN_CELLS, run_demo

    if args.n_cells < MIN_CELLS:
        raise UsageError(f"the demo needs --n-cells of at least {MIN_CELLS} (3 replicate "
                         f"samples per condition, 20 cells each on average), got {args.n_cells}")
    run_demo(args.outdir, args.n_cells, args.seed)
    return 0


# ------------------------------------------------------------ entry point
def _one_line(err: BaseException) -> str:
    """An exception's message on one line (a KeyError's without the quotes str() adds)."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    return " ".join(str(message).split()) or type(err).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"kompot: warning: {_one_line(Warning(message))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
            return args.run(args)
    except (UsageError, ValueError, KeyError, OSError) as err:
        if debug:
            raise
        print(f"kompot: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kompot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
