"""Accuracy of the fractal dimensions on sets of known dimension, one table.

Every set is embedded in R^D by a random orthonormal map (tests/fractal_sets.py). Box
counting: 50 000 points, 4 grids, default options (Chao1 estimate, automatic window);
correlation dimension: 4096 points, default options. Each row prints the estimate, its reported
stderr, the error in units of that stderr and whether the issue's tolerance (box counting
+-0.15, correlation +-0.1 for dimension <= 2) is met. Seeded: the same numbers every run.
Usage: python benchmarks/validate_fractal.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

import fractaldiff as fd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from fractal_sets import (  # noqa: E402
    DIMENSIONS,
    brownian3,
    brownian3_times,
    cantor,
    cube,
    embed,
    sierpinski,
)

SETS = {
    # name: (make(n) -> points in R^k, embedding D, true dimension)
    "Cantor set": (cantor, 64, DIMENSIONS["cantor"]),
    "Sierpinski triangle": (sierpinski, 64, DIMENSIONS["sierpinski"]),
    "segment": (lambda n: cube(n, 1), 64, 1.0),
    "segment, D = 10^4": (lambda n: cube(n, 1), 10_000, 1.0),
    "filled square": (lambda n: cube(n, 2), 64, 2.0),
    "filled square, D = 4": (lambda n: cube(n, 2), 4, 2.0),
    "Brownian walk, equal steps": (brownian3, 64, 2.0),
    "Brownian path, random times": (brownian3_times, 64, 2.0),
    "filled cube": (lambda n: cube(n, 3), 64, 3.0),
}


def row(method: str, name: str, true: float, est, tol: float) -> str:
    err = est.dimension - true
    z = err / est.stderr if est.stderr > 0 else float("inf")
    met = "yes" if abs(err) <= tol else "NO"
    flag = "lower bound" if est.details.get("resolution_limited") else ""
    return (f"{method:12s} {name:28s} {true:6.3f} {est.dimension:7.3f} {est.stderr:7.3f} "
            f"{err:+7.3f} {z:+6.1f}  {met:4s} {est.window[0]:9.3g}..{est.window[1]:<9.3g} "
            f"{flag}").rstrip()


def main() -> None:
    print(f"{'method':12s} {'set':28s} {'true':>6s} {'est':>7s} {'stderr':>7s} {'error':>7s} "
          f"{'err/sd':>6s}  met  window               flag")
    warnings.simplefilter("ignore", fd.ResolutionWarning)  # the flag column says it
    for name, (make, d, true) in SETS.items():
        if d > 1000:
            continue  # 50 000 x 10^4 float64 is 4 GB: correlation only
        X = embed(make(50_000), d, seed=3)
        est = fd.box_counting_dimension(X, n_grids=4)
        print(row("box", name, true, est, 0.15))
    for name, (make, d, true) in SETS.items():
        X = embed(make(4096), d, seed=1).astype(np.float32 if d > 1000 else np.float64)
        est = fd.correlation_dimension(X)
        print(row("correlation", name, true, est, 0.1 if true <= 2 else 0.2))


if __name__ == "__main__":
    main()
