"""Signature conventions of every public function of kompot.tl and kompot.pl (as in scanpy)."""

import inspect

import pytest

import kompot.pl
import kompot.tl

MAX_POSITIONAL = 4


def _public_functions(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return [
        (f"{module.__name__}.{name}", getattr(module, name))
        for name in names
        if inspect.isfunction(getattr(module, name))
    ]


FUNCTIONS = _public_functions(kompot.tl) + _public_functions(kompot.pl)


def test_tl_exports_its_functions():
    assert {name for name, _ in _public_functions(kompot.tl)} >= {
        "kompot.tl.compute_differential_abundance",
        "kompot.tl.compute_differential_expression",
        "kompot.tl.compute_smoothed_expression",
    }


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_signature_conventions(name, func):
    params = list(inspect.signature(func).parameters.values())
    assert params and params[0].name == "adata", f"{name}: first parameter must be adata"
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= MAX_POSITIONAL, (
        f"{name}: {len(positional)} positional parameters ({[p.name for p in positional]}); "
        "make the rest keyword-only"
    )
    assert not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params), name
    copy = inspect.signature(func).parameters.get("copy")
    if copy is not None:
        assert copy.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: copy must be keyword-only"
        assert copy.default is False, f"{name}: copy must default to False"


TL_FUNCTIONS = _public_functions(kompot.tl)


@pytest.mark.parametrize(("name", "func"), TL_FUNCTIONS, ids=[n for n, _ in TL_FUNCTIONS])
def test_docstring_documents_every_parameter(name, func):
    doc = inspect.getdoc(func) or ""
    assert "Parameters" in doc and "Returns" in doc, name
    documented = {line.strip() for line in doc.splitlines()}
    for param in inspect.signature(func).parameters:
        assert param in documented, f"{name}: parameter {param!r} is not documented"
