"""Do the package's 95 % intervals cover? Empirical coverage on inputs with a known answer.

Each row runs one estimator on many independent replicates of an input whose true value is
known and prints: the fraction of replicates whose nominal 95 % interval contains the truth
(target 90-99 %), the mean error (bias), the mean reported stderr and the RMS error (the
stderr should match it). Point sets are embedded in R^D by a random rotation and a random
offset per replicate, as weight snapshots would be.

A row is *flagged* when the estimator itself flags most replicates as beyond what the sample
can resolve (Eckmann-Ruelle for the correlation integral, the occupancy limit for box
counting): its coverage is then not a promise, and the estimator warns.

    python benchmarks/coverage.py            # default: <= 15 minutes on 2 cores
    python benchmarks/coverage.py --quick    # <= 2 minutes, loose bounds (CI)
    python benchmarks/coverage.py --check    # exit 1 if an unflagged row misses its bounds

Other estimators add rows with :func:`register` (e.g. the LLC: ``register("LLC ...", truth,
replicate_fn, n_reps)``, replicate_fn(seed) -> (estimate, stderr, flagged)).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fractaldiff as fd  # noqa: E402

from fbm import fractional_brownian_motion, time_averaged_msd  # noqa: E402
from fractal_sets import (  # noqa: E402
    brownian3_times,
    cantor,
    cube,
    embed_random,
    koch,
    sierpinski,
    sierpinski_carpet,
)

Z95 = 1.959963984540054


@dataclass
class Row:
    name: str
    truth: float
    replicate: Callable[[int], tuple[float, float, bool]]
    n_reps: int
    note: str = ""


ROWS: list[Row] = []


def register(name: str, truth: float, replicate: Callable[[int], tuple[float, float, bool]],
             n_reps: int, note: str = "") -> None:
    """Add a row: ``replicate(seed) -> (estimate, stderr, flagged)``."""
    ROWS.append(Row(name, truth, replicate, n_reps, note))


# --------------------------------------------------------------------------- fits on fBm


def fbm_single_curve(hurst: float, n_snap: int, dims: int):
    def run(seed: int):
        x = fractional_brownian_motion(n_snap, hurst, dims, np.random.default_rng(seed))
        m = time_averaged_msd(x)
        lags = np.arange(1, n_snap)
        ex = fd.fit_msd(lags, m[1:], cov="fbm", n_snapshots=n_snap, effective_dims=dims,
                        window=(1, n_snap // 10), warn_window=False)
        return ex.msd_exponent, ex.msd_exponent_stderr, False
    return run


def fbm_estimated_dims(hurst: float, n_snap: int, dims: int, curve: str):
    """One run, one curve: the default single-run path. Coordinates of unequal scale (so the
    effective dimension is below D) and effective_dims = fd.effective_dimension(X)."""
    def run(seed: int):
        rng = np.random.default_rng(seed)
        scales = np.exp(rng.standard_normal(dims))
        x = fractional_brownian_motion(n_snap, hurst, dims, rng) * scales
        n_eff = fd.effective_dimension(x)
        if curve == "msd":
            m = time_averaged_msd(x)
            ex = fd.fit_msd(np.arange(1, n_snap), m[1:], n_snapshots=n_snap,
                            effective_dims=n_eff, window=(1, n_snap // 10), warn_window=False)
            return ex.msd_exponent, ex.msd_exponent_stderr, False
        R = np.linalg.norm(x - x[0], axis=1)
        ex = fd.fit_displacement(np.arange(1, n_snap), R[1:], effective_dims=n_eff,
                                 window=None, warn_window=False)
        return ex.displacement_exponent, ex.displacement_exponent_stderr, False
    return run


def fbm_block_rows(hurst: float, n_snap: int, dims: int, blocks: int):
    def run(seed: int):
        x = fractional_brownian_motion(n_snap, hurst, dims, np.random.default_rng(seed))
        rows = time_averaged_msd(x, n_blocks=blocks)[:, 1:]
        lags = np.arange(1, n_snap)
        ex = fd.fit_msd(lags, rows, n_snapshots=n_snap, window=(1, n_snap // 10),
                        warn_window=False)
        # Student t interval on n_rows - 1 dof: convert to a normal-equivalent stderr
        q = ex.fit.ci[1] - ex.fit.exponent
        return ex.msd_exponent, q / Z95, False
    return run


# --------------------------------------------------------------------------- crossover


def planted_crossover(noise: float):
    slopes, breaks = [1.5, 0.5], [100.0]
    t = np.arange(1, 10**4 + 1.0)
    z0 = slopes[0] * np.log10(t) + (slopes[1] - slopes[0]) * np.maximum(
        np.log10(t) - np.log10(breaks[0]), 0.0)

    def run(seed: int):
        rng = np.random.default_rng(seed)
        c = fd.crossover(t, 10.0 ** (z0 + noise * rng.standard_normal(t.size)))
        if c.n_breaks != 1:
            return math.nan, math.nan, False
        late = c.last_regime
        return late.exponent, late.stderr, False
    return run


# --------------------------------------------------------------------------- fractal sets


def point_set(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    seed = int(rng.integers(2**31))
    return {
        "Cantor": lambda: cantor(n, seed),
        "Sierpinski triangle": lambda: sierpinski(n, seed),
        "Sierpinski carpet": lambda: sierpinski_carpet(n, seed),
        "Koch curve": lambda: koch(n, seed),
        "filled square": lambda: cube(n, 2, seed),
        "filled cube": lambda: cube(n, 3, seed),
    }[kind]()


TRUTH = {
    "Cantor": math.log(2) / math.log(3),
    "Sierpinski triangle": math.log(3) / math.log(2),
    "Sierpinski carpet": math.log(8) / math.log(3),
    "Koch curve": math.log(4) / math.log(3),
    "filled square": 2.0,
    "filled cube": 3.0,
}


def correlation_row(kind: str, n: int, dim: int):
    def run(seed: int):
        rng = np.random.default_rng(seed)
        X = embed_random(point_set(kind, n, rng), dim, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fd.correlation_dimension(X)
        return est.dimension, est.stderr, bool(est.details.get("resolution_limited", False))
    return run


def takens_row(kind: str, n: int, dim: int):
    def run(seed: int):
        rng = np.random.default_rng(seed)
        X = embed_random(point_set(kind, n, rng), dim, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fd.correlation_dimension(X)
        return est.takens, est.takens_stderr, bool(est.details.get("resolution_limited", False))
    return run


def trajectory_row(n: int, dim: int, theiler: int):
    """One Brownian path in R^3 (trace dimension 2) observed at n random times, in time
    order, so neighbours in time are neighbours in space: the Theiler window matters."""
    def run(seed: int):
        rng = np.random.default_rng(seed)
        P = brownian3_times(n, int(rng.integers(2**31)))
        X = embed_random(P, dim, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fd.correlation_dimension(X, theiler=theiler)
        return est.dimension, est.stderr, bool(est.details.get("resolution_limited", False))
    return run


def box_row(kind: str, n: int, dim: int):
    def run(seed: int):
        rng = np.random.default_rng(seed)
        X = embed_random(point_set(kind, n, rng), dim, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fd.box_counting_dimension(X, n_grids=2, seed=seed)
        return est.dimension, est.stderr, bool(est.details.get("resolution_limited", False))
    return run


def build(quick: bool) -> None:
    reps_cheap = 30 if quick else 100
    reps = 10 if quick else 30
    n_snap = 512 if quick else 1000
    for h in (0.25, 0.5, 0.75):
        register(f"fit_msd, 1 fBm curve, cov='fbm' (H={h}, D=8, T={n_snap})", 2 * h,
                 fbm_single_curve(h, n_snap, 8), reps_cheap)
        register(f"fit_msd, 8 block rows (H={h}, D=64, T={n_snap})", 2 * h,
                 fbm_block_rows(h, n_snap, 64, 8), reps_cheap)
        register(f"fit_msd, 1 curve, effective_dims=effective_dimension(X) (H={h}, D=8 "
                 f"unequal scales, T={n_snap})", 2 * h,
                 fbm_estimated_dims(h, n_snap, 8, "msd"), reps_cheap)
        register(f"fit_displacement, 1 R(t) curve, effective_dims estimated (H={h}, D=8 "
                 f"unequal scales, T={n_snap})", h,
                 fbm_estimated_dims(h, n_snap, 8, "displacement"), reps_cheap)
    register("crossover, 1 planted break, late exponent (iid noise 2%)", 0.5,
             planted_crossover(0.02 / math.log(10) * math.log(10)), reps_cheap)
    n_corr = 1000 if quick else 2000
    for kind in TRUTH:
        register(f"correlation_dimension, {kind} (N={n_corr}, R^100)", TRUTH[kind],
                 correlation_row(kind, n_corr, 100), reps)
    register(f"Takens, Sierpinski triangle (N={n_corr}, R^100)", TRUTH["Sierpinski triangle"],
             takens_row("Sierpinski triangle", n_corr, 100), reps)
    # a path needs more points than a set: with T = 1000 a few replicates find no plateau
    register("correlation_dimension, Brownian path in R^3 (T=2000, theiler=10)",
             2.0, trajectory_row(2000, 100, 10), reps)
    n_box = 6000 if quick else 10000
    for kind in ("Cantor", "Sierpinski triangle", "Sierpinski carpet", "Koch curve",
                 "filled square", "filled cube"):
        register(f"box_counting_dimension, {kind} (N={n_box}, R^100, 2 grids)", TRUTH[kind],
                 box_row(kind, n_box, 100), reps)


def evaluate(row: Row) -> dict:
    est, se, flags = [], [], []
    for seed in range(row.n_reps):
        e, s, f = row.replicate(seed)
        est.append(e)
        se.append(s)
        flags.append(f)
    est, se = np.array(est, float), np.array(se, float)
    ok = np.isfinite(est) & np.isfinite(se)
    err = est[ok] - row.truth
    flagged = np.array(flags, bool)[ok]
    # a flagged replicate's interval is one-sided (a lower bound): [est - z se, inf)
    cover = np.where(flagged, err <= Z95 * se[ok], np.abs(err) <= Z95 * se[ok])
    return {
        "name": row.name, "truth": row.truth, "reps": row.n_reps, "valid": int(ok.sum()),
        "coverage": float(cover.mean()) if ok.any() else math.nan,
        "mean_error": float(err.mean()) if ok.any() else math.nan,
        "mean_stderr": float(se[ok].mean()) if ok.any() else math.nan,
        "rms_error": float(np.sqrt(np.mean(err**2))) if ok.any() else math.nan,
        "flagged": float(np.mean(flags)) > 0.5,
    }


def table(results: list[dict]) -> str:
    lines = ["| estimator and input | truth | valid/reps | coverage of 95 % CI | mean error | "
             "mean stderr | RMS error | flag |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        flag = ("flagged: resolution-limited, one-sided interval (lower bound)"
                if r["flagged"] else "")
        lines.append(
            f"| {r['name']} | {r['truth']:.4g} | {r['valid']}/{r['reps']} | "
            f"{100 * r['coverage']:.0f} % | {r['mean_error']:+.3g} | {r['mean_stderr']:.3g} | "
            f"{r['rms_error']:.3g} | {flag} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer replicates and points (CI)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if an unflagged row's coverage is outside the bounds")
    ap.add_argument("--only", default="", help="run only rows whose name contains this")
    args = ap.parse_args(argv)
    build(args.quick)
    lo, hi = (0.75, 1.0) if args.quick else (0.90, 0.99)
    results, bad = [], []
    start = time.perf_counter()
    for row in ROWS:
        if args.only and args.only not in row.name:
            continue
        t0 = time.perf_counter()
        res = evaluate(row)
        results.append(res)
        print(f"{res['name']}: coverage {100 * res['coverage']:.0f} % ({res['valid']}/"
              f"{res['reps']}), mean error {res['mean_error']:+.3g}, mean stderr "
              f"{res['mean_stderr']:.3g}, RMS error {res['rms_error']:.3g}"
              f"{' [flagged]' if res['flagged'] else ''} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        if not res["flagged"] and not lo <= res["coverage"] <= hi:
            bad.append(res["name"])
    print()
    print(table(results))
    print(f"\n{time.perf_counter() - start:.0f} s; bounds {100 * lo:.0f}-{100 * hi:.0f} %")
    if bad:
        print("outside the bounds:", "; ".join(bad))
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
