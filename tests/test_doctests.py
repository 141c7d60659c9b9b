"""The examples in the public docstrings run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "fractaldiff.diffusion",
    "fractaldiff._info",
    "fractaldiff.engine.sources",
    "fractaldiff.fitting.exponents",
    "fractaldiff.theory",
    "fractaldiff.fitting.ensemble",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
