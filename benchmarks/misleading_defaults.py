"""Cases where fitting defaults used to mislead, run on whichever fractaldiff is importable
(for before/after comparisons).

    python benchmarks/misleading_defaults.py --cache /tmp/misleading.npz   # trains once, caches curves
    PYTHONPATH=<old checkout>/python python benchmarks/misleading_defaults.py --cache /tmp/misleading.npz

1. A small CNN on the 8x8 digits, 3000 SGD steps (and Adam), recorded every step with
   fractaldiff.train: crossover and fit_displacement on R(t) from initialization.
2. The MSD of 8 random parameter blocks of the SGD run: the default fit and the bound check.
3. The README's bound example (Brownian motion sits on the bound).
4. The Henon attractor embedded isometrically in R^1000 (Grassberger & Procaccia: 1.21 +- 0.01).
5. The Menger sponge (log 20 / log 3 = 2.727) from 50 000 points in R^500, box counting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np

import fractaldiff as fd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from fractal_sets import henon  # noqa: E402


def train_runs(cache: str) -> dict:
    if os.path.exists(cache):
        return dict(np.load(cache))
    from fractaldiff.train import Recorder, digits, train
    from fractaldiff.train.models import cnn

    data = digits(seed=0)
    out = {}
    for opt, lr in (("sgd", 0.1), ("adam", 1e-3)):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{opt}.fdstore")
            model = cnn(seed=0)
            with Recorder(model, path, every=1) as rec:
                train(model, data, optimizer=opt, lr=lr, batch_size=32, steps=3000, seed=0,
                      recorder=rec)
            with fd.open_store(path) as s:
                steps = np.asarray(s.steps, dtype=float)
                X = np.asarray(s[:])
            out[f"{opt}_steps"] = steps
            out[f"{opt}_R"] = np.linalg.norm(X - X[0], axis=1)
            if opt == "sgd":
                rng = np.random.default_rng(0)
                blocks = np.array_split(rng.permutation(X.shape[1]), 8)
                out["sgd_block_msd"] = np.stack(
                    [fd.msd(np.ascontiguousarray(X[:, np.sort(b)])) for b in blocks])
    np.savez(cache, **out)
    return out


def menger(n: int, seed: int = 0, depth: int = 12) -> np.ndarray:
    cells = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)
                      if (i == 1) + (j == 1) + (k == 1) < 2], float)
    digits_ = np.random.default_rng(seed).integers(0, 20, size=(n, depth))
    return np.einsum("k,nkd->nd", 3.0 ** -np.arange(1, depth + 1), cells[digits_])


def isometric(P: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed + 1000).standard_normal((dim, P.shape[1])))
    return P @ Q.T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "misleading_defaults.npz"))
    ap.add_argument("--skip-sets", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    new = hasattr(fd, "WindowWarning")
    print(f"fractaldiff from {os.path.dirname(fd.__file__)} ({'new' if new else 'old'})")
    runs = train_runs(args.cache)

    print("\n# 1. CNN on digits, R(t) from initialization, 3000 steps")
    for opt in ("sgd", "adam"):
        t, R = runs[f"{opt}_steps"][1:], runs[f"{opt}_R"][1:]
        print(f"{opt}: crossover(t, R):", fd.crossover(t, R))
        print(f"{opt}: crossover(t, R, n_breaks=2):", fd.crossover(t, R, n_breaks=2))
        print(f"{opt}: fit_displacement(t, R):", fd.fit_displacement(t, R))
        if new:
            print(f"{opt}: fit_displacement(t, R, window='last_regime'):",
                  fd.fit_displacement(t, R, window="last_regime"))

    print("\n# 2. MSD of 8 random parameter blocks (SGD), bound check with lambda = 10 +- 1")
    rows = runs["sgd_block_msd"][:, 1:]
    lags = np.arange(1, rows.shape[1] + 1)
    n_snap = rows.shape[1] + 1
    ex = fd.fit_msd(lags, rows, n_snapshots=n_snap)
    print("fit_msd default:", ex)
    print("bound:", fd.check_spectral_bound(10.0, ex, mean_llc_stderr=1.0))
    if new:
        late = fd.fit_msd(lags, rows, n_snapshots=n_snap, window="last_regime")
        print("fit_msd last_regime:", late)
        print("bound:", fd.check_spectral_bound(10.0, late, mean_llc_stderr=1.0))

    print("\n# 3. README bound example")
    rng = np.random.default_rng(1)
    W = np.cumsum(rng.standard_normal((2000, 400)), axis=0)
    blocks = {f"b{i}": np.arange(i, 400, 8) for i in range(8)}
    brows = np.stack([v[1:] for k, v in fd.msd(W, groups=blocks).items() if k != "total"])
    bex = fd.fit_msd(np.arange(1, 2000), brows, n_snapshots=2000)
    print(fd.check_spectral_bound(32.0, bex, mean_llc_stderr=1.0))

    if args.skip_sets:
        return
    print("\n# 4. Henon attractor in R^1000 (reference 1.21 +- 0.01)")
    for n in (2000, 4000):
        print(f"N={n}:", fd.correlation_dimension(isometric(henon(n, burn=1000), 1000)))

    print("\n# 5. Menger sponge (2.727) from 50 000 points in R^500, box counting")
    X = isometric(menger(50000), 500)
    print(fd.box_counting_dimension(X, n_grids=4))


if __name__ == "__main__":
    main()
