"""Conventions shared by the model classes: fitted state and unfitted errors.

The classes follow scikit-learn's contract: ``__init__`` stores its
arguments and nothing else, ``fit`` never changes them and writes what it
learns to attributes ending in ``_``. Refitting an instance therefore gives
the same result as fitting a fresh one.
"""

from __future__ import annotations


def fitted_or_given(name: str, doc: str) -> property:
    """Read-only property ``name``: the fitted ``name_`` once fitted, else the constructor's value.

    kompot 0.8.0 (and the seed's documentation) reads fitted predictors
    through the same attribute names as the constructor parameters that
    accept pre-fitted ones (``density_predictor1``, ``variance_predictor1``,
    ...). The constructor's value must then live under another name; it is
    kept in ``_<name>``, so the public name can serve both readers without
    ``fit`` ever overwriting what the user passed.
    """

    def get(self):
        fitted = getattr(self, f"{name}_", None)
        return fitted if fitted is not None else getattr(self, f"_{name}")

    return property(get, doc=doc)


def not_fitted(owner: str, fix: str = "call fit() first") -> ValueError:
    """The error every model raises when it is used before it is fitted."""
    return ValueError(f"This {owner} is not fitted yet; {fix}.")
