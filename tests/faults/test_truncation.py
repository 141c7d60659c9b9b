"""Readers and truncation: a recovery never cuts rows an open reader or memory map may read
(it refuses while they exist), and reads through the store's API never die of SIGBUS when the
data file shrinks by other means: they raise StoreCorruptedError."""

import gc
import os
import signal
import warnings

import numpy as np
import pytest
from faultkit import flip_byte, make_store, python, spawn

from fractaldiff.io.store import (
    StoreLockedError,
    StoreRecoveryWarning,
    open_store,
)

READER = """
import sys
import fractaldiff as fd
r = fd.open_store(sys.argv[1])
r[0]
print("ready", flush=True)
sys.stdin.readline()
print(float(r[:].astype("float64").sum()), flush=True)
print(len(r), flush=True)
"""


def test_reader_process_survives_recovery_in_another_process(tmp_path):
    """A reader holds the store and has read a row; another process runs the documented
    recovery (mode "a", recover=True) after a damaged commit record."""
    path = tmp_path / "s"
    data = make_store(path, 50)
    reader = spawn(READER, path)
    try:
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        flip_byte(path / "commits.bin", 30 * 32 + 20)
        with pytest.warns(StoreRecoveryWarning), pytest.raises(
            StoreLockedError, match=r"would cut committed snapshots 30\.\.49.*open for reading"
        ):
            open_store(path, "a", recover=True)
        assert (path / "snapshots.bin").stat().st_size == 50 * data.shape[1] * 4  # not cut
        out, err = reader.communicate("go\n", timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0, (reader.returncode, err)  # -SIGBUS before
    total, n = out.split()
    assert float(total) == pytest.approx(float(data.astype(np.float64).sum())) and n == "50"
    # with the reader gone the recovery goes ahead
    with pytest.warns(StoreRecoveryWarning, match="commit record 30 of 50"):
        with open_store(path, "a", recover=True) as w:
            assert len(w) == 30
    with open_store(path) as r:
        assert np.array_equal(r[:], data[:30]) and r.verify() == 30


def test_memory_map_blocks_recovery_until_released(tmp_path):
    path = tmp_path / "m"
    data = make_store(path, 20)
    r = open_store(path)
    mm = r.as_memmap()
    r.close()  # the map outlives the store object
    flip_byte(path / "commits.bin", 10 * 32 + 3)
    with pytest.warns(StoreRecoveryWarning), pytest.raises(StoreLockedError):
        open_store(path, "a", recover=True)
    assert np.array_equal(mm[:], data)  # still mapped, still whole
    view = mm[5:]
    del mm
    gc.collect()
    with pytest.warns(StoreRecoveryWarning), pytest.raises(StoreLockedError):
        open_store(path, "a", recover=True)  # a view keeps the map alive
    del view
    gc.collect()
    with pytest.warns(StoreRecoveryWarning):
        open_store(path, "a", recover=True).close()
    with open_store(path) as r2:
        assert len(r2) == 10


def test_read_only_recovery_needs_no_exclusive_access(tmp_path):
    path = tmp_path / "r"
    data = make_store(path, 12)
    flip_byte(path / "commits.bin", 7 * 32 + 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreRecoveryWarning)
        a = open_store(path, recover=True)
        b = open_store(path, recover=True)
    assert len(a) == len(b) == 7 and np.array_equal(a[:], data[:7])
    a.close()
    b.close()


CUT_BY_OTHERS = """
import os, sys
import fractaldiff as fd
path = sys.argv[1]
r = fd.open_store(path)
mm_rows = r[0]
os.truncate(os.path.join(path, "snapshots.bin"), 3 * r.shape[1] * 4 + 5)
print(r[2].sum() == r[2].sum(), flush=True)
for what in ("r[:]", "r[10]", "r[:, 3]", "r.column_block(0, 4)", "r.verify()", "list(r)"):
    try:
        eval(what)
    except fd.StoreCorruptedError as exc:
        assert "truncated" in str(exc), exc
        print("error", flush=True)
    else:
        print("no error", what, flush=True)
try:
    fd.open_store(path)
except fd.StoreCorruptedError as exc:
    print("open:", "truncated" in str(exc), flush=True)
"""


def test_truncation_by_another_program_raises_instead_of_sigbus(tmp_path):
    path = tmp_path / "t"
    make_store(path, 20)
    p = python(CUT_BY_OTHERS, path)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.returncode != -signal.SIGBUS
    lines = p.stdout.split("\n")
    assert lines[0] == "True"
    assert lines[1:7] == ["error"] * 6, p.stdout
    assert lines[7] == "open: True"


def test_writer_close_and_torn_cut_do_not_need_readers_gone(tmp_path):
    """Cutting only what no reader can see (a torn tail, the preallocated reserve) goes ahead
    with readers open."""
    path = tmp_path / "w"
    data = make_store(path, 5)
    r = open_store(path)
    with open(path / "commits.bin", "ab") as fh:
        fh.write(b"FDC1\0\0")
    with pytest.warns(StoreRecoveryWarning, match="torn commit record"):
        w = open_store(path, "a")
    w.append(data[0], step=99)
    w.close()
    assert np.array_equal(r[:], data) and r.refresh() == 6
    r.close()
    assert os.path.getsize(path / "commits.bin") == 6 * 32
