"""kompot.tl checks what its inputs mean: expression scale, layers, landmarks, diffusion maps;
kompot.settings.verbosity; every warning is a KompotWarning."""

import ast
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

import kompot
import kompot.tl
from kompot._settings import report
from kompot._warnings import KompotInputWarning
from kompot.tl._input_meaning import SAMPLE_ROWS, check_expression_scale, expression_scale

C1, C2 = "control", "treated"
FAST = {"n_landmarks": 30, "progress": False}
GENES = [f"gene_{i}" for i in range(4)]


def _input_warnings(record):
    return [w for w in record if issubclass(w.category, KompotInputWarning)]


def _de(adata, **kwargs):
    kompot.tl.compute_differential_expression(adata, "condition", C1, C2, genes=GENES, fdr=False,
                                              store_layers=False, **{**FAST, **kwargs})


# ------------------------------------------------------------------ expression scale
def test_log_normalised_expression_passes_quietly(adata):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _de(adata)
    assert not _input_warnings(record)
    assert adata.uns["kompot_de"]["expression_scale"] == "log-normalised"
    assert adata.uns["kompot_de"]["log_base"] == pytest.approx(np.e)


def test_raw_counts_warn_once_naming_the_fix(adata):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _de(adata, layer="counts")
    (warning,) = _input_warnings(record)
    message = str(warning.message)
    assert "\n" not in message and "adata.layers['counts']" in message and "raw counts" in message
    assert "sc.pp.normalize_total" in message and "sc.pp.log1p" in message and "layer=" in message
    assert issubclass(warning.category, kompot.KompotWarning)
    assert adata.uns["kompot_de"]["expression_scale"] == "counts"


def test_z_scored_expression_warns(adata):
    X = np.asarray(adata.X, dtype=np.float64)
    adata.X = (X - X.mean(axis=0)) / X.std(axis=0)  # as sc.pp.scale leaves it
    with pytest.warns(KompotInputWarning, match=r"z-scored.*sc.pp.log1p"):
        kompot.tl.compute_smoothed_expression(adata, genes=GENES, **FAST)


def test_scanpy_pbmc68k_reduced_is_z_scored():
    sc = pytest.importorskip("scanpy")
    pbmc = sc.datasets.pbmc68k_reduced()  # shipped with scanpy, no download
    assert expression_scale(np.asarray(pbmc.X)) == "z-scored"
    assert expression_scale(pbmc.raw.X[:500].toarray()) is None  # its log-normalised raw


def test_scale_check_reads_a_sample_of_rows():
    rng = np.random.default_rng(0)
    counts = sparse.random(50_000, 30, density=0.05, format="csr", random_state=rng,
                           data_rvs=lambda n: rng.integers(1, 20, n))
    read = []

    class Recording(sparse.csr_matrix):
        def __getitem__(self, key):
            read.append(key)
            return super().__getitem__(key)

    with pytest.warns(KompotInputWarning, match="raw counts"):
        assert check_expression_scale(Recording(counts), np.arange(30), "adata.X") == "counts"
    rows = [k for k in read if isinstance(k, np.ndarray)]
    assert rows and all(len(r) <= SAMPLE_ROWS for r in rows)


# ------------------------------------------------------------------ layers and landmarks
def test_non_numeric_layer_is_named(adata):
    adata.layers["labels"] = np.full(adata.shape, "high", dtype=object)
    with pytest.raises(ValueError, match=r"adata.layers\['labels'\] is not numeric"):
        _de(adata, layer="labels")
    assert "kompot_de" not in adata.uns


def test_n_landmarks_above_the_cells_records_the_number_used(adata):
    few = adata[:120].copy()
    kompot.tl.compute_smoothed_expression(few, genes=GENES, n_landmarks=5000, progress=False)
    params = few.uns["kompot_smooth"]["params"]
    assert params["n_landmarks"] == few.uns["kompot_smooth"]["landmarks"].shape[0] == 120
    assert params["n_landmarks_requested"] == 5000
    kompot.tl.compute_smoothed_expression(few, genes=GENES, n_landmarks=20, progress=False)
    assert few.uns["kompot_smooth"]["params"]["n_landmarks"] == 20
    assert "n_landmarks_requested" not in few.uns["kompot_smooth"]["params"]


# ------------------------------------------------------------------ cell-state representation
def _scanpy_like_diffmap(adata):
    """What sc.tl.diffmap writes: column 0 the trivial eigenvector (eigenvalue 1)."""
    dm = np.asarray(adata.obsm["DM_EigenVectors"], dtype=np.float64)
    trivial = 0.04 + 1e-3 * np.random.default_rng(0).standard_normal(adata.n_obs)
    adata.obsm["X_diffmap"] = np.column_stack([trivial, dm])
    adata.uns["diffmap_evals"] = np.r_[1.0, np.linspace(0.99, 0.9, dm.shape[1])]
    return dm.shape[1]


