"""SnapshotStore: round trips, slicing against numpy, metadata, layout, resume, bad input."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractaldiff import _core
from fractaldiff.io.store import (
    LayoutEntry,
    ParameterLayout,
    SnapshotStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreRecoveryWarning,
    is_store,
    open_store,
)

DTYPES = [np.float16, np.float32, np.float64]


def make_store(path, rows, dtype=np.float32, **kw):
    s = SnapshotStore.create(path, rows.shape[1], dtype=dtype, **kw)
    for t, r in enumerate(rows):
        s.append(r, step=10 * t, loss=float(1.0 / (t + 1)), epoch=t // 3)
    return s


def file_sizes(path):
    return {p.name: p.stat().st_size for p in Path(path).iterdir()}


@pytest.fixture
def rows(rng):
    return rng.standard_normal((9, 17))


# --- round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_bit_exact(tmp_path, rows, dtype):
    path = tmp_path / "run.fdstore"
    with make_store(path, rows, dtype=dtype) as s:
        assert s.shape == rows.shape and len(s) == 9
    ref = rows.astype(dtype)
    with open_store(path) as s:
        assert s.shape == (9, 17)
        assert s.dtype == np.dtype(dtype)
        assert s.ndim == 2 and s.size == ref.size and s.nbytes == ref.nbytes
        got = np.asarray(s)
        assert got.dtype == np.dtype(dtype)
        assert got.tobytes() == ref.tobytes()
        assert np.array_equal(s.as_memmap(), ref)
        for t, row in enumerate(s):
            assert np.array_equal(row, ref[t])
    raw = np.fromfile(path / "snapshots.bin", dtype=np.dtype(dtype).newbyteorder("<"))
    assert np.array_equal(raw.reshape(9, 17), ref)  # documented raw layout


@pytest.mark.parametrize(
    "key",
    [
        0,
        -1,
        5,
        slice(2, 7),
        slice(None, None, -2),
        (slice(None), slice(3, 11)),
        (slice(1, 8), slice(2, 5)),
        (slice(None), [4, 0, 16, 4]),
        ([0, 8, 3], slice(None)),
        (2, 3),
        (-1, -1),
        (Ellipsis, 3),
        (4, Ellipsis),
        (slice(None, None, 3), slice(1, None, 4)),
        np.array([True, False] * 4 + [True]),
        (slice(None), np.arange(17) % 3 == 0),
    ],
)
def test_slicing_matches_numpy(tmp_path, rows, key):
    ref = rows.astype(np.float32)
    with make_store(tmp_path / "s", rows) as s:
        got = s[key]
        want = ref[key]
        assert np.shape(got) == np.shape(want)
        assert np.array_equal(got, want)
        if isinstance(got, np.ndarray):
            assert type(got) is np.ndarray  # a copy, not a memmap
            assert got.flags.writeable


def test_index_errors(tmp_path, rows):
    with make_store(tmp_path / "s", rows) as s:
        with pytest.raises(IndexError):
            s[9]
        with pytest.raises(IndexError):
            s[0, 17]
        with pytest.raises(IndexError):
            s[0, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_block(tmp_path, rows, dtype):
    ref = rows.astype(dtype)
    with make_store(tmp_path / "s", rows, dtype=dtype) as s:
        for a, b in [(0, 17), (0, 1), (3, 9), (16, 17), (5, 5)]:
            blk = s.column_block(a, b)
            assert blk.shape == (9, b - a) and blk.dtype == np.dtype(dtype)
            assert blk.flags.c_contiguous
            assert np.array_equal(blk, ref[:, a:b])
        out = np.empty((9, 4), dtype=dtype)
        assert s.column_block(2, 6, out=out) is out
        assert np.array_equal(out, ref[:, 2:6])
        blocks = list(s.column_blocks(5))
        assert [a for a, _ in blocks] == [0, 5, 10, 15]
        assert np.array_equal(np.hstack([b for _, b in blocks]), ref)


def test_column_block_bad_arguments(tmp_path, rows):
    with make_store(tmp_path / "s", rows) as s:
        with pytest.raises(IndexError, match="start=5, stop=3"):
            s.column_block(5, 3)
        with pytest.raises(IndexError, match="stop=18"):
            s.column_block(0, 18)
        with pytest.raises(IndexError, match="start=-1"):
            s.column_block(-1, 3)
        with pytest.raises(TypeError, match="start must be an integer"):
            s.column_block(1.0, 3)
        with pytest.raises(ValueError, match="out has shape"):
            s.column_block(0, 3, out=np.empty((9, 4), np.float32))
        with pytest.raises(TypeError, match="out has dtype"):
            s.column_block(0, 3, out=np.empty((9, 3), np.float64))
        with pytest.raises(ValueError, match="width must be >= 1"):
            list(s.column_blocks(0))


def test_memmap_is_read_only_zero_copy(tmp_path, rows):
    with make_store(tmp_path / "s", rows) as s:
        mm = s.as_memmap()
        assert isinstance(mm, np.memmap) and mm.shape == (9, 17)
        assert not mm.flags.writeable
        with pytest.raises(ValueError):
            mm[0, 0] = 1.0
        view = mm[:, 3:8]  # what a streaming driver hands to a kernel: no copy
        assert np.shares_memory(view, mm)
        s.append(np.ones(17))
        assert mm.shape == (9, 17)  # an old view keeps its prefix
        assert s.as_memmap().shape == (10, 17)
    assert np.array_equal(mm, rows.astype(np.float32))  # valid after close


def test_empty_store(tmp_path):
    with SnapshotStore.create(tmp_path / "e", 4) as s:
        assert s.shape == (0, 4) and len(s) == 0
        assert s.column_block(0, 4).shape == (0, 4)
        assert s.as_memmap().shape == (0, 4)
        assert s.steps.shape == (0,) and s.steps.dtype == np.int64
        assert s.metadata == {} and s.records == []
        assert np.asarray(s).shape == (0, 4)
    with open_store(tmp_path / "e") as s:
        assert s.shape == (0, 4)


# --- metadata -----------------------------------------------------------------------------------


def test_step_metadata(tmp_path):
    with SnapshotStore.create(tmp_path / "m", 3, meta={"model": "mlp", "seed": 7}) as s:
        s.append(np.zeros(3), epoch=0, lr=0.1, batch_size=32, loss=2.5, wall_time=100.0)
        s.append(np.ones(3), epoch=np.int64(0), lr=np.float32(0.05), loss=float("nan"))
        s.append(np.ones(3), step=7, extra={"grad_norm": [1, 2]}, note="warm", flag=True)
        assert s.append(np.ones(3)) == 3
    with open_store(tmp_path / "m") as s:
        assert s.steps.tolist() == [0, 1, 7, 8]
        assert s.steps.dtype == np.int64
        md = s.metadata
        assert list(md)[:5] == ["step", "epoch", "lr", "batch_size", "loss"]
        assert md["epoch"].dtype == np.float64 and np.isnan(md["epoch"][2])
        assert md["epoch"][:2].tolist() == [0.0, 0.0]
        assert md["lr"][:2].tolist() == [0.1, pytest.approx(0.05)]
        assert md["loss"][0] == 2.5 and np.isnan(md["loss"][1])
        assert md["wall_time"][0] == 100.0 and md["wall_time"][1] > 1e9  # default time.time()
        assert md["note"].dtype == object and md["note"].tolist() == [None, None, "warm", None]
        assert md["extra"][2] == {"grad_norm": [1, 2]}
        assert s.records[2]["flag"] is True
        assert s.meta == {"model": "mlp", "seed": 7}
        meta = s.meta
        meta["model"] = "changed"
        assert s.meta["model"] == "mlp"  # a copy


def test_metadata_columns_types(tmp_path):
    with SnapshotStore.create(tmp_path / "m", 2) as s:
        for k in range(3):
            s.append(np.zeros(2), ok=bool(k % 2), n=k, x=k / 2)
        md = s.metadata
        assert md["ok"].dtype == bool and md["n"].dtype == np.int64
        assert md["x"].dtype == np.float64


def test_update_meta(tmp_path):
    with SnapshotStore.create(tmp_path / "m", 2, meta={"a": 1}) as s:
        reader = open_store(tmp_path / "m")
        s.update_meta(final_accuracy=0.93, a=2)
        assert s.meta == {"a": 2, "final_accuracy": 0.93}
        assert reader.meta == {"a": 1}
        reader.refresh()
        assert reader.meta == {"a": 2, "final_accuracy": 0.93}
        reader.close()
        with pytest.raises(TypeError, match="meta bad"):
            s.update_meta(bad=object())
    with open_store(tmp_path / "m") as s:
        assert s.meta["final_accuracy"] == 0.93
        with pytest.raises(ValueError, match="read-only"):
            s.update_meta(x=1)


def test_torch_values(tmp_path):
    torch = pytest.importorskip("torch")
    with SnapshotStore.create(tmp_path / "t", 5) as s:
        v = torch.arange(5, dtype=torch.bfloat16) / 3
        s.append(v, loss=torch.tensor(0.5), step=torch.tensor(4))
        s.append(torch.ones(5, dtype=torch.float64).requires_grad_())
        assert np.array_equal(s[0], v.float().numpy())
        assert s.steps.tolist() == [4, 5]
        assert s.metadata["loss"][0] == 0.5
        with pytest.raises(TypeError, match="floating-point"):
            s.append(torch.arange(5))


# --- resume / modes / lock ----------------------------------------------------------------------


def test_resume_after_close(tmp_path, rows):
    path = tmp_path / "r"
    make_store(path, rows[:4]).close()
    with open_store(path, mode="a") as s:
        assert s.shape == (4, 17)
        for t in range(4, 9):
            assert s.append(rows[t], step=10 * t) == t
    with open_store(path, mode="a") as s:
        s.append(rows[0])  # default step: previous + 1
    with open_store(path) as s:
        assert np.array_equal(s[:9], rows.astype(np.float32))
        assert s.steps.tolist() == [10 * t for t in range(9)] + [81]


def test_modes_and_lock(tmp_path, rows):
    path = tmp_path / "l"
    w = make_store(path, rows[:2])
    with pytest.raises(StoreLockedError, match="already open for appending"):
        open_store(path, mode="a")
    r = open_store(path)  # readers need no lock
    with pytest.raises(ValueError, match="read-only.*mode='a'"):
        r.append(rows[0])
    r.close()
    w.close()
    open_store(path, mode="a").close()  # the lock is free again
    with pytest.raises(ValueError, match="mode must be 'r'"):
        open_store(path, mode="w")
    assert "closed" in repr(w)
    with pytest.raises(ValueError, match="closed"):
        w[0]
    with pytest.raises(ValueError, match="closed"):
        w.append(rows[0])
    w.close()  # idempotent


def test_reader_refresh(tmp_path, rows):
    path = tmp_path / "f"
    w = make_store(path, rows[:3])
    r = open_store(path)
    w.append(rows[3], step=30)
    assert r.shape == (3, 17)  # fixed between refreshes
    assert r.refresh() == 4
    assert np.array_equal(r[3], rows[3].astype(np.float32))
    assert r.steps.tolist() == [0, 10, 20, 30]
    w.close()
    r.close()


def test_create_errors(tmp_path):
    with pytest.raises(ValueError, match="n_params must be >= 1"):
        SnapshotStore.create(tmp_path / "a", 0)
    with pytest.raises(TypeError, match="n_params must be an integer"):
        SnapshotStore.create(tmp_path / "a", 3.0)
    with pytest.raises(TypeError, match="dtype must be one of"):
        SnapshotStore.create(tmp_path / "a", 3, dtype="int32")
    with pytest.raises(TypeError, match="dtype must be one of"):
        SnapshotStore.create(tmp_path / "a", 3, dtype="complex64")
    with pytest.raises(TypeError, match="meta must be a mapping"):
        SnapshotStore.create(tmp_path / "a", 3, meta=[1, 2])
    with pytest.raises(TypeError, match="meta must be JSON"):
        SnapshotStore.create(tmp_path / "a", 3, meta={"f": object()})
    with pytest.raises(TypeError, match="NaN"):
        SnapshotStore.create(tmp_path / "a", 3, meta={"f": float("nan")})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SnapshotStore.create(tmp_path / "no" / "a", 3)
    assert not (tmp_path / "a").exists()
    SnapshotStore.create(tmp_path / "a", 3).close()
    with pytest.raises(FileExistsError, match="already exists.*mode='a'"):
        SnapshotStore.create(tmp_path / "a", 3)
    (tmp_path / "empty").mkdir()
    SnapshotStore.create(tmp_path / "empty", 3).close()  # an empty folder is fine
    assert is_store(tmp_path / "empty") and not is_store(tmp_path)
    assert not [p for p in tmp_path.iterdir() if "creating" in p.name]  # no temp leftovers


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(tmp_path / "nothing")
    (tmp_path / "dir").mkdir()
    with pytest.raises(FileNotFoundError, match="not a snapshot store.*manifest.json"):
        open_store(tmp_path / "dir")


# --- layout -------------------------------------------------------------------------------------


def test_layout_round_trip(tmp_path):
    spec = [("fc1.weight", (4, 3)), ("fc1.bias", (4,)), ("fc2.weight", (2, 4)), ("fc2.bias", 2)]
    with SnapshotStore.create(tmp_path / "l", 26, layout=spec) as s:
        lay = s.layout
    with open_store(tmp_path / "l") as s:
        assert s.layout == lay
        assert s.layout.names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        e = s.layout["fc2.weight"]
        assert (e.offset, e.shape, e.size, e.stop) == (16, (2, 4), 8, 24)
        name, start, stop = e[:3]  # (name, start, stop) column ranges, as sources.py expects
        assert (name, start, stop) == ("fc2.weight", 16, 24)
        assert s.layout.slices() == {
            "fc1.weight": slice(0, 12),
            "fc1.bias": slice(12, 16),
            "fc2.weight": slice(16, 24),
            "fc2.bias": slice(24, 26),
        }
        assert s.layout.slices(by="module") == {"fc1": slice(0, 16), "fc2": slice(16, 26)}
        assert s.layout.ranges()[:2] == [("fc1.weight", 0, 12), ("fc1.bias", 12, 16)]
        assert json.loads((tmp_path / "l" / "manifest.json").read_text())["layout"][1] == {
            "name": "fc1.bias",
            "shape": [4],
            "offset": 12,
        }


def test_layout_from_state_dict_and_offsets():
    sd = {"a.w": np.zeros((2, 3), np.float16), "a.b": np.zeros(2, np.float32), "c": np.zeros(())}
    lay = ParameterLayout.from_spec(sd, n_params=9)
    assert [(e.name, e.offset, e.dtype) for e in lay] == [
        ("a.w", 0, "float16"),
        ("a.b", 6, "float32"),
        ("c", 8, "float64"),
    ]
    gaps = ParameterLayout.from_spec(
        [
            {"name": "x.w", "shape": [2], "offset": 10},
            {"name": "y", "shape": [3], "offset": 0},
            {"name": "x.b", "shape": [1], "offset": 4},
        ],
        n_params=12,
    )
    assert gaps.names == ["y", "x.b", "x.w"]  # ordered by offset
    mods = gaps.slices(by="module")
    assert np.array_equal(mods["x"], [4, 10, 11]) and mods["y"] == slice(0, 3)
    assert ParameterLayout.from_spec([LayoutEntry.of("q", (2,), 0)], 2)["q"].slice == slice(0, 2)
    assert "q" in ParameterLayout.from_spec({"q": 2}, 2)


@pytest.mark.parametrize(
    "spec,n,match",
    [
        ([("a", (2,)), ("b", (3,))], 6, "5 values in total but n_params=6"),
        ([("a", (2,)), ("a", (3,))], 5, "twice"),
        ([("a", (2,), 0), ("b", (3,), 1)], 5, "overlap"),
        ([("a", (2,), 0), ("b", (3,), 4)], 5, "past n_params=5"),
        ([("a", (2,), 0), ("b", (3,))], 5, "offset for every entry or for none"),
        ([("a", (-2,))], 5, "non-negative"),
        ([{"name": "a"}], 5, "needs keys 'name' and 'shape'"),
        ("abc", 5, "must be a mapping"),
        ([3], 5, "must be a LayoutEntry"),
    ],
)
def test_layout_errors(tmp_path, spec, n, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SnapshotStore.create(tmp_path / "x", n, layout=spec)
    assert not (tmp_path / "x").exists()


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector,exc,match",
    [
        (np.zeros(16), ValueError, "vector has 16 values but this store holds n_params=17"),
        (np.zeros(18), ValueError, "vector has 18 values"),
        (np.zeros((1, 17)), ValueError, r"vector must be 1-D .* shape \(1, 17\)"),
        (np.float64(1.0), ValueError, "vector must be 1-D .* 0-D"),
        (np.zeros(17, dtype=np.int64), TypeError, "vector must hold floating-point .* int64"),
        (np.zeros(17, dtype=bool), TypeError, "floating-point"),
        (np.zeros(17, dtype=np.complex64), TypeError, "floating-point"),
        (np.array(["a"] * 17), TypeError, "floating-point"),
        ([[1.0], [2.0, 3.0]], TypeError, "could not be converted"),
    ],
)
def test_append_bad_vector_leaves_store_untouched(tmp_path, rows, vector, exc, match):
    path = tmp_path / "b"
    s = make_store(path, rows[:3])
    before = file_sizes(path)
    with pytest.raises(exc, match=match):
        s.append(vector)
    assert file_sizes(path) == before and s.shape == (3, 17)
    s.append(rows[3], step=30)  # still usable
    s.close()
    with open_store(path) as r:
        assert np.array_equal(r[:], rows[:4].astype(np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_append_nonfinite(tmp_path, value, dtype):
    with SnapshotStore.create(tmp_path / "n", 6, dtype=dtype) as s:
        v = np.arange(6.0)
        v[4] = value
        v[5] = value
        before = file_sizes(tmp_path / "n")
        with pytest.raises(
            ValueError,
            match=r"2 non-finite value\(s\) .*first: vector\[4\] = "
            r".*allow_nonfinite=True",
        ):
            s.append(v)
        assert file_sizes(tmp_path / "n") == before and len(s) == 0
        s.append(v, allow_nonfinite=True)
        got = s[0]
        assert np.array_equal(got, v.astype(dtype), equal_nan=True)


def test_append_overflowing_cast(tmp_path):
    with SnapshotStore.create(tmp_path / "o", 3, dtype="float16") as s:
        with pytest.raises(
            ValueError, match=r"vector\[1\] = 1000000.0, too large for the store's dtype float16"
        ):
            s.append(np.array([1.0, 1e6, 2.0]))
        s.append(np.array([1.0, 2.0, 3.0], dtype=np.float64))  # other floats are cast
        assert s[0].tolist() == [1.0, 2.0, 3.0]


def test_append_bad_metadata(tmp_path):
    with SnapshotStore.create(tmp_path / "m", 2) as s:
        s.append(np.zeros(2), step=5)
        before = file_sizes(tmp_path / "m")
        with pytest.raises(ValueError, match="step=5 must be larger than the last .* 5"):
            s.append(np.zeros(2), step=5)
        with pytest.raises(ValueError, match="step=3 must be larger"):
            s.append(np.zeros(2), step=3)
        with pytest.raises(TypeError, match="step must be an integer"):
            s.append(np.zeros(2), step=6.0)
        with pytest.raises(TypeError, match="step must be an integer"):
            s.append(np.zeros(2), step=True)
        with pytest.raises(TypeError, match="metadata model must be JSON"):
            s.append(np.zeros(2), loss=1.0, model=object())
        assert file_sizes(tmp_path / "m") == before and len(s) == 1
        s.append(np.zeros(2), note="line\nbreak")  # escaped, one line per snapshot
    with open_store(tmp_path / "m") as s:
        assert s.records[1]["note"] == "line\nbreak" and s.steps.tolist() == [5, 6]


def test_to_zarr(tmp_path, rows):
    zarr = pytest.importorskip("zarr")
    with make_store(tmp_path / "z", rows, meta={"m": 1}, layout={"w": (17,)}) as s:
        z = s.to_zarr(tmp_path / "out.zarr", chunk_bytes=9 * 4 * 5)
        assert z.chunks == (9, 5)
    z = zarr.open_array(tmp_path / "out.zarr", mode="r")
    assert np.array_equal(z[:], rows.astype(np.float32))
    assert z.attrs["steps"] == [10 * t for t in range(9)]
    assert z.attrs["meta"] == {"m": 1} and z.attrs["layout"][0]["name"] == "w"


def test_verify_detects_flipped_bits(tmp_path, rows):
    path = tmp_path / "v"
    make_store(path, rows).close()
    with open_store(path) as s:
        assert s.verify() == 9
    with open(path / "snapshots.bin", "r+b") as fh:
        fh.seek(5 * 17 * 4 + 7)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x10]))
    with open_store(path) as s:
        assert s.verify(0, 5) == 5
        with pytest.raises(StoreCorruptedError, match=r"snapshots.bin: snapshot 5 .* checksum"):
            s.verify()


# --- damage (see also tests/faults/ for torn tails, hostile files, recovery) ------------------


def test_truncated_data_file(tmp_path, rows):
    path = tmp_path / "d"
    make_store(path, rows).close()
    os.truncate(path / "snapshots.bin", 6 * 17 * 4 + 10)
    with pytest.raises(
        StoreCorruptedError,
        match=r"snapshots.bin holds 418 bytes = 6 complete "
        r"snapshot.*commits.bin commits 9.*recover=True",
    ):
        open_store(path)
    with pytest.warns(StoreRecoveryWarning, match="6 intact snapshot"):
        s = open_store(path, recover=True)
    assert np.array_equal(s[:], rows[:6].astype(np.float32)) and len(s.steps) == 6
    s.close()
    with pytest.warns(StoreRecoveryWarning, match="cutting off the rest"):
        s = open_store(path, mode="a", recover=True)
    s.append(rows[6], step=60)
    s.close()
    with open_store(path) as s:  # healthy again
        assert np.array_equal(s[:], rows[:7].astype(np.float32))


def test_corrupt_commit_record(tmp_path, rows):
    path = tmp_path / "c"
    make_store(path, rows).close()
    with open(path / "commits.bin", "r+b") as fh:
        fh.seek(4 * 32 + 20)
        fh.write(b"\xff")
    with pytest.raises(
        StoreCorruptedError,
        match=r"commits.bin: commit record 4 of 9 is corrupt"
        r".*Snapshots 0..3 are intact",
    ):
        open_store(path)
    with pytest.warns(StoreRecoveryWarning):
        with open_store(path, recover=True) as s:
            assert np.array_equal(s[:], rows[:4].astype(np.float32))


def test_corrupt_metadata_keeps_data_readable(tmp_path, rows):
    path = tmp_path / "j"
    make_store(path, rows).close()
    text = (path / "steps.jsonl").read_bytes()
    lines = text.split(b"\n")
    lines[2] = b"#" * len(lines[2])
    (path / "steps.jsonl").write_bytes(b"\n".join(lines))
    with open_store(path) as s:
        assert np.array_equal(s[:], rows.astype(np.float32))  # every snapshot readable
        with pytest.raises(StoreCorruptedError, match=r"steps.jsonl: the metadata of snapshot 2"):
            _ = s.steps
    with pytest.warns(StoreRecoveryWarning, match="snapshot 2"):
        with open_store(path, recover=True) as s:
            assert s.records[2] == {} and s.records[3]["step"] == 30


def test_truncated_metadata_file(tmp_path, rows):
    path = tmp_path / "k"
    make_store(path, rows).close()
    size = (path / "steps.jsonl").stat().st_size
    os.truncate(path / "steps.jsonl", size - 5)
    with pytest.raises(StoreCorruptedError, match=r"steps.jsonl holds .* truncated"):
        open_store(path)
    with pytest.warns(StoreRecoveryWarning):
        with open_store(path, recover=True) as s:
            assert len(s) == 8


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json is not valid"),
        (lambda p: (p / "manifest.json").write_text("{}"), "does not describe a fractaldiff"),
        (lambda p: (p / "commits.bin").unlink(), "commits.bin is missing"),
        (lambda p: (p / "snapshots.bin").unlink(), "snapshots.bin is missing"),
    ],
)
def test_damaged_store_files(tmp_path, rows, damage, match):
    path = tmp_path / "x"
    make_store(path, rows).close()
    damage(path)
    with pytest.raises(StoreCorruptedError, match=match):
        open_store(path)


# --- property tests -----------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("reopen"), st.integers(0, 1)),
        st.tuples(st.just("read"), st.integers(0, 2**32 - 1)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, d=st.integers(1, 12), dtype=st.sampled_from(DTYPES))
def test_random_appends_and_reads_match_list_model(ops, d, dtype):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p"
        store = SnapshotStore.create(path, d, dtype=dtype)
        model: list[np.ndarray] = []
        steps: list[int] = []
        try:
            for op, arg in ops:
                rng = np.random.default_rng(arg)
                if op == "append":
                    if store.mode == "r":
                        store.close()
                        store = open_store(path, mode="a")
                    v = (rng.standard_normal(d) * 100).astype(dtype)
                    step = (steps[-1] if steps else -1) + int(rng.integers(1, 5))
                    assert store.append(v, step=step) == len(model)
                    model.append(v)
                    steps.append(step)
                elif op == "reopen":
                    store.close()
                    store = open_store(path, mode="a" if arg else "r")
                else:
                    ref = np.array(model, dtype=dtype).reshape(len(model), d)
                    assert store.shape == ref.shape
                    if len(model):
                        a, b = sorted(rng.integers(0, len(model) + 1, 2).tolist())
                        c, e = sorted(rng.integers(0, d + 1, 2).tolist())
                        assert store[a:b, c:e].tobytes() == ref[a:b, c:e].tobytes()
                        assert store.column_block(c, e).tobytes() == ref[:, c:e].tobytes()
                        t = int(rng.integers(-len(model), len(model)))
                        assert store[t].tobytes() == ref[t].tobytes()
                    assert store.steps.tolist() == steps
        finally:
            store.close()
        with open_store(path) as final:
            ref = np.array(model, dtype=dtype).reshape(len(model), d)
            assert np.asarray(final).tobytes() == ref.tobytes()
            assert final.steps.tolist() == steps


@pytest.mark.parametrize("stage", ["data", "meta", "commits"])
def test_failed_append_leaves_a_consistent_store(tmp_path, rows, stage):
    """An append whose row, metadata or commit-record write fails (here: the file descriptor
    is read-only; disk-full runs are in tests/faults) leaves the store as it was, and the
    next append goes on from there."""
    path = tmp_path / "i"
    s = make_store(path, rows[:3])
    name = {"data": "snapshots.bin", "meta": "steps.jsonl", "commits": "commits.bin"}[stage]
    good = s._fds[stage]
    s._fds[stage] = os.open(path / name, os.O_RDONLY)
    s._path = None  # the append path is rebuilt over the descriptors
    with pytest.raises(OSError, match=name):
        s.append(rows[3], step=30)
    os.close(s._fds[stage])
    s._fds[stage] = good
    s._path = None
    assert s.append(rows[4], step=40) == 3
    s.close()
    keep = [0, 1, 2, 4]
    with open_store(path) as r:
        assert np.array_equal(r[:], rows[keep].astype(np.float32))
        assert r.steps.tolist() == [10 * k for k in keep]
        assert r.verify() == len(keep)


def test_pickle_and_dask(tmp_path, rows):
    import pickle

    path = tmp_path / "p"
    w = make_store(path, rows[:5])
    clone = pickle.loads(pickle.dumps(w))  # a read-only view of the same 5 snapshots
    w.append(rows[5], step=50)
    assert clone.mode == "r" and clone.shape == (5, 17)
    assert np.array_equal(clone[:], rows[:5].astype(np.float32))
    assert clone.steps.tolist() == [0, 10, 20, 30, 40]
    clone.close()
    w.close()
    da = pytest.importorskip("dask.array")
    with open_store(path) as s:
        x = da.from_array(s, chunks=(-1, 4))
        assert np.array_equal(x.compute(), rows[:6].astype(np.float32))
        assert np.array_equal(
            x[1:4, 3:11].sum(axis=0).compute(), rows[1:4, 3:11].astype(np.float32).sum(axis=0)
        )


@pytest.mark.parametrize("d", [17, 300_000])  # small rows, and rows of over 1 MiB
def test_every_append_path_writes_the_same_store(tmp_path, rng, d):
    """append, append_async and parts_writer (one writer interface, three paths) produce
    identical files."""
    data = rng.standard_normal((4, d)).astype(np.float32)

    def write(path, how):
        with SnapshotStore.create(path, d) as s:
            part = np.empty(d, np.float32)
            pw = s.parts_writer([part[: d // 3], part[d // 3 :]])
            for t, r in enumerate(data):
                meta = dict(step=t, loss=0.5, wall_time=0.0, nonfinite=False)
                if how == "append":
                    s.append(r, **meta)
                elif how == "async":
                    s.append_async(r, **meta)
                else:
                    part[:] = r
                    pw.append(**meta)

    for how in ("append", "async", "parts"):
        write(tmp_path / how, how)
    for name in ("snapshots.bin", "commits.bin", "steps.jsonl"):
        ref = (tmp_path / "append" / name).read_bytes()
        for how in ("async", "parts"):
            assert (tmp_path / how / name).read_bytes() == ref, (how, name)
    with open_store(tmp_path / "parts") as r:
        assert r.verify() == len(data) and np.array_equal(r[:], data)


def test_native_append_reports_os_errors(tmp_path, rows):
    s = make_store(tmp_path / "e", rows[:2])
    os.close(s._fds["data"])
    s._fds["data"] = os.open(tmp_path / "e" / "snapshots.bin", os.O_RDONLY)  # not writable
    with pytest.raises(OSError, match="snapshots.bin"):
        s.append(rows[2], step=99)
    os.close(s._fds["data"])
    s._fds["data"] = os.open(tmp_path / "e" / "snapshots.bin", os.O_RDWR)
    assert s.append(rows[2], step=99) == 2  # the failed append left nothing behind
    s.close()
    with open_store(tmp_path / "e") as r:
        assert len(r) == 3 and r.verify() == 3


def test_append_async_in_order_with_reports(tmp_path, rows):
    """Queued appends land in order, reads wait for them, NaN rows are stored and flagged."""
    s = SnapshotStore.create(tmp_path / "a", rows.shape[1])
    data = rows.astype(np.float32)
    data[2, 3] = np.nan
    tokens = [s.append_async(data[t], step=t, loss=0.1 * t) for t in range(4)]
    assert tokens == [0, 1, 2, 3]
    s.append(data[4], step=4)  # a synchronous append waits for the queue first
    assert s.append_async(data[5], step=5) == 5
    reports = s.wait_async()
    assert [(t, step) for t, step, _ in reports] == [(t, t) for t in (0, 1, 2, 3, 5)]
    assert [n for _, _, n in reports] == [0, 0, 1, 0, 0]
    assert np.array_equal(s[:6], data[:6], equal_nan=True)
    assert s.records[2]["nonfinite"] is True and s.records[1]["nonfinite"] is False
    s.close()
    with open_store(tmp_path / "a") as r:
        assert len(r) == 6 and r.verify() == 6
        assert r.steps.tolist() == [0, 1, 2, 3, 4, 5]


def test_append_async_on_a_read_only_store_is_refused(tmp_path, rows):
    make_store(tmp_path / "r", rows[:2]).close()
    with open_store(tmp_path / "r") as r, pytest.raises(ValueError, match="read-only"):
        r.append_async(rows[0], step=99)


FSIZE_SCRIPT = """
import resource, signal, sys
import numpy as np
import fractaldiff as fd

