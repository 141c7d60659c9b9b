"""The manifest: a checksum over its content, strict types for every field, bounded JSON
nesting (also in metadata lines and in what a store is given to write)."""

import json

import numpy as np
import pytest
from faultkit import make_store

from fractaldiff.io.format import manifest_checksum, manifest_text
from fractaldiff.io.store import SnapshotStore, StoreCorruptedError, open_store


def rewrite(path, change, *, fix_checksum):
    m = json.loads((path / "manifest.json").read_text())
    change(m)
    if fix_checksum:
        (path / "manifest.json").write_text(manifest_text(m))
    else:
        (path / "manifest.json").write_text(json.dumps(m))


def test_self_consistent_rewrite_is_detected(tmp_path):
    """dtype <f8, n_params halved, row_bytes unchanged: the bytes would be reinterpreted."""
    path = tmp_path / "s"
    make_store(path, 5, d=24)

    def reinterpret(m):
        m["dtype"], m["n_params"] = "<f8", m["n_params"] // 2

    rewrite(path, reinterpret, fix_checksum=False)
    with pytest.raises(StoreCorruptedError, match="manifest.json does not match its checksum"):
        open_store(path)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("n_params", "24", "n_params must be an integer"),
        ("n_params", 100.7, "n_params must be an integer"),
        ("n_params", True, "n_params must be an integer"),
        ("n_params", 0, "n_params must be an integer from 1"),
        ("n_params", 2**80, "n_params must be an integer from 1"),
        ("format_version", True, "format_version must be an integer"),
        ("format_version", -5, "format_version must be an integer"),
        ("format_version", 2.0, "format_version must be an integer"),
        ("format_version", 9, "format_version 9; this fractaldiff reads"),
        ("dtype", "<i4", "dtype must be one of"),
        ("dtype", ["<f4"], "dtype must be one of"),
        ("row_bytes", "96", "inconsistent"),
        ("row_bytes", 95, "inconsistent"),
        ("files", {"data": "../outside.bin"}, "files must be"),
        ("row_checksum", "crc32", "row_checksum must be"),
        ("meta", [1, 2], "meta must be a JSON object"),
        ("created", 5, "created must be a string"),
        ("layout", "fc1", "layout must be a list"),
        ("layout", [{"name": "w", "shape": "23", "offset": 0}], r"layout\[0\] must be"),
        ("layout", [{"name": "w", "shape": [2.9, 3.1], "offset": 0}], r"layout\[0\] must be"),
        ("layout", [{"name": "w", "shape": [2], "offset": "0"}], r"layout\[0\] must be"),
        ("layout", [{"name": "w", "shape": [30], "offset": 0}], "invalid layout"),
    ],
)
def test_manifest_fields_have_strict_types(tmp_path, field, value, match):
    path = tmp_path / "t"
    make_store(path, 2, d=24)
    rewrite(path, lambda m: m.__setitem__(field, value), fix_checksum=True)
    with pytest.raises(StoreCorruptedError, match=match):
        open_store(path)


def test_missing_or_wrong_checksum_field(tmp_path):
    path = tmp_path / "c"
    make_store(path, 2)
    rewrite(path, lambda m: m.pop("checksum"), fix_checksum=False)
    with pytest.raises(StoreCorruptedError, match="checksum must be"):
        open_store(path)


def test_version_1_manifest_without_checksum_still_opens(tmp_path):
    path = tmp_path / "v1"
    data = make_store(path, 3)

    def v1(m):
        m["format_version"] = 1
        m.pop("checksum")

    rewrite(path, v1, fix_checksum=False)
    with open_store(path) as r:
        assert np.array_equal(r[:], data)
    with open_store(path, "a") as w:
        w.update_meta(note="upgraded")  # rewritten as the current version, with a checksum
    m = json.loads((path / "manifest.json").read_text())
    assert m["format_version"] == 2 and m["checksum"] == manifest_checksum(m)


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_manifest(tmp_path):
    path = tmp_path / "n"
    make_store(path, 2)
    (path / "manifest.json").write_text(DEEP)
    with pytest.raises(StoreCorruptedError, match="nested too deeply"):
        open_store(path)
    m = json.loads(manifest_text({"format": "fractaldiff.snapshot-store"}))
    nested = "[" * 80 + "]" * 80
    text = json.dumps(m)[:-1] + ', "meta": {"x": ' + nested + "}}"
    (path / "manifest.json").write_text(text)
    with pytest.raises(StoreCorruptedError, match="nested too deeply"):
        open_store(path)


def test_deeply_nested_metadata_line(tmp_path):
    path = tmp_path / "l"
    make_store(path, 3)
    raw = (path / "steps.jsonl").read_bytes().split(b"\n")
    n = len(raw[1])
    deep = b"[" * ((n - 1) // 2) + b"]" * ((n - 1) // 2)
    raw[1] = deep.ljust(n, b" ")
    (path / "steps.jsonl").write_bytes(b"\n".join(raw))
    with open_store(path) as r:
        with pytest.raises(StoreCorruptedError, match="metadata of snapshot 1 .* damaged"):
            _ = r.records


def test_deeply_nested_values_given_to_a_store(tmp_path):
    deep = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(TypeError, match="nested too deeply"):
        SnapshotStore.create(tmp_path / "x", 2, meta={"a": deep})
    with SnapshotStore.create(tmp_path / "y", 2) as s:
        with pytest.raises(TypeError, match="nested too deeply"):
            s.append(np.zeros(2), step=0, extra=deep)
        with pytest.raises(TypeError, match="nested too deeply"):
            s.update_meta(a=deep)
        moderate = [[[[1]]]]
        s.append(np.zeros(2), step=0, extra=moderate)
    with open_store(tmp_path / "y") as r:
        assert r.records[0]["extra"] == moderate
