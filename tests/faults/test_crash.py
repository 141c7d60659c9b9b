"""Crash safety of SnapshotStore: SIGKILL at random moments, torn tails, concurrent readers.

The writer runs in a subprocess, appends snapshot k (generated deterministically from k) as
fast as it can and prints k once ``append`` has returned. We kill it with SIGKILL after random
delays and check: the store opens, every printed snapshot is there bit-exact with its metadata,
nothing half-written is visible, and appending resumes.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from fractaldiff.io.store import (
    SnapshotStore,
    StoreCorruptedError,
    StoreRecoveryWarning,
    open_store,
)

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL"
)

D = 10_000

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fractaldiff.io.store import SnapshotStore, open_store, is_store

    path, d, durable, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    parts_mode = sys.argv[5] == "parts"  # rows written from two arrays (parts_writer)
    base = np.arange(d, dtype=np.float64)

    def snapshot(k):
        return ((base * 7919.0 + k * 104729.0) % 65521.0).astype(np.float32) * 0.5 - k

    if is_store(path):
        store = open_store(path, mode="a", durable=durable)
    else:
        store = SnapshotStore.create(path, d, meta={"writer": "crash test"}, durable=durable)
    print("ready", len(store), flush=True)
    k = len(store)
    parts = [np.empty(3001, np.float32), np.empty(d - 3001, np.float32)]
    writer = store.parts_writer(parts)
    while k < limit:
        if parts_mode:
            row = snapshot(k)
            parts[0][:], parts[1][:] = row[:3001], row[3001:]
            writer.append(step=3 * k, loss=1.0 / (k + 1), tag="x" * (k % 13))
        else:
            store.append(snapshot(k), step=3 * k, loss=1.0 / (k + 1), tag="x" * (k % 13))
        print(k, flush=True)
        k += 1
    store.close()
    print("done", flush=True)
    """
)


def snapshots(start, stop, d=D):
    """Reference rows start..stop-1, exactly as the writer makes them."""
    base = np.arange(d, dtype=np.float64)
    k = np.arange(start, stop, dtype=np.float64)[:, None]
    return ((base * 7919.0 + k * 104729.0) % 65521.0).astype(np.float32) * 0.5 - k.astype(
        np.float32
    )


