"""One writer at a time, whatever happens to writer.lock: the lock is an flock on the store's
directory itself."""

import os

import numpy as np
import pytest
from faultkit import make_store, python

from fractaldiff.io.store import StoreLockedError, open_store

SECOND_WRITER = """
import sys
import numpy as np
import fractaldiff as fd
try:
    w = fd.open_store(sys.argv[1], "a")
except fd.StoreLockedError as exc:
    print("locked", flush=True)
else:
    w.append(np.full(w.n_params, -1.0, np.float32), step=10**6)
    print("appended", flush=True)
"""


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_deleting_writer_lock_does_not_let_a_second_writer_in(tmp_path, how):
    path = tmp_path / "s"
    data = make_store(path, 10)
    w = open_store(path, "a")
    (path / "writer.lock").unlink()
    if how == "replaced":
        (path / "writer.lock").write_bytes(b"")
    p = python(SECOND_WRITER, path)
    assert p.stdout.strip() == "locked", p.stderr
    with pytest.raises(StoreLockedError, match="already open for appending"):
        open_store(path, "a")  # in this process, too
    w.append(data[0], step=10)
    w.close()
    with open_store(path) as r:  # nothing overwritten
        assert len(r) == 11 and np.array_equal(r[:10], data) and r.verify() == 11
    p = python(SECOND_WRITER, path)  # the writer is gone: the lock is free again
    assert p.stdout.strip() == "appended", p.stderr


def test_lock_is_released_on_close_and_on_failed_open(tmp_path):
    path = tmp_path / "l"
    make_store(path, 2)
    open_store(path, "a").close()
    good = (path / "snapshots.bin").stat()
    os.link(path / "snapshots.bin", tmp_path / "extra-link")  # makes mode "a" fail
    with pytest.raises(Exception, match="hard links"):
        open_store(path, "a")
    os.unlink(tmp_path / "extra-link")
    open_store(path, "a").close()  # the failed open did not keep the lock
    assert (path / "snapshots.bin").stat().st_size == good.st_size
