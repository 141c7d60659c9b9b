"""A self-contained demonstration on built-in synthetic data: no download, no torch.

:func:`random_walk` makes a weight-like random-walk trajectory (every parameter a large offset
plus a cumulative sum of small Gaussian steps, stored as float32 like real weights);
:func:`run_demo` measures its all-lag MSD and fits the diffusion exponent, which for a random
walk is msd_exponent = 1 (ordinary diffusion, walk dimension 2).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._validation import check_int

__all__ = ["random_walk", "run_demo"]


def random_walk(
    n_snapshots: int = 2048,
    n_params: int = 20_000,
    *,
    step: float = 1e-3,
    seed: int = 0,
    dtype: Any = np.float32,
) -> np.ndarray:
    """A weight-like random-walk trajectory of shape ``(n_snapshots, n_params)``.

    Column d is ``o_d + cumsum(step * xi)`` with offsets ``o_d ~ N(0, 1)`` and steps
    ``xi ~ N(0, 1)``: large offsets and tiny steps, as in the weights of a trained network.

    Parameters
    ----------
    n_snapshots, n_params : int
        T and D.
    step : float
        Standard deviation of one step per parameter.
    seed : int
        Seed of numpy's default generator.
    dtype : numpy dtype, default float32

    Returns
    -------
    numpy.ndarray, shape (n_snapshots, n_params)
    """
    n_snapshots = check_int(n_snapshots, "n_snapshots", minimum=2)
    n_params = check_int(n_params, "n_params", minimum=1)
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step must be a positive finite number, got {step!r}")
    rng = np.random.default_rng(seed)
    offsets = rng.standard_normal(n_params)
    walk = np.cumsum(rng.standard_normal((n_snapshots, n_params)) * step, axis=0)
    return (offsets + walk).astype(dtype)


def run_demo(
    n_snapshots: int = 2048,
    n_params: int = 20_000,
    *,
    step: float = 1e-3,
    seed: int = 0,
    n_threads: int | None = None,
    plot: str | None = None,
    echo=print,
) -> dict[str, Any]:
    """Generate a random walk, compute its all-lag MSD and fit the diffusion exponent.

    Returns a dict with the MSD, the fit and timings; prints a short report through ``echo``.
    With ``plot`` a path, saves a log-log plot of the MSD with the fitted line (needs matplotlib).
    """
    from . import build_info, msd
    from .fitting import fit_exponent

    info = build_info()
    echo(f"fractaldiff {info['version']} demo: random walk of D={n_params} parameters x "
         f"T={n_snapshots} snapshots (float32, step {step:g})")
    X = random_walk(n_snapshots, n_params, step=step, seed=seed)
    t0 = time.perf_counter()
    m = msd(X, n_threads=n_threads)
    elapsed = time.perf_counter() - t0
    threads = n_threads or info["n_threads"]
    echo(f"all-lag MSD ({n_snapshots} lags) in {elapsed:.3f} s "
         f"[{info['simd']}, {threads} thread(s), {X.nbytes / 1e6:.0f} MB]")
    # An honest interval needs the scatter of independent replicates: split the parameters at
    # random into blocks, get every block's MSD from one more pass, fit them together.
    n_blocks = min(16, n_params)
    perm = np.random.default_rng(seed + 1).permutation(n_params)
    blocks = {f"block{i}": np.sort(perm[i::n_blocks]) for i in range(n_blocks)}
    per_block = msd(X, groups=blocks, n_threads=n_threads)
    rows = np.stack([per_block[name][1:] for name in blocks])
    lags = np.arange(1, n_snapshots)
    fit = fit_exponent(lags, rows, n_snapshots=n_snapshots)
    echo(f"msd_exponent beta = {fit.exponent:.3f} +- {fit.stderr:.3f}  (95% CI "
         f"{fit.ci[0]:.3f} .. {fit.ci[1]:.3f}, {n_blocks} random parameter blocks, "
         f"lags {fit.window[0]:g} .. {fit.window[1]:g}, r2 = {fit.r2:.4f})")
    echo(f"displacement_exponent (the paper's alpha) = beta/2 = {fit.exponent / 2:.3f}; "
         f"walk dimension d_walk = 2/beta = {2 / fit.exponent:.3f}")
    echo("a random walk diffuses normally: expected beta = 1, alpha = 0.5, d_walk = 2")
    if plot:
        ax = fit.plot()
        ax.set_title("fractaldiff demo: MSD of a random walk")
        ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
        echo(f"plot written to {plot}")
    return {"msd": m, "fit": fit, "seconds": elapsed}
