"""Replay every fuzz target over its seed corpus and over the inputs of crashes found so far
(regressions/<target>/): each must pass its target's checks. Needs no atheris."""

import resource
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness_analysis  # noqa: E402
import harness_safetensors  # noqa: E402
import harness_store  # noqa: E402

TARGETS = {"store": harness_store, "safetensors": harness_safetensors,
           "analysis": harness_analysis}


def inputs(kind):
    out = []
    for target in TARGETS:
        d = HERE / kind / target
        if d.is_dir():
            out += [pytest.param(target, p, id=f"{target}/{p.name}") for p in sorted(d.iterdir())
                    if p.is_file() and not p.name.startswith(".")]
    return out


@pytest.fixture
def bounded_memory():
    """Crash inputs may ask for huge allocations: make them MemoryError, not an OOM kill."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(hard, 8 << 30) if hard > 0 else 8 << 30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("target,path", inputs("corpus"))
def test_seed_corpus(target, path):
    TARGETS[target].test_one_input(path.read_bytes())


@pytest.mark.parametrize("target,path", inputs("regressions"))
def test_crash_regressions(target, path, bounded_memory):
    TARGETS[target].test_one_input(path.read_bytes())
