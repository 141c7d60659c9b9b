"""Shared helpers for the benchmark scripts: workloads, timing with repeats, table printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def weight_like(T: int, D: int, step: float, seed: int = 0, dtype=np.float32,
                out: np.ndarray | None = None) -> np.ndarray:
    """Column d is o_d + cumsum(step * xi), o_d ~ N(0, 1), xi ~ N(0, 1) (generated in float32
    blocks to keep memory low for large D); written into ``out`` (e.g. a memmap) if given."""
    rng = np.random.default_rng(seed)
    out = np.empty((T, D), dtype=dtype) if out is None else out
    block = max(1, (1 << 26) // max(T, 1))
    for a in range(0, D, block):
        b = min(D, a + block)
        steps = rng.standard_normal((T, b - a), dtype=np.float32) * np.float32(step)
        np.cumsum(steps, axis=0, out=steps)
        steps += rng.standard_normal(b - a).astype(np.float32)
        out[:, a:b] = steps
    return out


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` calls (after ``warmup`` untimed calls) and all times."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def msd_direct(X: np.ndarray, lags) -> np.ndarray:
    """Exact float64 reference MSD at the given lags (direct sums)."""
    X = np.asarray(X)
    T = X.shape[0]
    out = []
    for tau in lags:
        if tau == 0:
            out.append(0.0)
            continue
        s = 0.0
        for a in range(0, X.shape[1], 8192):
            blk = X[:, a : a + 8192].astype(np.float64)
            d = blk[tau:] - blk[: T - tau]
            s += float(np.einsum("ij,ij->", d, d))
        out.append(s / (T - tau))
    return np.array(out)


def reference_lags(T: int) -> np.ndarray:
    """Lags where accuracy is checked: all of 1..32 and a log-spaced spread up to T-1."""
    return np.unique(np.concatenate([np.arange(1, 33), np.geomspace(33, T - 1, 40).astype(int)]))


def max_rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref) / np.abs(ref)))
