"""Shared helpers of the fault suite (not a conftest.py: tests elsewhere import `conftest` by
name): stores with known content, a subprocess runner and a
watchdog for operations that must not block."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import fractaldiff
from fractaldiff.io.store import SnapshotStore

D = 24
#: Subprocesses import the same fractaldiff as the tests (installed, checkout or sanitized).
PYTHONPATH = os.pathsep.join(
    [str(Path(fractaldiff.__file__).resolve().parents[1])]
    + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)


def rows_for(n, d=D):
    """Deterministic float32 snapshots 0..n-1."""
    base = np.arange(d, dtype=np.float64)
    return np.stack([((base * 7919.0 + k * 104729.0) % 65521.0) * 0.5 - k for k in range(n)]
                    ).astype(np.float32)


def make_store(path, n=50, d=D, **kw):
    """A closed store of ``n`` snapshots ``rows_for(n, d)`` with steps 0..n-1."""
    data = rows_for(n, d)
    with SnapshotStore.create(path, d, **kw) as s:
        for t in range(n):
            s.append(data[t], step=t, loss=1.0 / (t + 1))
    return data


def flip_byte(path, offset, mask=0xFF):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ mask]))


def python(code, *args, timeout=60, **kw):
    """Run ``code`` in a fresh interpreter that imports this checkout; returns the process."""
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, **kw)


def spawn(code, *args):
    """Start ``code`` in a fresh interpreter with pipes on stdin/stdout."""
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@contextlib.contextmanager
def watchdog(seconds=10):
    """``with watchdog(seconds):`` raises TimeoutError instead of blocking forever."""

    def fire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
