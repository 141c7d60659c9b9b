"""The store's row digest (checksum + NaN/Inf scan) and CRC-32 against numpy/zlib."""

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fractaldiff import _core

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([np.float16, np.float32, np.float64]),
       st.integers(0, 70_000), st.data())  # sizes across the 64 KiB chunks
def test_nonfinite_count_and_first_match_numpy(dtype, n, data):
    with np.errstate(over="ignore", invalid="ignore"):
        row = data.draw(arrays(np.float64, min(n, 300), elements=floats)).astype(dtype)
    if n > 300:  # a long row with the drawn values scattered in it
        big = np.zeros(n, dtype=dtype)
        pos = np.sort(np.random.default_rng(n).choice(n, row.size, replace=False))
        big[pos] = row
        row = big
    checksum, count, first = _core.digest_row(row)
    bad = np.flatnonzero(~np.isfinite(row))
    assert count == bad.size
    assert first == (int(bad[0]) if bad.size else -1)
    assert _core.digest_row(row, 1) == (checksum, count, first)  # thread count does not matter


def test_checksum_sees_every_bit():
    row = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    base = _core.digest_row(row)[0]
    raw = row.view(np.uint8)
    for i in (0, 7, 123_457, raw.size - 1):
        flipped = raw.copy()
        flipped[i] ^= 1
        assert _core.digest_row(flipped.view(np.float32))[0] != base


@given(st.binary(max_size=5000))
def test_crc32_matches_zlib(data):
    assert _core.crc32(data) == zlib.crc32(data)
