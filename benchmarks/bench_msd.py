"""All-lag MSD: fractaldiff against tidynamics, a hand-written scipy.fft version and numpy's
X.sum() (one pass over the data), measured in one run on the same data.

Workload: weight-like float32 trajectories, o_d + cumsum(s * xi), s = 1e-3,
T = 2048, D = 50 000 (0.4 GB). Also: the accuracy of each method against an exact float64 direct
reference, and a scaling table over T and D.

Run:  python benchmarks/bench_msd.py [--quick] [--repeat N] [--no-scaling] [--no-tidynamics]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import scipy.fft

sys.path.insert(0, os.path.dirname(__file__))
import fractaldiff as fd  # noqa: E402

from _common import max_rel_err, msd_direct, reference_lags, timeit, weight_like  # noqa: E402


def scipy_fft_msd(X: np.ndarray) -> np.ndarray:
    """What a careful user would hand-write: centre the columns (without it float32 loses all
    digits on weight-like data), float32 rfft over time, summed power, one inverse."""
    T = X.shape[0]
    X = X - X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    F = scipy.fft.rfft(X, n=2 * T, axis=0, workers=-1)
    power = (F.real**2 + F.imag**2).sum(axis=1)
    del F
    s2 = scipy.fft.irfft(power, n=2 * T)[:T]
    q = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    csum = np.concatenate(([0.0], np.cumsum(q)))
    tau = np.arange(T)
    return (csum[T - tau] + (csum[T] - csum[tau]) - 2 * s2) / (T - tau)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload (D = 10 000)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-tidynamics", action="store_true")
    args = ap.parse_args()

    info = fd.build_info()
    print(f"fractaldiff {info['version']}  simd={info['simd']}  threads={info['n_threads']}  "
          f"cpus={os.cpu_count()}  numpy {np.__version__}  scipy {scipy.__version__}")
    T, D = 2048, (10_000 if args.quick else 50_000)
    X = weight_like(T, D, 1e-3, seed=1)
    print(f"workload: weight-like float32, s=1e-3, T={T}, D={D} ({X.nbytes / 1e9:.2f} GB); "
          f"medians of {args.repeat} runs")

    t_ours, all_ours = timeit(lambda: fd.msd(X), repeat=args.repeat)
    t_sum, _ = timeit(lambda: X.sum(), repeat=args.repeat)
    t_scipy, _ = timeit(lambda: scipy_fft_msd(X), repeat=args.repeat)
    rows = [("fractaldiff.msd", t_ours), ("scipy.fft float32 (hand-written)", t_scipy),
            ("numpy X.sum() (one pass)", t_sum)]
    tidy = None
    if not args.no_tidynamics:
        try:
            import tidynamics

            t_tidy, _ = timeit(lambda: tidynamics.msd(X), repeat=max(1, min(3, args.repeat)),
                               warmup=0)
            rows.append(("tidynamics.msd", t_tidy))
            tidy = tidynamics
        except ImportError:
            print("tidynamics not installed: pip install tidynamics")

    print("\n| method | median time (s) | ours faster by |")
    print("|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / t_ours:.1f}x |")
    print(f"\nfractaldiff runs (s): {', '.join(f'{t:.3f}' for t in all_ours)}")
    print(f"ratio fractaldiff / X.sum() = {t_ours / t_sum:.1f} (the one-pass floor)")
    if tidy is not None:
        print(f"REQUIRED >= 25x faster than tidynamics: {t_tidy / t_ours:.1f}x "
              f"{'MET' if t_tidy / t_ours >= 25 else 'MISSED'}")
    print(f"REQUIRED >= 2x faster than scipy.fft float32: {t_scipy / t_ours:.1f}x "
          f"{'MET' if t_scipy / t_ours >= 2 else 'MISSED'}")

    # accuracy on the benchmark data and on the hardest step size
    print("\naccuracy: max over checked lags >= 1 of |msd - ref| / ref (exact float64 reference)")
    print("| data | fractaldiff | scipy.fft f32 | tidynamics | lag-0 (ours, tidynamics) |")
    print("|---|---:|---:|---:|---|")
    for step in (1e-3, 1e-4, 1e-5):
        Y = X if step == 1e-3 else weight_like(T, min(D, 10_000), step, seed=2)
        lags = reference_lags(T)
        ref = msd_direct(Y, lags)
        ours = fd.msd(Y)
        e_ours = max_rel_err(ours[lags], ref)
        e_sp = max_rel_err(scipy_fft_msd(Y)[lags], ref)
        e_td, lag0 = "n/a", "n/a"
        if tidy is not None:
            td = tidy.msd(Y)
            e_td = f"{max_rel_err(td[lags], ref):.1e}"
            lag0 = f"{ours[0]!r}, {float(td[0])!r}"
        print(f"| s={step:g}, D={Y.shape[1]} | {e_ours:.1e} | {e_sp:.1e} | {e_td} | {lag0} |")
        assert e_ours <= 1e-6 and ours[0] == 0.0 and np.all(ours >= 0), "required accuracy (1e-6) not met"

    if args.no_scaling:
        return
    print("\nscaling (float32, s=1e-3): time and time / (D * T * log2(2T)) in ns")
    print("| T | D | time (s) | ns per D*T*log2(2T) |")
    print("|---:|---:|---:|---:|")
    Dfix = 10_000
    cases = [(t, Dfix) for t in (512, 1024, 2048, 4096, 8192, 16384)]
    cases += [(1024, d) for d in (1_000, 10_000, 100_000, 1_000_000)]
    for t, d in cases:
        Y = weight_like(t, d, 1e-3, seed=3)
        tt, _ = timeit(lambda Y=Y: fd.msd(Y), repeat=3)
        print(f"| {t} | {d} | {tt:.4f} | {tt / (d * t * math.log2(2 * t)) * 1e9:.3f} |")
        del Y


if __name__ == "__main__":
    main()
