"""Every bad input raises a clear error before anything in adata is touched."""

import numpy as np
import pandas as pd
import pytest
from tl_testing import C1, C2, FAST, assert_adata_equal

import kompot.tl

DA = kompot.tl.compute_differential_abundance
DE = kompot.tl.compute_differential_expression
SMOOTH = kompot.tl.compute_smoothed_expression


def _nan_in_representation(adata):
    X = adata.obsm["DM_EigenVectors"].copy()
    X[3, 1] = np.nan
    adata.obsm["DM_EigenVectors"] = X


def _nan_in_expression(adata):
    X = adata.X.copy()
    X[5, 2] = np.nan
    adata.X = X


def _shared_samples(adata):
    # Labels rep1..rep3 reused in both conditions: not nested.
    adata.obs["rep"] = adata.obs["sample"].astype(str).str.split("_").str[-1]


def _one_sample_per_condition(adata):
    adata.obs["batch"] = adata.obs["condition"].astype(str) + "_batch"


def _earlier_run(adata):
    # A previous run under another key must survive a failing call untouched.
    DA(adata, "condition", C1, C2, key_added="earlier", **FAST)


# (id, function, positional args, keyword args, setup, exception, message pattern)
CASES = [
    ("obsm_missing", DA, (), {"obsm_key": "X_diffmap"}, None, KeyError,
     r"obsm_key='X_diffmap' is not in adata.obsm.*DM_EigenVectors.*X_pca.*diffmap"),
    ("obsm_missing_de", DE, (), {"obsm_key": "X_pca"}, None, KeyError, r"sc.tl.diffmap"),
    ("obsm_missing_smooth", SMOOTH, None, {"obsm_key": "X_pca"}, None, KeyError, r"X_pca"),
    ("obsm_nan", DA, (), {}, _nan_in_representation, ValueError, r"NaN or infinite.*1 cells.*cell_3"),
    ("obsm_nan_de", DE, (), {}, _nan_in_representation, ValueError, r"NaN or infinite"),
    ("groupby_missing", DA, ("cond",), {}, None, KeyError,
     r"groupby='cond' is not a column of adata.obs.*'condition'"),
    ("condition_unknown", DA, ("condition", C1, "treatd"), {}, None, ValueError,
     r"condition2='treatd' is not a category.*'control', 'treated'"),
    ("condition_unknown_de", DE, ("condition", "ctrl", C2), {}, None, ValueError,
     r"condition1='ctrl'.*categories are"),
    ("condition_unknown_smooth", SMOOTH, None, {"groupby": "condition", "condition": "x"}, None,
     ValueError, r"condition='x' is not a category"),
    ("same_conditions", DA, ("condition", C1, C1), {}, None, ValueError, r"two different"),
    ("samples_not_nested", DA, (), {"sample_col": "rep"}, _shared_samples, ValueError,
     r"nested.*'1', '2', '3'"),
    ("samples_not_nested_de", DE, (), {"sample_col": "rep"}, _shared_samples, ValueError,
     r"Samples must be nested in conditions"),
    ("sample_col_missing", DE, (), {"sample_col": "donor"}, None, KeyError,
     r"sample_col='donor' is not a column"),
    ("too_few_samples", DA, (), {"sample_col": "batch"}, _one_sample_per_condition, ValueError,
     r"at least 2 samples.*sample_col=None"),
    ("layer_missing", DE, (), {"layer": "lognorm"}, None, KeyError,
     r"layer='lognorm' is not in adata.layers.*'counts'.*layer=None"),
    ("layer_missing_smooth", SMOOTH, None, {"layer": "raw"}, None, KeyError, r"layer='raw'"),
    ("genes_missing", DE, (), {"genes": ["gene_1", "GAPDH", "ACTB"]}, None, KeyError,
     r"2 of the requested genes are not in adata.var_names: 'GAPDH', 'ACTB'"),
    ("genes_mask_length", DE, (), {"genes": np.ones(5, dtype=bool)}, None, ValueError,
     r"one entry per gene \(40\)"),
    ("genes_none_selected", SMOOTH, None, {"genes": np.zeros(40, dtype=bool)}, None, ValueError,
     r"selects no gene"),
    ("expression_nan", DE, (), {}, _nan_in_expression, ValueError, r"adata.X has NaN"),
    ("landmarks_shape", DA, (), {"landmarks": np.zeros((10, 3))}, None, ValueError,
     r"landmarks must have shape \(n_landmarks, 10\)"),
    ("ls_factor", DA, (), {"ls_factor": 0}, None, ValueError, r"ls_factor must be a positive"),
    ("ptp_threshold", DA, (), {"ptp_threshold": 1.5}, None, ValueError, r"ptp_threshold"),
    ("fdr_threshold", DE, (), {"fdr_threshold": 0}, None, ValueError, r"fdr_threshold"),
    ("n_permutations", DE, (), {"n_permutations": 0}, None, ValueError, r"n_permutations"),
    ("n_null_genes", DE, (), {"n_null_genes": 0}, None, ValueError, r"n_null_genes"),
    ("n_landmarks", DE, (), {"n_landmarks": 2.5}, None, ValueError, r"n_landmarks"),
    ("key_added", DA, (), {"key_added": ""}, None, ValueError, r"key_added"),
    ("smooth_condition_alone", SMOOTH, None, {"condition": C1}, None, ValueError,
     r"groupby and condition together"),
    ("keeps_earlier_runs", DE, (), {"genes": ["nope"]}, _earlier_run, KeyError, r"'nope'"),
]


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "setup", "exc", "match"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_raises_and_leaves_adata_unchanged(adata, func, args, kwargs, setup, exc, match):
    if setup is not None:
        setup(adata)
    before = adata.copy()
    if args is None:  # keyword-only function
        call_args = ()
    else:
        call_args = args + ("condition", C1, C2)[len(args):]
    with pytest.raises(exc, match=match):
        func(adata, *call_args, **{**FAST, **kwargs})
    assert_adata_equal(adata, before)


def test_condition_from_object_column(adata):
    """Conditions may be plain strings in an object column, not only categories."""
    adata.obs["cond_str"] = pd.Series(adata.obs["condition"].astype(str).to_numpy(dtype=object),
                                      index=adata.obs_names)
    DA(adata, "cond_str", C1, C2, **FAST)
    assert f"kompot_da_{C1}_to_{C2}_lfc" in adata.obs
    with pytest.raises(ValueError, match="categories are: 'control', 'treated'"):
        DA(adata, "cond_str", C1, "nope", **FAST)


def test_single_condition_replicates_allowed_when_asked(adata):
    # Control keeps its three replicates, treated becomes one sample.
    labels = adata.obs["sample"].astype(str).to_numpy().copy()
    labels[adata.obs["condition"].to_numpy() == C2] = "treated_all"
    adata.obs["rep"] = labels
    with pytest.raises(ValueError, match="allow_single_condition_variance=True"):
        DA(adata, "condition", C1, C2, sample_col="rep", **FAST)
    DA(adata, "condition", C1, C2, sample_col="rep", allow_single_condition_variance=True, **FAST)
    assert adata.uns["kompot_da"]["params"]["allow_single_condition_variance"] is True
