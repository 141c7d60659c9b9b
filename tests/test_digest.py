"""The store's row digest (checksum + NaN/Inf scan) and CRC-32 against numpy/zlib."""

import zlib

import numpy as np
import pytest
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


# --- fd64 pinned against a plain-Python reference (the stored checksums depend on it) ---------

K1, K2, M64 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _mix64(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def fd64_reference(raw: bytes) -> int:
    """docs/store.md's fd64: 64 KiB chunks, four lanes per chunk, chunk values folded in order."""
    h = K1 ^ len(raw)
    for c in range(max(1, -(-len(raw) // 65536))):
        b = raw[c * 65536:(c + 1) * 65536]
        lanes = [K2, K2 ^ 1, K2 ^ 2, K2 ^ 3]
        nw = len(b) // 8
        for w, v in enumerate(np.frombuffer(b[:nw * 8], "<u8").tolist()):
            lanes[w & 3] = _rotl(((lanes[w & 3] ^ v) * K1) & M64, 31)
        if len(b) % 8:
            v = int.from_bytes(b[nw * 8:], "little")
            lanes[0] = _rotl(((lanes[0] ^ v) * K1) & M64, 31)
        ch = _mix64(lanes[0] ^ _rotl(lanes[1], 17) ^ _rotl(lanes[2], 29) ^ _rotl(lanes[3], 43)
                    ^ len(b))
        h = (_mix64(h ^ ch) + K2) & M64
    return h


@pytest.fixture(params=_core.available_simd_levels())
def simd_level(request):
    """Each SIMD level this CPU has (the digest's AVX-512 path follows the active level)."""
    before = _core.simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(before)


@pytest.mark.parametrize("n_bytes", [0, 5, 8, 31, 32, 33, 1000, 65535, 65536, 65537,
                                     3 * 65536 + 24, 17 * 65536 + 3,
                                     40 * 65536 + 8])  # 40 chunks: threads split them
def test_fd64_matches_reference_at_every_simd_level(simd_level, n_bytes):
    raw = np.random.default_rng(n_bytes).integers(0, 256, n_bytes, dtype=np.uint8)
    ref = fd64_reference(raw.tobytes())
    assert int(_core.digest_row(raw, 1)[0]) == ref
    assert int(_core.digest_row(raw, 0)[0]) == ref
    if simd_level == "avx512":
        assert _core.digest_uses_avx512() == _cpu_has_avx512_digest()
    else:
        assert not _core.digest_uses_avx512()  # the portable code at the lower levels


def _cpu_has_avx512_digest() -> bool:
    """Whether this CPU has what the AVX-512 digest needs (F, VL, DQ, BW)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:  # pragma: no cover - not Linux
        return _core.digest_uses_avx512()
    return all(f in flags for f in ("avx512f", "avx512vl", "avx512dq", "avx512bw"))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 4095, 16_384, 32_768 + 5, 8 * 16_384 + 3, 300_001])
def test_float_rows_match_reference_and_numpy_at_every_simd_level(simd_level, dtype, n):
    """Checksum against the plain-Python fd64, NaN/Inf count and first position against numpy,
    for every float width, at every SIMD level and thread count (rows of >= 2 MiB split)."""
    rng = np.random.default_rng(n)
    row = rng.standard_normal(n).astype(dtype)
    if n:
        bad = np.unique(rng.integers(0, n, size=min(n, 5)))
        row[bad] = np.array([np.nan, np.inf, -np.inf, np.nan, np.inf][:bad.size], dtype)
    ref = fd64_reference(row.tobytes())
    nonfinite = np.flatnonzero(~np.isfinite(row))
    want = (ref, nonfinite.size, int(nonfinite[0]) if nonfinite.size else -1)
    for threads in (1, 0):
        got = _core.digest_row(row, threads)
        assert (int(got[0]), got[1], got[2]) == want, (threads, n)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_parts_digest_equals_row_digest(simd_level, dtype):
    """The digest of a row held in several arrays (read in place, chunks that straddle arrays
    gathered) is the digest of the concatenated row, NaN/Inf count and position included."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 37, 40_000, 200_003):
        row = rng.standard_normal(n).astype(dtype)
        if n > 100:
            row[[n // 7, n // 2, n - 1]] = [np.nan, np.inf, -np.inf]
        for n_parts in (1, 2, 13, 150):
            cuts = np.sort(rng.integers(0, n + 1, size=n_parts - 1))
            parts = [p.copy() for p in np.split(row, cuts)]
            pa = _core.PartsAppender(-1, -1, -1, parts, True, False)
            assert pa.nbytes == row.nbytes
            assert pa.digest() == _core.digest_row(row, 1), (n, n_parts)
