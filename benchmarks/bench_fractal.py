"""Benchmark of box counting and pairwise squared distances, ratios in one run.

Workload: weight-like snapshots (column d = o_d + cumsum(1e-3 * xi), float32), T = 2048,
D = 50 000 (0.4 GB). Peers, measured here on the same data:
  * box counting, 16 scales, against the numpy reference (quantize, np.unique(axis=0) per
    scale) and against one numpy pass over the data (X.sum());
  * pairwise squared distances against a float32 BLAS X @ X.T (numpy uses syrk for it), with
    the max relative error of the distances against a float64 reference.
Times are medians of repeats. Usage: python benchmarks/bench_fractal.py [--T 2048 --D 50000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fractaldiff as fd
from fractaldiff import _core
from fractaldiff.fractal.boxcount import grid_offsets

sys.path.insert(0, os.path.dirname(__file__))
from _common import timeit as _timeit  # noqa: E402
from _common import weight_like  # noqa: E402


def timeit(fn, repeat: int, warmup: int = 1) -> float:
    """Median seconds of ``repeat`` calls."""
    return _timeit(fn, repeat=repeat, warmup=warmup)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--D", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    T, D, R = args.T, args.D, args.repeat
    info = fd.build_info()
    print(f"fractaldiff {info['version']}, simd={info['simd']}, threads={info['n_threads']}, "
          f"numpy {np.__version__}")
    X = weight_like(T, D, 1e-3)
    print(f"workload: weight-like float32, T={T}, D={D} ({X.nbytes / 1e9:.2f} GB), "
          f"step 1e-3; medians of {R} repeats\n")

    # ---------------------------------------------------------------- box counting
    K = 16
    t_sum = timeit(lambda: X.sum(), R)
    t_box = timeit(lambda: fd.box_counts(X, n_scales=K), R)
    eps, counts = fd.box_counts(X, n_scales=K)
    # numpy reference with the same grid: quantize once, np.unique(axis=0) per scale
    mins = X.min(axis=0).astype(np.float64)
    origin = mins - grid_offsets(np.arange(D), eps[-1], seed=0, grid=0)
    inv = 1.0 / eps[0]

    def quantize():
        return ((X.astype(np.float64) - origin) * inv).astype(np.int64)

    t_q = timeit(quantize, 1, warmup=0)
    q = quantize()
    scales_timed = [7, 12]  # one mid, one coarse scale; the rest is extrapolated
    t_u = []
    for k in scales_timed:
        t0 = time.perf_counter()
        n = np.unique(q >> k, axis=0).shape[0]
        t_u.append(time.perf_counter() - t0)
        assert n == counts[k], (k, n, counts[k])  # the benchmark checks correctness too
    t_numpy = t_q + np.mean(t_u) * K
    print("box counting, 16 dyadic scales (one grid)")
    print(f"  fractaldiff.box_counts          {t_box:8.3f} s")
    print(f"  X.sum() (one numpy pass)        {t_sum:8.3f} s   ours / X.sum() = "
          f"{t_box / t_sum:6.1f}x   (required <= 20x)")
    print(f"  numpy reference                 {t_numpy:8.3f} s   = quantize {t_q:.2f} s + 16 x "
          f"np.unique {np.mean(t_u):.2f} s (timed at scales {scales_timed}, extrapolated to 16;"
          f" counts equal ours there)")
    print(f"  speed-up vs numpy reference     {t_numpy / t_box:8.1f}x   (required >= 30x)")
    print(f"  counts: {counts.astype(int).tolist()}\n")
    del q

    # ---------------------------------------------------------------- pairwise distances
    t_blas = timeit(lambda: X @ X.T, max(3, R // 2))
    t_pd = timeit(lambda: fd.pairwise_sqdist(X), max(3, R // 2))
    t_gram = timeit(lambda: fd.centered_gram(X), max(3, R // 2))
    got = fd.pairwise_sqdist(X)
    # float64 reference: exact float64 differences of a sample of pairs
    rng = np.random.default_rng(1)
    i = rng.integers(0, T, 4000)
    j = rng.integers(0, T, 4000)
    keep = i != j
    i, j = i[keep], j[keep]
    i = np.concatenate([i, np.arange(T - 1)])  # all consecutive pairs: the smallest distances
    j = np.concatenate([j, np.arange(1, T)])
    ref = np.empty(i.size)
    for a in range(0, i.size, 256):
        d = X[i[a:a + 256]].astype(np.float64) - X[j[a:a + 256]].astype(np.float64)
        ref[a:a + 256] = np.einsum("ij,ij->i", d, d)
    err = float(np.max(np.abs(got[i, j] - ref) / ref))
    sd = X[: min(T, 512)] @ X[: min(T, 512)].T  # float32 BLAS distances, for comparison
    nrm = np.diag(sd)
    sd32 = nrm[:, None] + nrm[None, :] - 2 * sd
    m = min(T, 512) - 1
    k1 = np.arange(m)
    err32 = float(np.max(np.abs(sd32[k1, k1 + 1] - ref[-(T - 1):][:m]) / ref[-(T - 1):][:m]))
    print("pairwise squared distances (T x T, float64 output)")
    print(f"  fractaldiff.pairwise_sqdist     {t_pd:8.3f} s   (centred Gram kernel alone "
          f"{t_gram:.3f} s)")
    print(f"  float32 BLAS X @ X.T            {t_blas:8.3f} s")
    print(f"  speed relative to BLAS          {t_blas / t_pd:8.2f}x  (required >= 0.5x)")
    print(f"  max relative error vs float64 reference ({i.size} pairs incl. all consecutive): "
          f"{err:.2e}")
    print(f"  for comparison, float32 BLAS |xi|^2+|xj|^2-2 xi.xj on consecutive pairs: "
          f"{err32:.2e}")
    print(f"\nsimd levels: {_core.available_simd_levels()}")


if __name__ == "__main__":
    main()
