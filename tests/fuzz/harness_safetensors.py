"""Fuzz target: a checkpoint folder holding two fuzzed safetensors files (and a fuzzed file
name for the step), read completely.

Input: one flag byte (bit 0: rewrite each file's 8-byte header length to match its JSON
header, so the fuzzer gets past it), a u8 name length and the name's bytes (the second file's
name stem), then two fields, each a little-endian u32 length and its bytes.

Allowed outcomes: success, ValueError (also for step_from_name), warnings. Anything else is a
bug.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import warnings

import numpy as np
from fields import pack_fields, read_fields

ROOT = tempfile.mkdtemp(prefix="fd-fuzz-st-")


def pack(first: bytes, second: bytes, name: bytes = b"step_2", flags: int = 1) -> bytes:
    return bytes([flags, len(name)]) + name + pack_fields((first, second))


def unpack(buf: bytes) -> tuple[int, bytes, list[bytes]]:
    flags = buf[0] if buf else 0
    n = buf[1] if len(buf) > 1 else 0
    name = buf[2 : 2 + n]
    return flags, name, read_fields(buf, 2 + n, 2)


def _fix_length(raw: bytes) -> bytes:
    """Make the header length cover the JSON object that follows (up to its last '}')."""
    body = raw[8:]
    end = body.find(b"}\x00") + 1 if b"}\x00" in body else body.rfind(b"}") + 1
    if end <= 0:
        return raw
    return struct.pack("<Q", end) + body


def test_one_input(buf: bytes) -> None:
    from fractaldiff.io.checkpoints import CheckpointFolder, step_from_name

    flags, name, (first, second) = unpack(buf)
    if flags & 1:
        first, second = _fix_length(first), _fix_length(second)
    stem = "".join(ch for ch in name.decode("latin-1") if ch.isalnum() or ch in "-_.")[:100]
    try:
        step_from_name(stem + ".safetensors")
    except ValueError:
        pass
    folder = os.path.join(ROOT, "c")
    shutil.rmtree(folder, ignore_errors=True)
    os.mkdir(folder)
    with open(os.path.join(folder, "step_1.safetensors"), "wb") as fh:
        fh.write(first)
    if stem and stem != "step_1":
        with open(os.path.join(folder, stem + ".safetensors"), "wb") as fh:
            fh.write(second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            f = CheckpointFolder(folder)
        except ValueError:
            return
        t, d = f.shape
        if t * d <= 1 << 22:
            try:
                a = f[:]
            except ValueError:  # e.g. an unreadable dtype is only found on reading
                return
            assert a.shape == (t, d)
            if d:
                assert np.array_equal(f.column_block(0, min(d, 3)), a[:, :3], equal_nan=True)
        f.close()


if __name__ == "__main__":
    import sys

    import atheris

    with atheris.instrument_imports(include=["fractaldiff"]):
        import fractaldiff  # noqa: F401
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