path = sys.argv[1]
rows = np.arange(6 * 1000, dtype=np.float32).reshape(6, 1000)
s = fd.SnapshotStore.create(path, 1000)
s.append_async(rows[0], step=0)
s.wait_async()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 * 4000 + 100, hard))  # room for one row only
s.append_async(rows[1], step=1)
s.append_async(rows[2], step=2)
try:
    s.wait_async()
except OSError as exc:
    print("ERROR", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print("LEN", len(s))
s.append_async(rows[1], step=1)
s.wait_async()
s.close()
with fd.open_store(path) as r:
    print("FINAL", len(r), r.verify(), bool(np.array_equal(r[:], rows[:2])))
"""


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="POSIX resource limits")
def test_append_async_write_error_then_recovery(tmp_path):
    """A failing write (file size limit: like a full disk) is reported with the snapshot and
    file; the store keeps what was written before it, and appending goes on."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERROR") and "snapshot 1" in lines[0]
    assert lines[1] == "LEN 1"
    assert lines[2] == "FINAL 2 2 True"


def _split(row, n_parts, rng):
    """``row`` as ``n_parts`` separate C-contiguous arrays (some possibly empty)."""
    cuts = np.sort(rng.integers(0, row.size + 1, size=n_parts - 1))
    return [np.array(p, copy=True) for p in np.split(row, cuts)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_parts", [1, 3, 100])  # 100: more than one pwritev batch
def test_parts_writer_writes_what_append_writes(tmp_path, rng, dtype, n_parts):
    """Rows written from several arrays are the rows append writes: same bytes, same
    checksums in the commit log, the metadata append_async writes (with ``nonfinite``)."""
    d = 70_000 if n_parts == 100 else 5_000  # 70k float64 rows span several 64 KiB chunks
    data = rng.standard_normal((4, d)).astype(dtype)
    data[2, 7] = np.nan
    with SnapshotStore.create(tmp_path / "a", d, dtype=dtype) as a:
        for t, r in enumerate(data):
            a.append(r, step=3 * t, loss=0.5, wall_time=0.0, nonfinite=bool(t == 2),
                     allow_nonfinite=True)
    with SnapshotStore.create(tmp_path / "b", d, dtype=dtype) as b:
        parts = _split(data[0].copy(), n_parts, rng)
        w = b.parts_writer(parts)
        for t, r in enumerate(data):
            off = 0
            for p in parts:  # update the arrays in place, as training updates parameters
                p[:] = r[off: off + p.size]
                off += p.size
            assert w.digest() == tuple(int(v) for v in _core.digest_row(r, 1))
            assert w.append(step=3 * t, loss=0.5, wall_time=0.0) == (t, int(t == 2))
    assert (tmp_path / "a" / "snapshots.bin").read_bytes() == \
        (tmp_path / "b" / "snapshots.bin").read_bytes()
    with open_store(tmp_path / "a") as ra, open_store(tmp_path / "b") as rb:
        assert ra._row_crcs == rb._row_crcs and len(set(ra._row_crcs)) == 4
        assert ra.records == rb.records  # the flipped marker keeps the line's length
    with open_store(tmp_path / "b") as r:
        assert r.verify() == 4 and r.steps.tolist() == [0, 3, 6, 9]
        assert r.records[2]["nonfinite"] is True and r.records[1]["nonfinite"] is False
        assert np.array_equal(r[:], data, equal_nan=True)


def test_parts_writer_line_template_and_resume(tmp_path, rng):
    """append_line takes a ready metadata line; the NaN marker is flipped in place; appending
    goes on after reopening, through either path."""
    data = rng.standard_normal((3, 40)).astype(np.float32)
    with SnapshotStore.create(tmp_path / "l", 40) as s:
        parts = [data[0, :10].copy(), data[0, 10:].copy()]
        w = s.parts_writer(parts)
        assert w.append_line(b'{"step":5,"lr":0.1,"nonfinite":false}\n', 5) == (0, 0)
        parts[1][3] = np.inf
        assert w.append_line(b'{"step":6,"nonfinite":false,"x":1}\n', 6) == (1, 1)
        with pytest.raises(ValueError, match="larger than the last snapshot's step 6"):
            w.append_line(b'{"step":6,"nonfinite":false}\n', 6)
        assert len(s) == 2
        s.append(data[2], step=7)
    with open_store(tmp_path / "l", "a") as s:
        assert s.records[0] == {"step": 5, "lr": 0.1, "nonfinite": False}
        assert s.records[1] == {"step": 6, "nonfinite": True, "x": 1}
        s.parts_writer([data[1]]).append(step=8)
    with open_store(tmp_path / "l") as r:
        assert r.steps.tolist() == [5, 6, 7, 8] and r.verify() == 4
        assert np.isinf(r[1, 13])


def test_parts_writer_bad_input(tmp_path, rng):
    with SnapshotStore.create(tmp_path / "p", 10) as s:
        with pytest.raises(ValueError, match="hold 11 values"):
            s.parts_writer([np.zeros(4, np.float32), np.zeros(7, np.float32)])
        with pytest.raises(ValueError, match="dtype float64"):
            s.parts_writer([np.zeros(10)])
        with pytest.raises(ValueError, match="C-contiguous"):
            s.parts_writer([np.zeros(20, np.float32)[::2]])
        with pytest.raises(TypeError, match="numpy array"):
            s.parts_writer([[0.0] * 10])
        w = s.parts_writer([np.zeros(10, np.float32)])
    with pytest.raises(ValueError, match="closed"):
        w.append_line(b'{"step":1,"nonfinite":false}\n', 1)
    with open_store(tmp_path / "p") as r, pytest.raises(ValueError, match="read-only"):
        r.parts_writer([np.zeros(10, np.float32)])
    with SnapshotStore.create(tmp_path / "c", 10, checksum=False) as s:  # no checksum: 0
        s.parts_writer([np.ones(10, np.float32)]).append(step=0)
    with open_store(tmp_path / "c") as r:
        assert r._row_crcs == [0] and np.array_equal(r[0], np.ones(10))


def test_parts_writer_reports_os_errors_and_recovers(tmp_path, rows):
    s = make_store(tmp_path / "e", rows[:2])
    part = rows[2].astype(np.float32)
    s._fds["data"], saved = os.open(tmp_path / "e" / "snapshots.bin", os.O_RDONLY), s._fds["data"]
    w = s.parts_writer([part])
    with pytest.raises(OSError, match="snapshots.bin"):
        w.append(step=99)
    os.close(s._fds["data"])
    s._fds["data"] = saved
    assert s.parts_writer([part]).append(step=99) == (2, 0)  # nothing was left behind
    s.close()
    with open_store(tmp_path / "e") as r:
        assert len(r) == 3 and r.verify() == 3 and np.array_equal(r[2], part)
