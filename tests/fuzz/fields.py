"""The fuzz inputs' field format, shared by the harnesses: each field is a little-endian u32
length followed by that many bytes; a field cut short by the end of the input reads as what is
left of it, a missing one as b""."""

from __future__ import annotations

import struct


def pack_fields(fields) -> bytes:
    """The bytes of ``fields`` in the field format."""
    return b"".join(struct.pack("<I", len(f)) + f for f in fields)


def read_fields(buf: bytes, pos: int, count: int) -> list[bytes]:
    """``count`` fields of ``buf`` starting at byte ``pos``."""
    fields = []
    for _ in range(count):
        if pos + 4 > len(buf):
            fields.append(b"")
            continue
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        fields.append(buf[pos : pos + n])
        pos += n
    return fields
