"""The commit log's tail: a torn final record (a crash) is dropped with a warning naming it; a
full-length record that fails its checks is damage (an error unless recover=True), also when
it is the last one; the same for the files the records point into."""

import json
import os

import numpy as np
import pytest
from faultkit import D, flip_byte, make_store

from fractaldiff.io.store import StoreCorruptedError, StoreRecoveryWarning, open_store


def test_damaged_last_record_is_an_error_not_a_silent_drop(tmp_path):
    path = tmp_path / "s"
    data = make_store(path, 50)
    flip_byte(path / "commits.bin", 49 * 32 + 24)  # the row checksum field of the last record
    sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    with pytest.raises(StoreCorruptedError, match=r"commit record 49 of 50 is corrupt"):
        open_store(path)
    with pytest.raises(StoreCorruptedError, match=r"Snapshots 0\.\.48 are intact.*recover=True"):
        open_store(path, "a")
    assert {p.name: p.stat().st_size for p in path.iterdir()} == sizes  # nothing was cut
    with pytest.warns(StoreRecoveryWarning, match="commit record 49 of 50.*49 intact"):
        with open_store(path, recover=True) as r:
            assert len(r) == 49 and np.array_equal(r[:], data[:49])
    with pytest.warns(StoreRecoveryWarning, match="cutting off the rest"):
        with open_store(path, "a", recover=True) as w:
            assert len(w) == 49
            w.append(data[49], step=49)
    with open_store(path) as r:
        assert np.array_equal(r[:], data) and r.verify() == 50


@pytest.mark.parametrize("offset,what", [(0, "magic"), (8, "count"), (16, "metadata end"),
                                         (28, "record checksum")])
def test_every_field_of_the_last_record_is_checked(tmp_path, offset, what):
    path = tmp_path / "f"
    make_store(path, 5)
    flip_byte(path / "commits.bin", 4 * 32 + offset, 0x01)
    with pytest.raises(StoreCorruptedError, match="commit record 4 of 5"):
        open_store(path)


def test_torn_final_record_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "t"
    data = make_store(path, 8)
    with open(path / "commits.bin", "ab") as fh:
        fh.write(b"FDC1\x00\x00\x00\x00\x09")  # a crash while the 9th record was written
    with pytest.warns(StoreRecoveryWarning, match=r"commits.bin ends in a torn commit record "
                                                  r"\(9 of 32 bytes at byte 256\): snapshot 8"):
        with open_store(path) as r:
            assert len(r) == 8 and np.array_equal(r[:], data)
    with pytest.warns(StoreRecoveryWarning, match="torn.*cut off"):
        open_store(path, "a").close()
    assert (path / "commits.bin").stat().st_size == 8 * 32
    with open_store(path) as r:  # clean now: no warning
        assert len(r) == 8


def test_truncated_data_or_metadata_under_the_last_record(tmp_path):
    path = tmp_path / "d"
    make_store(path, 6)
    os.truncate(path / "snapshots.bin", 6 * D * 4 - 1)
    with pytest.raises(StoreCorruptedError, match="snapshots.bin .* commits 6"):
        open_store(path)
    with pytest.warns(StoreRecoveryWarning):
        with open_store(path, recover=True) as r:
            assert len(r) == 5
    path = tmp_path / "m"
    make_store(path, 6)
    os.truncate(path / "steps.jsonl", (path / "steps.jsonl").stat().st_size - 1)
    with pytest.raises(StoreCorruptedError, match="steps.jsonl holds .* snapshot 5's metadata"):
        open_store(path)


@pytest.mark.parametrize("step", ['"7"', "7.5", "true", str(2**70), "null"])
def test_step_field_of_wrong_type(tmp_path, step):
    path = tmp_path / "st"
    make_store(path, 3)
    lines = (path / "steps.jsonl").read_bytes().split(b"\n")
    rec = json.loads(lines[2])
    rec["step"] = "@@"
    rec.pop("wall_time")  # room for the longer values
    new = json.dumps(rec, separators=(",", ":")).replace('"@@"', step).encode()
    # keep the line's length so the commit records still point to line ends
    pad = len(lines[2]) - len(new)
    if pad < 0:
        pytest.skip("replacement longer than the line")
    new = new[:-1] + b" " * pad + b"}"
    lines[2] = new
    (path / "steps.jsonl").write_bytes(b"\n".join(lines))
    with open_store(path) as r:
        with pytest.raises(StoreCorruptedError, match="snapshot 2 has step .* not an int64"):
            _ = r.steps
        with pytest.raises(StoreCorruptedError, match="snapshot 2 has step"):
            r.verify()
    with pytest.raises(StoreCorruptedError, match="snapshot 2 has step"):
        open_store(path, "a")
