"""The examples in the public docstrings run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "fractaldiff.diffusion",
    "fractaldiff._info",
    "fractaldiff.sources",
    "fractaldiff.fitting",
    "fractaldiff.dims",
    "fractaldiff.ensemble",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
