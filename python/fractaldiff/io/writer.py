"""The store's append paths behind one interface.

Every append writes a prepared snapshot in the same order: the row at its fixed offset, its
metadata line, then its 32-byte commit record (fsyncs between them when durable). What differs
is where the row comes from and which thread writes it:

* :class:`DirectPath`: one compiled call on the calling thread, the row from one array
  (large rows: the write and the checksum pass overlap on two threads inside the call);
* :class:`QueuedPath`: a compiled background thread, in submission order, results collected
  later (``SnapshotStore.append_async``);
* :class:`PartsPath`: one compiled call, the row gathered by a vectored write from several
  arrays where they are (``SnapshotStore.parts_writer``).

:class:`SnapshotStore` owns the bookkeeping (positions, committed count, last step) and hands
each path a :class:`Slot` saying where the snapshot goes; each path returns :class:`Written`
results. A store writes only on little-endian machines (the format is little-endian).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "NATIVE_APPEND",
    "AppendPath",
    "DirectPath",
    "PartsPath",
    "QueuedPath",
    "Slot",
    "StoreFiles",
    "Written",
]

#: Compiled appends write the little-endian record layout with native integers.
NATIVE_APPEND = sys.byteorder == "little"


class StoreFiles(NamedTuple):
    """The open descriptors an append writes to, and how."""

    data: int
    meta: int
    commits: int
    checksum: bool
    durable: bool


class Slot(NamedTuple):
    """Where snapshot ``t`` goes: its row, metadata line and commit record offsets."""

    t: int
    row_offset: int
    meta_offset: int
    meta_end: int
    commit_offset: int

    @property
    def count(self) -> int:
        """The count its commit record holds."""
        return self.t + 1


class Written(NamedTuple):
    """Outcome of one append: ``errno`` 0 on success (-1: not attempted after an earlier
    failure), ``stage`` 1 row, 2 metadata, 3 commit record, 4 sync."""

    t: int
    row_crc: int
    n_nonfinite: int
    errno: int
    stage: int


class AppendPath(ABC):
    """One way of writing prepared snapshots (see the module docstring)."""

    #: True when :meth:`write` queues the snapshot and results come from :meth:`collect`.
    queued: bool = False

    @abstractmethod
    def write(self, slot: Slot, line: bytes, row: np.ndarray | None,
              allow_nonfinite: bool) -> Written | None:
        """Write one snapshot; returns its result, or None when queued."""

    def collect(self, wait: bool = False) -> list[Written]:
        """Results of queued snapshots finished since the last call (all of them if ``wait``)."""
        return []

    def pending(self) -> int:
        """Snapshots written or queued whose results were not collected yet."""
        return 0

    def close(self) -> None:  # noqa: B027 - most paths hold nothing to release
        """Finish queued work and release resources."""


def _core() -> Any:
    from .. import _core

    return _core


class DirectPath(AppendPath):
    """Synchronous append of a row held in one C-contiguous array."""

    def __init__(self, files: StoreFiles) -> None:
        self.files = files
        self._core = _core()

    def write(self, slot: Slot, line: bytes, row: np.ndarray | None,
              allow_nonfinite: bool) -> Written:
        f = self.files
        crc, n_bad, err, stage = self._core.store_append(
            f.data, row, slot.row_offset, f.meta, line, slot.meta_offset, f.commits,
            slot.commit_offset, slot.count, slot.meta_end, f.checksum, allow_nonfinite, f.durable,
        )
        return Written(slot.t, crc, n_bad, err, stage)


class QueuedPath(AppendPath):
    """Appends done in order by a compiled background thread that never holds the GIL.

    NaN/Inf values are stored and counted, never refused. The row arrays must stay unchanged
    until their results are collected (the writer keeps them alive).
    """

    queued = True

    def __init__(self, files: StoreFiles, allocated: int) -> None:
        self.files = files
        self._writer = _core().AppendWriter(files.data, files.meta, files.commits,
                                            files.checksum, files.durable, allocated)

    def write(self, slot: Slot, line: bytes, row: np.ndarray | None,
              allow_nonfinite: bool) -> None:
        self._writer.submit(row, slot.row_offset, line, slot.meta_offset, slot.commit_offset,
                            slot.count, slot.meta_end, slot.t)
        return None

    def collect(self, wait: bool = False) -> list[Written]:
        if wait:
            self._writer.wait()
        return [Written(*r) for r in self._writer.collect()]

    def pending(self) -> int:
        return int(self._writer.pending())

    def close(self) -> None:
        self._writer.wait()


class PartsPath(AppendPath):
    """Synchronous append of a row held in several arrays, written from their memory with one
    vectored write (no gathered copy); NaN/Inf values are stored, counted and flagged in the
    metadata line."""

    def __init__(self, files: StoreFiles, parts: list[np.ndarray]) -> None:
        self.files = files
        self._native = _core().PartsAppender(files.data, files.meta, files.commits, list(parts),
                                             files.checksum, files.durable)

    def write(self, slot: Slot, line: bytes, row: np.ndarray | None,
              allow_nonfinite: bool) -> Written:
        crc, n_bad, err, stage = self._native.append(
            slot.row_offset, line, slot.meta_offset, slot.commit_offset, slot.count,
            slot.meta_end,
        )
        return Written(slot.t, crc, n_bad, err, stage)

    def digest(self) -> tuple[int, int, int]:
        """(fd64 checksum, NaN/Inf count, first index or -1) of the parts' current values."""
        return tuple(int(v) for v in self._native.digest())  # type: ignore[return-value]