def test_scanpy_diffmap_drops_its_trivial_component(adata):
    n_informative = _scanpy_like_diffmap(adata)
    with pytest.warns(KompotInputWarning, match=r"drops column\(s\) \[0\].*trivial eigenvector"):
        kompot.tl.compute_differential_abundance(adata, "condition", C1, C2,
                                                 obsm_key="X_diffmap", **FAST)
    record = adata.uns["kompot_da"]
    assert list(record["obsm_columns_dropped"]) == [0]
    assert record["landmarks"].shape[1] == n_informative


def test_constant_columns_are_dropped(adata):
    dm = np.asarray(adata.obsm["DM_EigenVectors"])
    adata.obsm["X_padded"] = np.column_stack([dm, np.ones(adata.n_obs)])
    with pytest.warns(KompotInputWarning, match="constant"):
        _de(adata, obsm_key="X_padded")
    assert list(adata.uns["kompot_de"]["obsm_columns_dropped"]) == [dm.shape[1]]
    adata.obsm["X_flat"] = np.ones((adata.n_obs, 2))
    with pytest.raises(ValueError, match="no informative column"):
        _de(adata, obsm_key="X_flat")


# ------------------------------------------------------------------ smoothing per condition
def test_smoothing_takes_groupby_and_condition_positionally(adata):
    kompot.tl.compute_smoothed_expression(adata, "condition", C1, genes=GENES, **FAST)
    positional = adata.layers["kompot_smooth_smoothed"].copy()
    kompot.tl.compute_smoothed_expression(adata, groupby="condition", condition=C1,
                                          genes=GENES, **FAST)
    np.testing.assert_array_equal(adata.layers["kompot_smooth_smoothed"], positional)
    assert adata.uns["kompot_smooth"]["condition"] == C1
    kompot.tl.compute_smoothed_expression(adata, genes=GENES, **FAST)  # default: all cells
    assert adata.uns["kompot_smooth"]["condition"] == "None"
    assert not np.array_equal(adata.layers["kompot_smooth_smoothed"], positional, equal_nan=True)


# ------------------------------------------------------------------ settings
def test_verbosity_follows_scanpy_until_set():
    sc = pytest.importorskip("scanpy")
    before = sc.settings.verbosity
    try:
        sc.settings.verbosity = 3
        assert kompot.settings.verbosity == 3
        kompot.settings.verbosity = "error"
        assert kompot.settings.verbosity == 0
        kompot.settings.verbosity = None
        assert kompot.settings.verbosity == 3
    finally:
        sc.settings.verbosity = before
        kompot.settings.verbosity = None
    with pytest.raises(ValueError, match="verbosity"):
        kompot.settings.verbosity = "loud"


def test_wrote_lines_honour_the_verbosity(adata, caplog, capsys):
    try:
        kompot.settings.verbosity = "warning"
        with caplog.at_level(logging.INFO, logger="kompot"):
            _de(adata)
        assert not [r for r in caplog.records if "wrote" in r.getMessage()]
        kompot.settings.verbosity = "info"
        with caplog.at_level(logging.INFO, logger="kompot"):
            _de(adata)
        assert len([r for r in caplog.records if "wrote" in r.getMessage()]) == 1
        # Without a logging set-up that shows it, the line goes to stderr.
        quiet = logging.getLogger("kompot_test_unconfigured")
        quiet.propagate = False
        report(quiet, "kompot wrote %s.", "things")
        assert capsys.readouterr().err == "kompot wrote things.\n"
    finally:
        kompot.settings.verbosity = None


# ------------------------------------------------------------------ warning categories
def _warn_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
            yield node


def test_every_warning_is_a_kompot_warning():
    """Users filter kompot's warnings by class: every warnings.warn names a KompotWarning."""
    import kompot.tl._record as record

    allowed = {"KompotWarning", "KompotRuntimeWarning", "KompotInputWarning",
               "ViewModificationWarning"}
    assert issubclass(record.ViewModificationWarning, kompot.KompotWarning)
    root = Path(kompot.__file__).parent
    found = 0
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for call in _warn_calls(tree):
            category = call.args[1] if len(call.args) > 1 else next(
                (k.value for k in call.keywords if k.arg == "category"), None)
            assert category is not None and ast.unparse(category) in allowed, (
                f"{path.relative_to(root)}:{call.lineno}")
            found += 1
        prints = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and ast.unparse(n.func) == "print"]
        if path.name not in ("cli.py", "_demo.py", "_settings.py"):
            assert not prints, f"{path.relative_to(root)}: print at lines {prints}"
        logged = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and ast.unparse(n.func) in ("logger.warning", "logging.warning")]
        assert not logged, f"{path.relative_to(root)}: logger.warning at lines {logged}"
    assert found >= 13
