"""Reading a store's commit log: which snapshots are committed and intact, what is a torn tail
(a crash's leftovers, dropped with a warning) and what is damage (an error, or with
``recover=True`` the intact prefix and a warning).

See docs/store.md for the rules.
"""

from __future__ import annotations

import os
import zlib
from typing import NamedTuple

import numpy as np

from ._arrays import pread_all
from .format import MAGIC, RECORD_DTYPE, RECORD_SIZE

__all__ = ["CommitScan", "scan_commits"]


class CommitScan(NamedTuple):
    """What :func:`scan_commits` found past the snapshots already known.

    ``meta_ends`` and ``row_crcs`` cover the new intact snapshots; ``count`` is the total
    number of intact snapshots; ``n_records`` the number of full-length records in the commit
    file (``count`` < ``n_records`` when damage drops committed snapshots); ``damage`` describes
    the first damage (None when there is none) and ``torn`` a partial record at the end of the
    commit file (None when there is none).
    """

    count: int
    meta_ends: list[int]
    row_crcs: list[int]
    n_records: int
    damage: str | None
    torn: str | None


def scan_commits(
    fd_commits: int,
    fd_data: int,
    fd_meta: int,
    *,
    start: int,
    prev_meta_end: int,
    row_bytes: int,
    known_meta_ends: list[int],
    names: tuple[str, str, str],
) -> CommitScan:
    """Validate commit records ``start..`` and check the data and metadata files hold what they
    promise. ``names`` are the commit, data and metadata paths for messages."""
    cpath, dpath, mpath = names
    size = os.fstat(fd_commits).st_size
    n_full = size // RECORD_SIZE
    partial = size % RECORD_SIZE
    n_new = max(0, n_full - start)
    buf = pread_all(fd_commits, n_new * RECORD_SIZE, start * RECORD_SIZE) if n_new else b""
    n_new = len(buf) // RECORD_SIZE
    n_full = start + n_new
    damage = None
    torn = None
    good = n_new
    if n_new:
        recs = np.frombuffer(buf, dtype=RECORD_DTYPE, count=n_new)
        ok = (
            (recs["magic"] == MAGIC)
            & (recs["flags"] == 0)
            & (recs["count"] == np.arange(start + 1, start + n_new + 1, dtype=np.uint64))
        )
        ends = recs["meta_end"]
        # strictly increasing metadata ends, compared without overflow
        prev = np.concatenate([np.array([prev_meta_end], dtype=np.uint64), ends[:-1]])
        ok &= ends > prev
        ok &= ends < np.uint64(2**62)
        for i in np.flatnonzero(ok):
            head = buf[i * RECORD_SIZE : i * RECORD_SIZE + 28]
            if zlib.crc32(head) != int(recs["record_crc"][i]):
                ok[i] = False
                break
        good = n_new if ok.all() else int(np.argmin(ok))
        if good < n_new:
            damage = (
                f"{cpath}: commit record {start + good} of {n_full} is corrupt (bad magic, "
                f"count, metadata offset or checksum)"
            )
        new_ends = [int(e) for e in ends[:good]]
        new_crcs = [int(c) for c in recs["row_crc"][:good]]
    else:
        new_ends, new_crcs = [], []
    if partial and damage is None:
        torn = (
            f"{cpath} ends in a torn commit record ({partial} of {RECORD_SIZE} bytes at byte "
            f"{n_full * RECORD_SIZE}): snapshot {n_full} was being committed when its writer "
            f"stopped and is not part of the store"
        )
    count = start + good
    # the data and metadata files must hold what the records promise
    dsize = os.fstat(fd_data).st_size
    have = dsize // row_bytes
    if have < count:
        msg = (
            f"{dpath} holds {dsize} bytes = {have} complete snapshot(s) of {row_bytes} bytes, "
            f"but {cpath} commits {count} (the data file was truncated)"
        )
        damage = msg
        count = have
    msize = os.fstat(fd_meta).st_size
    all_ends = known_meta_ends[:start] + new_ends
    if count and all_ends[count - 1] > msize:
        fit = int(np.searchsorted(np.asarray(all_ends[:count], dtype=np.int64), msize, "right"))
        damage = (
            f"{mpath} holds {msize} bytes but {cpath} says snapshot {count - 1}'s metadata ends "
            f"at byte {all_ends[count - 1]} (the metadata file was truncated)"
        )
        count = fit
    n_keep = max(0, count - start)
    return CommitScan(count, new_ends[:n_keep], new_crcs[:n_keep], n_full, damage, torn)