class Writer:
    """The writer subprocess plus a thread collecting the lines it printed."""

    def __init__(self, path, durable=False, limit=10**9, mode="append"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(D), "1" if durable else "0", str(limit),
             mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()

    @property
    def returned(self):
        """Indices k whose append returned (and were printed)."""
        return [int(x) for x in self.lines if x.isdigit()]


def check_store(path, n_printed_upto):
    """Open the store after a crash and check the committed prefix; returns T."""
    with open_store(path) as s:
        t = len(s)
        # every snapshot whose append returned is there; at most two more (one returned but not
        # yet printed, one committed while its append had not returned)
        assert n_printed_upto <= t <= n_printed_upto + 2, (n_printed_upto, t)
        mm = s.as_memmap()
        for a in range(0, t, 2000):
            b = min(t, a + 2000)
            assert np.array_equal(mm[a:b], snapshots(a, b)), f"rows {a}..{b} differ"
        md = s.metadata
        assert s.steps.tolist() == [3 * k for k in range(t)]
        assert np.array_equal(md["loss"], 1.0 / (np.arange(t) + 1.0))
        assert [len(x) for x in md["tag"]] == [k % 13 for k in range(t)]
        assert s.meta == {"writer": "crash test"}
    return t


@pytest.mark.parametrize("mode", ["append", "parts"])
def test_sigkill_at_random_moments(tmp_path, mode):
    path = tmp_path / "run.fdstore"
    rng = np.random.default_rng(2024)
    committed = 0
    rounds = 0
    # round 0 kills during start-up (import, create); then kills while appending
    delays = (
        [("startup", rng.uniform(0.0, 0.6))]
        + [("append", d) for d in rng.uniform(0.0, 0.12, size=6)]
        + [("durable", 0.05)]
    )
    for kind, delay in delays:
        w = Writer(path, durable=(kind == "durable"), mode=mode)
        if kind == "startup":
            time.sleep(delay)
        else:
            assert w.ready.wait(60), "writer did not start"
            time.sleep(delay)
        w.kill()
        assert w.proc.returncode == -signal.SIGKILL, w.stderr
        assert "Traceback" not in w.stderr, w.stderr
        returned = w.returned
        if not os.path.exists(path / "manifest.json"):
            assert kind == "startup" and not returned
            # a crash during create leaves no store (at most a hidden temp folder)
            assert not path.exists() or not any(path.iterdir())
            continue
        rounds += 1
        # appends continue where the previous writer's committed prefix ended
        if returned:
            assert returned == list(range(returned[0], returned[-1] + 1))
            assert returned[0] == committed
        upto = returned[-1] + 1 if returned else committed
        committed = check_store(path, max(upto, committed))
    assert rounds >= 7
    assert committed > 0
    # appending resumes in this process, too, and a clean close leaves no torn tail
    with open_store(path, mode="a") as s:
        t = len(s)
        for k in range(t, t + 5):
            s.append(snapshots(k, k + 1)[0], step=3 * k, loss=1.0 / (k + 1), tag="x" * (k % 13))
    assert check_store(path, t + 5) == t + 5
    assert (path / "snapshots.bin").stat().st_size == (t + 5) * D * 4
    assert (path / "commits.bin").stat().st_size == (t + 5) * 32


def test_torn_tails_are_ignored_and_cut_on_resume(tmp_path):
    """What a crash can leave past the committed prefix: a partial row, metadata line, record."""
    path = tmp_path / "t"
    d = 64
    rows = snapshots(0, 6, d)
    with SnapshotStore.create(path, d) as s:
        for k in range(5):
            s.append(rows[k], step=k)
    with open(path / "snapshots.bin", "ab") as fh:
        fh.write(rows[5].tobytes()[:100])  # a torn row
    with open(path / "steps.jsonl", "ab") as fh:
        fh.write(b'{"step":5,"wall')  # a torn metadata line
    with open(path / "commits.bin", "ab") as fh:
        fh.write(b"FDC1\x00\x00\x00\x00\x06\x00\x00")  # a torn commit record
    with pytest.warns(StoreRecoveryWarning, match="torn commit record"):
        with open_store(path) as s:  # readers ignore the tail, naming it
            assert len(s) == 5 and np.array_equal(s[:], rows[:5])
            assert s.steps.tolist() == list(range(5))
    # a complete commit record whose checksum does not match is damage, not a torn tail
    with open(path / "commits.bin", "r+b") as fh:
        rec = bytearray(fh.read(32))  # record 0 as a template
        fh.seek(5 * 32)
        rec[8] = 6
        fh.write(bytes(rec))
        fh.truncate()
    with pytest.raises(StoreCorruptedError, match="commit record 5 of 6"):
        open_store(path)
    with pytest.warns(StoreRecoveryWarning, match="commit record 5 of 6"):
        with open_store(path, recover=True) as s:
            assert len(s) == 5
    with pytest.warns(StoreRecoveryWarning):
        with open_store(path, mode="a", recover=True) as s:  # cut the tail off, then append
            assert len(s) == 5
            assert (path / "snapshots.bin").stat().st_size == 5 * d * 4
            s.append(rows[5], step=5)
    with open_store(path) as s:
        assert np.array_equal(s[:], rows) and s.steps.tolist() == list(range(6))
        assert s.verify() == 6


def test_concurrent_reader_sees_consistent_prefix(tmp_path):
    path = tmp_path / "c"
    limit = 1500
    SnapshotStore.create(path, D, meta={"writer": "crash test"}).close()
    w = Writer(path, limit=limit)
    assert w.ready.wait(60)
    reader = open_store(path)
    seen = set()
    deadline = time.monotonic() + 60
    rng = np.random.default_rng(1)
    while time.monotonic() < deadline:
        t = reader.refresh()
        seen.add(t)
        if t:
            # the newest committed row and a random older one are complete and exact
            for k in {t - 1, int(rng.integers(0, t))}:
                assert np.array_equal(reader[k], snapshots(k, k + 1)[0]), k
            steps = reader.steps
            assert len(steps) == t and steps[-1] == 3 * (t - 1)
            blk = reader.column_block(D - 7, D)
            assert blk.shape == (t, 7) and np.array_equal(blk[-1], snapshots(t - 1, t)[0, -7:])
        if len(seen) % 10 == 0:
            with open_store(path) as fresh:  # a fresh open is consistent too
                n = len(fresh)
                assert n >= t and len(fresh.steps) == n
                assert np.array_equal(fresh[n - 1], snapshots(n - 1, n)[0])
        if t == limit:
            break
    reader.close()
    w.proc.wait(timeout=60)
    w.thread.join(timeout=30)
    assert w.proc.returncode == 0, w.proc.stderr.read()
    w.proc.stderr.close()
    w.proc.stdout.close()
    assert max(seen) == limit
    assert len(seen) > 5, "the reader should have seen the store grow"
