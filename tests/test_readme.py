"""The README's quickstart must run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs(capsys):
    if not README.exists():
        pytest.skip("README.md not next to the tests (installed test run)")
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    exec(compile(blocks[0], "README quickstart", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("msd_exponent = ")
    assert abs(float(out[-2].split("=")[1].split()[0]) - 1.0) < 0.05
