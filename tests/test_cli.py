"""The command line: config handling, bad input (exit code 2, clear messages), entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from fractaldiff.cli import main
from fractaldiff.pipeline.config import DEFAULT_TOML, default_config, load_config, to_toml

#: A run small enough for a few seconds: one short digits run, no LLC, nothing else.
TINY = """
seed = 3
[llc]
enabled = false
[moons]
enabled = false
[cnn]
enabled = false
[lm]
enabled = false
[posterior]
enabled = false
[digits]
optimizers = ["sgd"]
sgd_lrs = [0.05]
batch_sizes = [64]
steps = 80
record_every = 1
[analysis]
max_points_dimension = 60
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_print_config_is_the_default(capsys):
    assert main(["run", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out == DEFAULT_TOML
    assert tomllib.loads(out) == default_config()


def test_print_config_resolved_round_trips(tmp_path, capsys):
    cfg_file = write(tmp_path / "c.toml", "[digits]\nsteps = 123\n")
    assert main(["run", str(cfg_file), "--quick", "--print-config"]) == 0
    text = capsys.readouterr().out
    resolved = tomllib.loads(text)
    assert resolved["digits"]["steps"] == 123
    assert resolved["moons"]["n_models"] == 4  # the --quick value
    assert load_config(write(tmp_path / "r.toml", text)) == resolved
    assert to_toml(resolved) == text


@pytest.mark.parametrize("text, words", [
    ("colour = 1\n", ["unknown config key 'colour'"]),
    ("[digits]\nstep = 10\n", ["unknown config key 'digits.step'", "steps"]),
    ("[digits]\nsteps = '10'\n", ["'digits.steps'", "must be an integer"]),
    ("[digits]\nsteps = 0\n", ["'digits.steps'", ">= 1"]),
    ("[llc]\nstep_size = -1.0\n", ["'llc.step_size'", "> 0"]),
    ("[moons]\noptimizer = 'rmsprop'\n", ["'moons.optimizer'", "'sgd', 'adam'", "rmsprop"]),
    ("[digits]\noptimizers = ['sgd', 'lbfgs']\n", ["'digits.optimizers'", "'sgd', 'adam'"]),
    ("[digits]\nsgd_lrs = []\n", ["'digits.sgd_lrs'", "non-empty list"]),
    ("[analysis]\nlate_window = [0.9, 0.1]\n", ["'analysis.late_window'", "auto"]),
    ("digits = 3\n", ["'digits'", "table"]),
    ("[llc]\nenabled = 1\n", ["'llc.enabled'", "true or false"]),
    ("this is not toml", ["not valid TOML"]),
    ("[moons]\nn_models = 1\n", ["'moons.n_models'", ">= 2"]),
    ("[llc]\nn_draws = 50\nn_burnin = 50\n", ["'llc.n_draws'", "larger than 'llc.n_burnin'"]),
    ("[lm]\nd_model = 30\n", ["'lm.d_model'", "multiple of 'lm.n_heads'"]),
])
def test_bad_config_names_the_key(tmp_path, capsys, text, words):
    cfg_file = write(tmp_path / "bad.toml", text)
    assert main(["run", str(cfg_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_output_dir_guard(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    cfg = write(tmp_path / "tiny.toml", TINY)
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert (out / "report.html").is_file() and (out / "results.json").is_file()
    capsys.readouterr()
    # same config again: allowed (resumes, everything cached)
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    # a different config: refused unless --resume or --force
    cfg2 = write(tmp_path / "tiny2.toml", TINY.replace("steps = 80", "steps = 90"))
    assert main(["run", str(cfg2), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--resume" in err and "--force" in err
    assert (out / "report.html").is_file()  # the old, finished report is left alone
    assert main(["run", str(cfg2), "--out", str(out), "--no-progress", "--force"]) == 0
    assert "steps = 90" in (out / "config.toml").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["run", str(cfg), "--out", str(out), "--resume", "--force"])
    assert exc.value.code == 2
    # a folder with someone else's files
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert main(["run", str(cfg), "--out", str(other), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_bad_jobs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--jobs", "0"])
    assert exc.value.code == 2


def test_analyze_bad_run_paths(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.fdstore")]) == 2
    assert "does not exist" in capsys.readouterr().err
    txt = write(tmp_path / "notes.txt", "hello")
    assert main(["analyze", str(txt)]) == 2
    assert "not a trajectory" in capsys.readouterr().err
    np.save(tmp_path / "vec.npy", np.zeros(10))
    assert main(["analyze", str(tmp_path / "vec.npy")]) == 2
    assert "2-D" in capsys.readouterr().err
    np.save(tmp_path / "few.npy", np.zeros((3, 4)))
    assert main(["analyze", str(tmp_path / "few.npy")]) == 2
    assert "at least 16 snapshots" in capsys.readouterr().err
    bad = np.cumsum(np.ones((40, 5)), axis=0)
    bad[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["analyze", str(tmp_path / "nan.npy")]) == 2
    assert "snapshot 7, parameter 2" in capsys.readouterr().err
    empty = tmp_path / "emptydir"
    empty.mkdir()
    assert main(["analyze", str(empty)]) == 2
    assert "could not be read as a trajectory" in capsys.readouterr().err


def test_analyze_bad_factories(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    run = tmp_path / "walk.npy"
    np.save(run, np.cumsum(rng.standard_normal((64, 12)), axis=0).astype(np.float32))
    write(tmp_path / "facts.py", """
import numpy as np
import torch

def good_model():
    return torch.nn.Linear(5, 2)          # 12 parameters

def wrong_model():
    return torch.nn.Linear(5, 3)          # 18 parameters

def not_a_model():
    return "model"

def data():
    return np.zeros((8, 5), np.float32), np.zeros(8, np.int64)

def bad_data():
    return 42

def broken():
    raise RuntimeError("boom")
""")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [
        (["--model", "facts:good_model"], "give both --model and --data"),
        (["--model", "facts", "--data", "facts:data"], "MODULE:FACTORY"),
        (["--model", "nosuchmodule:f", "--data", "facts:data"], "could not be imported"),
        (["--model", "facts:nothing", "--data", "facts:data"], "no callable 'nothing'"),
        (["--model", "facts:not_a_model", "--data", "facts:data"], "not a torch.nn.Module"),
        (["--model", "facts:good_model", "--data", "facts:bad_data"], "expected a pair (x, y)"),
        (["--model", "facts:broken", "--data", "facts:data"], "RuntimeError: boom"),
        (["--model", "facts:wrong_model", "--data", "facts:data"],
         "has 18 trainable parameters but the run's snapshots have 12"),
    ]
    for extra, words in cases:
        out = tmp_path / "rep"
        assert main(["analyze", str(run), "--out", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err, (extra, err)
        assert not (out / "report.html").exists()


def test_report_of_a_folder_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    write(tmp_path / "results.json", "{\"format\": \"something else\"}")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a fractaldiff results file" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    env = dict(os.environ)  # the package as this test session imports it
    out = subprocess.run([sys.executable, "-m", "fractaldiff", "run", "--print-config"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == DEFAULT_TOML
    out = subprocess.run([sys.executable, "-m", "fractaldiff", "analyze", "/nonexistent/run"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_top_level_package_imports_without_torch():
    code = ("import sys\n"
            "import fractaldiff, fractaldiff.cli, fractaldiff.pipeline, fractaldiff.report\n"
            "import fractaldiff.pipeline.run, fractaldiff.pipeline.analyze\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = dict(os.environ)  # the package as this test session imports it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
