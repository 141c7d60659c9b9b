"""Fuzz target: argument validation of the main analyses. The fuzzer picks a function, a small
snapshot array and keyword arguments drawn from a pool of awkward values (NaN, Inf, huge and
negative numbers, bools, strings, lists, None); a call must return or raise ValueError /
TypeError / IndexError (the package's "clear exception"; RuntimeError only for "no CUDA
device"), never anything else.

Input: bytes read as small choices by :class:`Choices` (no atheris needed to replay).
"""

from __future__ import annotations

import warnings

import numpy as np

POOL = [
    None, True, False, 0, 1, 2, 3, 5, 17, -1, -7, 2**31, 2**63, -(2**63), 10**30,
    0.0, 0.5, 1.0, 2.5, -1.5, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"),
    "auto", "cpu", "cuda", "inf", "no", "", "1GB", "64MB", "chao1", "fit",
    [], [1, 2], [0.5, 3.0], [1, 2, 3], (2, 5), np.int64(4), np.float32(0.25), np.bool_(True),
]

FUNCS = {
    "msd": ("lags", "start", "stop", "n_threads", "device", "memory_limit", "progress",
            "groups"),
    "displacement": ("ref", "start", "stop", "n_threads", "device", "memory_limit",
                     "progress"),
    "box_counts": ("eps0", "n_scales", "n_grids", "seed", "n_threads", "memory_limit"),
    "box_counting_dimension": ("window", "eps0", "n_scales", "n_grids", "correction",
                               "min_count", "min_coverage", "max_fill", "tolerance"),
    "pairwise_sqdist": ("start", "stop", "n_threads", "memory_limit", "progress"),
    "correlation_dimension": ("theiler", "window", "n_radii", "min_pairs", "max_fraction"),
    "fit_exponent": ("window",),
}


class Choices:
    """Deterministic small choices from a byte string (0 when it runs out)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        b = self.buf[self.pos] if self.pos < len(self.buf) else 0
        self.pos += 1
        return b

    def pick(self, seq):
        return seq[self.byte() % len(seq)]


def call(buf: bytes):
    import fractaldiff as fd

    c = Choices(buf)
    name = c.pick(sorted(FUNCS))
    t = 2 + c.byte() % 11
    d = 1 + c.byte() % 5
    rng = np.random.default_rng(c.byte())
    x = np.cumsum(rng.standard_normal((t, d)), axis=0)
    if c.byte() % 8 == 0:
        x = x.astype(np.float32)
    n_kw = c.byte() % 4
    kwargs = {}
    for _ in range(n_kw):
        key = c.pick(FUNCS[name])
        value = c.pick(POOL)
        kwargs[key] = value
    if name == "fit_exponent":
        tt = np.arange(1, t + 1, dtype=float)
        return fd.fit_exponent(tt, np.abs(x[:, 0]) + tt, **kwargs)
    return getattr(fd, name)(x, **kwargs)


def test_one_input(buf: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(buf)
        except (ValueError, TypeError, IndexError):
            pass
        except RuntimeError as exc:
            if "CUDA" not in str(exc):
                raise


if __name__ == "__main__":
    import sys

    import atheris

    with atheris.instrument_imports(include=["fractaldiff"]):
        import fractaldiff  # noqa: F401
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
