"""Write errors in the middle of appending (a file-size limit: EFBIG, the same code path as a
full disk's ENOSPC): every append path reports OSError, the store keeps exactly the snapshots
whose append returned, and appending goes on once there is room."""

import numpy as np
import pytest
from faultkit import python, rows_for

from fractaldiff.io.store import open_store

WRITER = """
import resource, signal, sys
import numpy as np
import fractaldiff as fd
path, how, d = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = np.arange(d, dtype=np.float64)
rows = lambda k: (((base * 7919.0 + k * 104729.0) % 65521.0) * 0.5 - k).astype(np.float32)
s = fd.SnapshotStore.create(path, d)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
limit = 3 * d * 4 + 2000
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # soft limit only
part = np.empty(d, np.float32)
pw = s.parts_writer([part])
done = 0
try:
    for k in range(100):
        if how == "append":
            s.append(rows(k), step=k)
        elif how == "parts":
            part[:] = rows(k)
            pw.append(step=k)
        else:
            s.append_async(rows(k).copy(), step=k)
            s.wait_async()
        done = k + 1
except OSError as exc:
    print("error", exc.errno, done, flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
s.append(rows(done), step=done)  # room again: the store goes on
s.close()
print("ok", done, flush=True)
"""


@pytest.mark.parametrize("how", ["append", "parts", "async"])
def test_file_size_limit_mid_run(tmp_path, how):
    d = 2000
    path = tmp_path / "s"
    p = python(WRITER, path, how, d)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0].startswith("error 27 "), p.stdout  # EFBIG
    done = int(lines[0].split()[2])
    assert 1 <= done <= 3
    assert lines[1] == f"ok {done}"
    with open_store(path) as r:
        assert len(r) == done + 1
        assert np.array_equal(r[:], rows_for(done + 1, d))
        assert r.steps.tolist() == list(range(done + 1)) and r.verify() == done + 1
