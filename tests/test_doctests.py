"""Every docstring example of the package runs as written.

All modules are found with pkgutil.walk_packages; modules that need an optional dependency
which is not installed (torch, sklearn, ...) are skipped, naming it. A module whose source holds
examples must have them collected (a docstring that doctest cannot see would pass silently).
"""

import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import fractaldiff

OPTIONAL = ("torch", "sklearn", "matplotlib", "jinja2", "zarr", "h5py", "safetensors", "dask",
            "distributed", "tomli")
MODULES = sorted(m.name for m in pkgutil.walk_packages(fractaldiff.__path__, "fractaldiff.")
                 if not m.name.endswith("__main__"))


def test_modules_were_found():
    assert "fractaldiff.diffusion" in MODULES and "fractaldiff.engine.sources" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {missing}")
        raise
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    np.random.seed(0)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) failed in {name}"
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # the compiled module
        source = ""
    if ">>> " in source:
        assert result.attempted > 0, f"{name} has examples that doctest does not collect"
