"""The README's examples must run as written."""

import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def blocks():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    if not README.exists():
        pytest.skip("README.md not next to the tests (installed test run)")
    assert len(blocks()) >= 1


def test_quickstart_runs(capsys):
    if not README.exists():
        pytest.skip("README.md not next to the tests (installed test run)")
    exec(compile(blocks()[0], "README quickstart", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("msd_exponent = ")
    assert abs(float(out[-2].split("=")[1].split()[0]) - 1.0) < 0.05


@pytest.mark.parametrize("index", range(1, max(2, len(blocks()))))
def test_other_examples_run(index, capsys, tmp_path, monkeypatch):
    if not README.exists():
        pytest.skip("README.md not next to the tests (installed test run)")
    if index >= len(blocks()):
        pytest.skip("the README has only the quickstart example")
    code = blocks()[index]
    if "dask" in code:
        pytest.importorskip("distributed")
    if "fractaldiff.train" in code:
        pytest.importorskip("torch")
        pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", os.fspath(tmp_path))
    exec(compile(code, f"README example {index}", "exec"), {})
    out = capsys.readouterr().out
    assert out.strip()
    assert "False" not in out  # the examples print their own checks
