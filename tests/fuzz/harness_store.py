"""Fuzz target: open a store made of fuzzed files (manifest, commit log, metadata, data) and
read everything; then recover it in append mode and append one snapshot.

Input: one flag byte, then four fields, each a little-endian u32 length and its bytes:
manifest.json, commits.bin, steps.jsonl, snapshots.bin. Flags: bit 0 re-sign the manifest
(recompute its checksum when it parses as a JSON object, so the fuzzer gets past it); bit 1
recompute the CRC of every full-length commit record.

Allowed outcomes: success, StoreCorruptedError / StoreLockedError, warnings. Anything else is
a bug.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
import zlib

import numpy as np
from fields import pack_fields, read_fields

ROOT = tempfile.mkdtemp(prefix="fd-fuzz-store-")


def pack(manifest: bytes, commits: bytes, steps: bytes, data: bytes, flags: int = 3) -> bytes:
    """The harness's input for these file contents (used to write seeds)."""
    return bytes([flags]) + pack_fields((manifest, commits, steps, data))


def unpack(buf: bytes) -> tuple[int, list[bytes]]:
    return (buf[0] if buf else 0), read_fields(buf, 1, 4)


def _resign(manifest: bytes) -> bytes:
    from fractaldiff.io.format import manifest_text

    try:
        m = json.loads(manifest)
    except (ValueError, RecursionError):
        return manifest
    if not isinstance(m, dict):
        return manifest
    try:
        return manifest_text(m).encode()
    except (ValueError, TypeError, RecursionError):
        return manifest


def _fix_crcs(commits: bytes) -> bytes:
    out = bytearray(commits)
    for i in range(len(out) // 32):
        head = bytes(out[i * 32 : i * 32 + 28])
        out[i * 32 + 28 : i * 32 + 32] = struct.pack("<I", zlib.crc32(head))
    return bytes(out)


def test_one_input(buf: bytes) -> None:
    import fractaldiff as fd

    flags, (manifest, commits, steps, data) = unpack(buf)
    if flags & 1:
        manifest = _resign(manifest)
    if flags & 2:
        commits = _fix_crcs(commits)
    path = os.path.join(ROOT, "s")
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path)
    for name, content in (("manifest.json", manifest), ("commits.bin", commits),
                          ("steps.jsonl", steps), ("snapshots.bin", data),
                          ("writer.lock", b"")):
        with open(os.path.join(path, name), "wb") as fh:
            fh.write(content)
    expected = (fd.StoreCorruptedError, fd.StoreLockedError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for recover in (False, True):
            try:
                with fd.open_store(path, recover=recover) as r:
                    t, d = r.shape
                    if t * d <= 1 << 22:
                        a = r[:]
                        assert a.shape == (t, d)
                        if t:
                            assert np.array_equal(r[t - 1], a[-1], equal_nan=True)
                            assert np.array_equal(r.column_block(0, min(d, 3)), a[:, :3],
                                                  equal_nan=True)
                            assert np.array_equal(np.asarray(r.as_memmap()), a,
                                                  equal_nan=True)
                    _ = r.metadata
                    assert len(r.steps) == t
                    r.verify()
                    _ = r.meta, r.layout
            except expected:
                pass
        try:
            w = fd.open_store(path, "a", recover=True)
        except expected:
            return
        with w:
            t, d = w.shape
            if d <= 1 << 16:
                w.append(np.zeros(d, np.float32), allow_nonfinite=True)
                assert len(w) == t + 1
        try:
            with fd.open_store(path) as r:
                assert len(r) == t + (d <= 1 << 16)
                r.verify()  # the rows kept by recovery may still fail their checksums
        except expected:
            pass


if __name__ == "__main__":
    import sys

    import atheris

    with atheris.instrument_imports(include=["fractaldiff"]):
        import fractaldiff  # noqa: F401
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
