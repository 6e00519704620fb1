"""Array inputs of the analyses, from toy data, shared by the model tests."""

import numpy as np

C1, C2 = "control", "treated"


def toy_arrays(adata):
    """States, the two conditions' masks, dense float64 expression and sample labels."""
    X = np.asarray(adata.obsm["DM_EigenVectors"], np.float64)
    treated = (adata.obs["condition"] == C2).to_numpy()
    Y = np.asarray(adata.X, np.float64)
    samples = adata.obs["sample"].astype(str).to_numpy()
    return X, ~treated, treated, Y, samples
