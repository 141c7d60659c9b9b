"""A stateful model of the store: append (all three paths), crash mid-append (torn tails),
reopen, damage the last commit record then recover, read; the store always equals the model."""

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from fractaldiff.io.store import (
    SnapshotStore,
    StoreCorruptedError,
    StoreRecoveryWarning,
    open_store,
)

D = 5
values = st.lists(st.floats(-1e6, 1e6, width=32), min_size=D, max_size=D)


class StoreModel(RuleBasedStateMachine):
    @initialize()
    def create(self):
        self.dir = Path(tempfile.mkdtemp(prefix="fd-stateful-"))
        self.path = self.dir / "s"
        self.w = SnapshotStore.create(self.path, D)
        self.rows: list[np.ndarray] = []
        self.steps: list[int] = []
        self.part = np.empty(D, np.float32)
        self.pw = None

    def _next_step(self):
        return (self.steps[-1] + 1) if self.steps else 0

    @rule(v=values, how=st.sampled_from(["append", "async", "parts"]))
    def append(self, v, how):
        row = np.array(v, dtype=np.float32)
        step = self._next_step()
        if how == "append":
            assert self.w.append(row, step=step) == len(self.rows)
        elif how == "async":
            assert self.w.append_async(row, step=step) == len(self.rows)
        else:
            if self.pw is None:
                self.pw = self.w.parts_writer([self.part])
            self.part[:] = row
            assert self.pw.append(step=step)[0] == len(self.rows)
        self.rows.append(row)
        self.steps.append(step)

    @rule(cut=st.integers(1, 31), row_bytes=st.integers(0, 4 * D), line=st.binary(max_size=9))
    def crash(self, cut, row_bytes, line):
        """The writer dies mid-append: whatever it had written past the committed prefix."""
        self.w.wait_async()
        self.w._release()  # no close: what a SIGKILL leaves
        with open(self.path / "snapshots.bin", "r+b") as fh:
            fh.seek(len(self.rows) * 4 * D)
            fh.write(b"\x7f" * row_bytes)
        with open(self.path / "steps.jsonl", "ab") as fh:
            fh.write(line)
        with open(self.path / "commits.bin", "ab") as fh:
            fh.write((b"FDC1" + bytes(28))[:cut])
        with pytest.warns(StoreRecoveryWarning, match="torn commit record"):
            self.w = open_store(self.path, "a")
        self.pw = None

    @rule()
    def reopen(self):
        self.w.close()
        self.w = open_store(self.path, "a")
        self.pw = None

    @precondition(lambda self: len(self.rows) > 0)
    @rule(byte=st.integers(0, 31))
    def damage_last_record_and_recover(self, byte):
        self.w.close()
        with open(self.path / "commits.bin", "r+b") as fh:
            fh.seek((len(self.rows) - 1) * 32 + byte)
            b = fh.read(1)[0]
            fh.seek((len(self.rows) - 1) * 32 + byte)
            fh.write(bytes([b ^ 0x10]))
        with pytest.raises(StoreCorruptedError, match=f"commit record {len(self.rows) - 1}"):
            open_store(self.path, "a")
        with pytest.warns(StoreRecoveryWarning, match="cutting off the rest"):
            self.w = open_store(self.path, "a", recover=True)
        self.rows.pop()
        self.steps.pop()
        self.pw = None

    @rule()
    def read(self):
        self.w.wait_async()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with open_store(self.path) as r:
                assert len(r) == len(self.rows)
                if self.rows:
                    assert np.array_equal(r[:], np.stack(self.rows))
                assert r.steps.tolist() == self.steps
                assert r.verify() == len(self.rows)

    def teardown(self):
        try:
            self.w.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(
    max_examples=30, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
