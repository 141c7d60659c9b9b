"""Box counting of a weight trajectory: occupied boxes per dyadic scale and the box dimension.

The snapshots W[t] are T points in R^D. For box sides eps_k = eps0 * 2^k (k = 0..n_scales-1)
the compiled kernel quantizes every value once, q = floor((x - o_d) / eps0), and gets every
coarser scale as q >> k. A snapshot's box at each scale is identified by two 64-bit sums over
the coordinates of randomly keyed terms (see ``cpp/include/fractaldiff/box_kernels.hpp`` for
the collision bound: below 2^-68 per pair of distinct boxes), so column blocks, threads and
machines merge by adding ids. Counting distinct ids per scale finishes the job.

Why every grid gets a random offset: a set spread over R^D by a random rotation spans only
about 1/sqrt(D) of its diameter along each axis. A grid anchored at each coordinate's minimum
then puts the whole set into one box until eps falls below that per-axis extent, and then into
almost T boxes within one octave: no power law. Shifting coordinate d by an offset u_d drawn
uniformly over the coarsest box (hence uniform modulo every finer dyadic box too) restores the
power law, so it is always done; ``n_grids`` > 1 averages several such grids.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from .. import _core
from ..engine.folds import check_status, map_reduce, prepare_input
from .._validation import (
    check_device,
    check_fraction,
    check_int,
    check_memory_limit,
    check_n_threads,
    check_options,
)
from .windows import DimensionEstimate, scaling_fit, resolve_scale_window, select_window

__all__ = ["box_counts", "box_counting_dimension", "chao1", "grid_offsets"]

_OPTIONS = ("device", "memory_limit", "progress")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
#: Default number of dyadic scales.
DEFAULT_SCALES = 16
#: Quantized coordinates must stay below this (int32 range of the kernel).
_Q_LIMIT = 2.0**31


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _grid_seed(seed: int, grid: int) -> int:
    s = np.array([(seed * 0x2545F4914F6CDD1D + grid * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF],
                 dtype=np.uint64)
    return int(splitmix64(s)[0])


def key_seed(seed: int, grid: int) -> int:
    """Seed of the box-id hash keys of grid ``grid`` under ``seed`` (shared with the online
    box ids of :mod:`fractaldiff.train.online`, so both give the same ids)."""
    return _grid_seed(seed, grid) ^ 0x5851F42D4C957F2D


def grid_offsets(columns: Any, coarsest: float, seed: int = 0, grid: int = 0) -> np.ndarray:
    """Random per-coordinate grid offsets, uniform on [0, coarsest), as used by box counting.

    The offset of coordinate d depends only on (seed, grid, d), so any block of columns can be
    processed independently (out of core, on other machines) with the same grid.

    Parameters
    ----------
    columns : array_like of int
        Global column (parameter) indices d.
    coarsest : float
        Side of the coarsest box.
    seed, grid : int
        Random seed and grid number.

    Returns
    -------
    numpy.ndarray of float64
    """
    d = np.asarray(columns, dtype=np.uint64)
    h = splitmix64(d ^ np.uint64(_grid_seed(seed, grid)))
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform on [0, 1)
    return u * float(coarsest)


def _minmax_block(block: np.ndarray, start: int, n_threads: int) -> list:
    lo, hi = np.empty(block.shape[1]), np.empty(block.shape[1])
    check_status(_core.box_minmax(block, lo, hi, n_threads))
    return [(start, lo, hi)]


def _concat(parts: list[list]) -> list:
    return [item for part in parts for item in part]


def _column_ranges(X: Any, n_cols: int, nt: int, func: str, limit: int, progress: Any
                   ) -> tuple[np.ndarray, np.ndarray]:
    mins = np.empty(n_cols)
    maxs = np.empty(n_cols)
    pieces = map_reduce(X, partial(_minmax_block, n_threads=nt), _concat, func=func,
                        memory_limit=limit, progress=progress)
    for start, lo, hi in pieces:
        mins[start:start + lo.size] = lo
        maxs[start:start + hi.size] = hi
    return mins, maxs


def _ids_block(block: np.ndarray, start: int, mins: np.ndarray, *, coarsest: float, seed: int,
               grid: int, eps0: float, n_scales: int, key_seed: int, n_threads: int
               ) -> np.ndarray:
    """Box ids (T, n_scales, 2) of one column block: sums mod 2^64 that add across blocks."""
    cols = np.arange(start, start + block.shape[1])
    origin = mins - grid_offsets(cols, coarsest, seed, grid)
    ids = np.zeros((block.shape[0], n_scales, 2), dtype=np.uint64)
    status = _core.fold_box_ids(block, start, origin, eps0, n_scales, key_seed, ids, n_threads)
    if status == _core.STATUS_OUT_OF_RANGE:  # pragma: no cover - guarded by the caller
        raise ValueError("box counting: a quantized coordinate left [0, 2^31); raise eps0")
    check_status(status)
    return ids


def _sum_ids(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0].copy()
    for p in parts[1:]:
        out += p  # uint64: wraps mod 2^64, as the box-id sums are defined
    return out


def _check_eps0(eps0: Any) -> float:
    if isinstance(eps0, (bool, np.bool_)) or not isinstance(eps0, (int, float, np.integer,
                                                                   np.floating)):
        raise TypeError(f"eps0 must be a positive number, got {type(eps0).__name__} {eps0!r}")
    eps0 = float(eps0)
    if not math.isfinite(eps0) or eps0 <= 0:
        raise ValueError(f"eps0 must be a finite number > 0, got {eps0}")
    return eps0


def _grid_ids(X: Any, where: str, index: int, mins: np.ndarray, *, coarsest: float, seed: int,
              grid: int, eps0: float, n_scales: int, nt: int, func: str, limit: int,
              progress: Any) -> np.ndarray:
    """Box-id sums (T, n_scales, 2) of all columns for one grid, on the CPU or the GPU (the
    same bits either way)."""
    ks = key_seed(seed, grid)
    if where == "cuda":
        from ..engine.gpu import gpu_box_ids

        def origin(a: int, b: int) -> np.ndarray:
            return mins[a:b] - grid_offsets(np.arange(a, b), coarsest, seed, grid)

        return gpu_box_ids(X, index, limit, progress, func, n_scales=n_scales, key_seed=ks,
                           eps0=eps0, origin=origin)
    fn = partial(_ids_block, coarsest=coarsest, seed=seed, grid=grid, eps0=eps0,
                 n_scales=n_scales, key_seed=ks, n_threads=nt)
    return map_reduce(X, fn, _sum_ids, block_args=lambda a, b: (mins[a:b],), func=func,
                      memory_limit=limit, progress=progress)


def _box_counts_per_grid(X: Any, eps0: Any, n_scales: Any, n_grids: Any, seed: Any,
                         n_threads: Any, opts: dict, func: str):
    check_options(opts, func, _OPTIONS)
    device = check_device(opts.get("device", "auto"), func)
    nt = check_n_threads(n_threads)
    n_grids = check_int(n_grids, "n_grids", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if n_scales is not None:
        n_scales = check_int(n_scales, "n_scales", minimum=1)
        if n_scales > 31:
            raise ValueError(f"n_scales must be <= 31 (dyadic scales of 31-bit boxes), got "
                             f"{n_scales}")
    if eps0 is not None:
        eps0 = _check_eps0(eps0)
    limit = check_memory_limit(opts.get("memory_limit"))
    progress = opts.get("progress")
    from ..engine.gpu import choose_device, gpu_column_ranges

    where, index = choose_device(device, X, func)
    if where == "cuda":
        t, d, mins, maxs = gpu_column_ranges(X, index, limit, progress, func, nt)
    else:
        X, t, d, nt = prepare_input(X, 1, "box counting", nt)
        mins, maxs = _column_ranges(X, d, nt, func, limit, progress)
    span = float(np.max(maxs - mins))  # largest per-coordinate extent (L-infinity diameter)
    if eps0 is None:
        # The coarsest box must hold the whole set: a randomly offset grid of side eps cuts
        # the set along coordinate d with probability ~ extent_d / eps, so N(eps) ~ 1 +
        # sum_d extent_d / eps at coarse scales. In high D the sum of the per-coordinate
        # extents is ~sqrt(D) times the largest one, so the coarsest box is the power of two
        # >= max(2 * largest extent, sum of extents), and 16 scales are added below twice the
        # largest extent.
        total = float(np.sum(maxs - mins))
        if span > 0:
            top = 2.0 ** math.ceil(math.log2(max(2 * span, total)))
            extra = int(round(math.log2(top))) - math.ceil(math.log2(2 * span))
        else:
            top, extra = 1.0, 0
        k = min(31, DEFAULT_SCALES + extra) if n_scales is None else n_scales
        eps0 = top / 2.0 ** (k - 1)
        n_scales = k
    elif n_scales is None:
        n_scales = 1 if span == 0 else max(1, min(31, math.ceil(math.log2(2 * span / eps0)) + 1))
    coarsest = eps0 * 2.0 ** (n_scales - 1)
    if span / eps0 + 2.0 ** (n_scales - 1) >= _Q_LIMIT:
        raise ValueError(
            f"eps0={eps0:g} is too small for the data: its largest per-coordinate extent "
            f"{span:g} spans {span / eps0:.3g} boxes, and box counting supports at most "
            f"2^31 boxes per coordinate (including the random offset of up to "
            f"2^(n_scales-1) = {2 ** (n_scales - 1)} boxes); use eps0 >= "
            f"{span / (_Q_LIMIT - 2.0 ** (n_scales - 1)):.3g}"
        )
    counts = np.empty((n_grids, n_scales), dtype=np.int64)
    rare = np.zeros((n_grids, n_scales, 2), dtype=np.int64)  # boxes holding 1 and 2 points
    for g in range(n_grids):
        ids = _grid_ids(X, where, index, mins, coarsest=coarsest, seed=seed, grid=g, eps0=eps0,
                        n_scales=n_scales, nt=nt, func=func, limit=limit, progress=progress)
        for k in range(n_scales):
            pairs = np.ascontiguousarray(ids[:, k, :]).view(np.dtype((np.void, 16)))
            occupancy = np.unique(pairs, return_counts=True)[1]
            counts[g, k] = occupancy.size
            rare[g, k] = np.bincount(np.minimum(occupancy, 3), minlength=4)[1:3]
    eps = eps0 * 2.0 ** np.arange(n_scales)
    return eps, counts, rare, t


def box_counts(X: Any, *, eps0: float | None = None, n_scales: int | None = None,
               n_grids: int = 1, seed: int = 0, n_threads: int | None = None,
               **opts: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Number of occupied boxes N(eps) of the snapshot cloud at dyadic scales.

    Box sides are :math:`\varepsilon_k = \varepsilon_0 2^k`, k = 0..n_scales-1; all scales come
    from one pass over the data per grid.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots (rows are points in R^D), as for :func:`fractaldiff.msd`.
    eps0 : float, optional
        Finest box side, in the units of X. Default: the coarsest box is the smallest power of
        two >= max(twice the largest per-coordinate extent, the sum of the per-coordinate
        extents) (so the whole set fits in about one box even in high D), and the finest is
        2^-16 of twice the largest extent (2^-(n_scales-1) of the coarsest if n_scales is given).
    n_scales : int, optional
        Number of dyadic scales (1..31). Default: 16 plus the octaves between twice the largest
        extent and the coarsest box when ``eps0`` is not given; otherwise enough scales to reach
        a box of twice the largest per-coordinate extent.
    n_grids : int, default 1
        Number of randomly offset grids; counts are averaged over them (cost grows linearly).
    seed : int, default 0
        Seed of the random grid offsets and hash keys (results are reproducible).
    n_threads : int, optional
        Threads for the compiled kernels.
    memory_limit : int or str, optional
        Bound on the working set when X streams from disk (as for :func:`fractaldiff.msd`).
    progress : bool, optional
        Show a progress bar (default: on a terminal, for data >= 1 GiB).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Where to compute, as for :func:`fractaldiff.msd`: "auto" (default) uses the GPU for data
        in CUDA device memory (torch CUDA tensors, ``__cuda_array_interface__``; read in place,
        any strides) and the CPU otherwise; "cuda" streams host data to the GPU in column blocks.
        The box ids are the same bits on either device, so the counts are identical.

    Returns
    -------
    eps : numpy.ndarray of float64, shape (n_scales,)
        Box sides, ascending.
    counts : numpy.ndarray of float64, shape (n_scales,)
        Occupied boxes at each side, averaged over the grids (integers for one grid);
        non-increasing in eps for each grid, at most T.

    Raises
    ------
    ValueError
        Bad shape, T = 0, D = 0, NaN/Inf in X, ``eps0`` <= 0 or so small that a coordinate
        would span 2^31 boxes or more, ``n_scales`` outside 1..31.
    TypeError
        Non-numeric data or arguments, unknown options.
    RuntimeError
        ``device="cuda"`` without a usable GPU, or a CUDA error.
    MemoryError
        ``memory_limit`` too small for the GPU's id sums (T * n_scales * 16 bytes) and staging.

    Notes
    -----
    Each grid is shifted by a random offset per coordinate, uniform over the coarsest box (see
    the module docstring for why this matters in high D). Box ids are two 64-bit randomly keyed
    sums; two distinct boxes get the same id with probability at most 2^-68 (2^-128 in the
    typical case), so the counts are exact except with probability below
    ``n_scales * T**2 * 2**-69``.

    Cost: one min/max pass plus one pass per grid over X, about 4 integer multiply-adds per
    element and scale, vectorized and threaded; memory O(T * n_scales) beyond X, which is never
    copied when it is float32/float64.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> t = np.linspace(0, 1, 4096)
    >>> X = np.outer(t, np.ones(20)) / np.sqrt(20)          # a segment in 20-D
    >>> eps, n = fd.box_counts(X, n_scales=8)
    >>> bool(np.all(np.diff(n) <= 0)), int(n.max()) <= 4096
    (True, True)
    """
    eps, counts, _, _ = _box_counts_per_grid(X, eps0, n_scales, n_grids, seed, n_threads, opts,
                                          "box_counts")
    return eps, counts.mean(axis=0)


CORRECTIONS = ("chao1", None)


def chao1(counts: Any, singletons: Any, doubletons: Any) -> np.ndarray:
    r"""Bias-corrected Chao1 estimate of the number of occupied boxes, unseen ones included.

    ``N + f1 (f1 - 1) / (2 (f2 + 1))`` for ``N`` boxes seen, ``f1`` of them holding one sample
    point and ``f2`` two (Chao 1987, bias-corrected form). It is a lower bound of the
    expected number of boxes of positive mass and exact when every box has the same mass.

    Parameters
    ----------
    counts : array_like
        Occupied boxes N (per scale, per grid: any shape).
    singletons : array_like
        Boxes holding exactly one point, same shape.
    doubletons : array_like
        Boxes holding exactly two points, same shape.

    Returns
    -------
    numpy.ndarray of float64
        The estimates, same shape; never below ``counts``.

    Examples
    --------
    >>> from fractaldiff.boxcount import chao1
    >>> round(float(chao1(100, 20, 10)), 2)   # 100 seen + 20 * 19 / 22 unseen
    117.27
    """
    n = np.asarray(counts, dtype=float)
    f1 = np.asarray(singletons, dtype=float)
    f2 = np.asarray(doubletons, dtype=float)
    return n + f1 * (f1 - 1.0) / (2.0 * (f2 + 1.0))


def box_counting_dimension(X: Any, *, window: Any = "auto", eps0: float | None = None,
                           n_scales: int | None = None, n_grids: int = 1, seed: int = 0,
                           correction: str | None = "chao1", min_count: int = 16,
                           min_coverage: float = 0.9, max_fill: float | None = None,
                           tolerance: float = 0.05, n_threads: int | None = None,
                           **opts: Any) -> DimensionEstimate:
    r"""Box-counting dimension of the snapshot cloud: the slope of log N(eps) vs log(1/eps).

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`box_counts`.
    window : "auto" or (float, float), default "auto"
        Scaling region: the box sides ``(smallest, largest)`` to fit over, or "auto" (see Notes).
    eps0, n_scales, n_grids, seed, n_threads, device
        As for :func:`box_counts`.
    correction : {"chao1", None}, default "chao1"
        Fit the Chao1 estimate of the number of occupied boxes (seen ones plus an estimate of
        those no sample point fell in, from the boxes holding exactly one and two points; see
        :func:`chao1`) instead of the raw count. It removes part of the low bias of a finite
        sample (Notes). ``None`` fits the raw counts.
    min_count : int, default 16
        Automatic window: ignore scales with fewer occupied boxes (the coarse end, where a few
        boxes and the grid's position dominate).
    min_coverage : float, default 0.9
        Automatic window: ignore scales whose sample coverage ``1 - f1 / T`` (the Good-Turing
        estimate of the fraction of the set's mass in boxes that hold a sample point; ``f1``
        boxes hold exactly one) is below this. There most boxes are seen once or not at all
        and no count estimate is reliable.
    max_fill : float, optional
        Automatic window: also ignore scales with more than ``max_fill * T`` boxes.
    tolerance : float, default 0.05
        Automatic window: largest relative difference between the slopes of the window's two
        halves (:func:`fractaldiff.dimension.select_window`).

    Returns
    -------
    DimensionEstimate
        ``.dimension``, ``.stderr``, ``.window`` (smallest, largest eps used), ``.eps``,
        ``.counts`` (the fitted counts: Chao1 estimates by default, mean over grids);
        ``.details``: ``"raw_counts"`` (mean over grids), ``"counts_per_grid"``,
        ``"singletons"`` and ``"doubletons"`` per grid and scale, ``"coverage"`` per scale,
        ``"correction"``, ``"raw_dimension"`` (the slope of the raw counts over the same
        window) and the terms of the standard error (``"stderr_terms"``).

    Raises
    ------
    ValueError
        As for :func:`box_counts`; also for a bad ``correction``, ``min_coverage`` or
        ``tolerance``, and when fewer than 3 scales are usable for the automatic window (2
        for a manual one): the message says how many and how to get more.

    Notes
    -----
    Automatic window: among scales with at least ``min_count`` boxes and sample coverage at
    least ``min_coverage``, the longest run of at least 3 consecutive scales in which the
    slopes fitted to the run's two halves agree within ``tolerance``
    (:func:`fractaldiff.dimension.select_window`).

    Uncertainty: the terms below, added in quadrature (each is in ``details["stderr_terms"]``):
    the straight-line fit's standard error; half the difference between the slopes of the
    window's two halves (curvature: the systematic error of a finite scaling range); for
    ``n_grids`` > 1 the scatter of the per-grid slopes / sqrt(n_grids); and a finite-sample
    term, twice the change of the slope made by the Chao1 correction. Chao1 is a lower bound:
    measured against 20x larger samples of the same sets in R^64, it recovers only about half
    of the boxes a sample of 50 000 points misses (the occupancy of boxes in high D is very
    uneven: a set cuts many boxes only at a corner), so the bias left after the correction is
    about as large as the correction itself.

    Bias, measured with 50 000 points embedded in R^64 by a random orthonormal map, 4 grids
    (tests/test_fractal_properties.py), estimate (error / reported stderr): Cantor set 0.634
    (true 0.631), Sierpinski triangle 1.64 (1.585), segment 1.00, filled square 1.87 (-1.2
    sd), filled square in R^4 1.88 (-1.8 sd), Brownian trace in 3-D 1.77 (true 2, -1.5 sd),
    filled cube 2.48 (true 3, -3 sd). Box counting is biased low; for dimension >= 2 the
    bias grows with the dimension and with D at a fixed number of points, since the coarse
    scales bend towards lower slopes (a randomly oriented k-flat in R^D is cut by many box
    faces: N(eps) has lower-order terms in 1/eps with coefficients growing like powers of
    sqrt(D)) and the fine scales are under-sampled. Prefer the correlation dimension
    (:func:`fractaldiff.correlation_dimension`) for such sets.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(20000, 1)) @ rng.standard_normal((1, 30))   # a segment in 30-D
    >>> est = fd.box_counting_dimension(X)
    >>> round(est.dimension, 1)
    1.0
    """
    func = "box_counting_dimension"
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be 'chao1' or None, got {correction!r}")
    min_count = check_int(min_count, "min_count", minimum=1)
    min_coverage = check_fraction(min_coverage, "min_coverage", low_open=False)
    if max_fill is not None:
        max_fill = check_fraction(max_fill, "max_fill")
    tolerance = check_fraction(tolerance, "tolerance", high_open=True)
    eps, counts, rare, t = _box_counts_per_grid(X, eps0, n_scales, n_grids, seed, n_threads,
                                                opts, func)
    raw = counts.mean(axis=0)
    f1, f2 = rare[..., 0], rare[..., 1]
    fitted_per_grid = chao1(counts, f1, f2) if correction == "chao1" else counts.astype(float)
    mean = fitted_per_grid.mean(axis=0)
    coverage = 1.0 - f1.mean(axis=0) / t
    x = -np.log(eps)[::-1]  # log(1/eps), increasing
    y = np.log(mean)[::-1]
    if isinstance(window, str) and window == "auto":
        ok = (raw >= min_count) & (coverage >= min_coverage)
        if max_fill is not None:
            ok &= raw <= max_fill * t
        cand = ok[::-1]
        ncand = int(cand.sum())
        if ncand < 3:
            fill = "" if max_fill is None else f", at most max_fill*T={max_fill * t:g} boxes"
            raise ValueError(
                f"{func}: only {ncand} scale(s) have at least min_count={min_count} occupied "
                f"boxes and sample coverage >= min_coverage={min_coverage:g}{fill}; the "
                f"automatic window needs at least 3 (counts: {raw.astype(int).tolist()}, "
                f"coverage: {np.round(coverage, 3).tolist()}). Use more snapshots (T={t}: "
                f"about 8 * 4**dimension points are needed for 3 octaves), more scales or a "
                f"smaller eps0, or pass window=(eps_lo, eps_hi)"
            )
        start, stop = select_window(x, y, cand, min_points=3, tolerance=tolerance)
        fill = "" if max_fill is None else f", N <= {max_fill:g}*T"
        rule = (f"auto: longest run of >= 3 scales with N >= {min_count}, coverage >= "
                f"{min_coverage:g}{fill}, whose two halves' slopes agree within "
                f"{100 * tolerance:g}%")
    else:
        lo, hi = resolve_scale_window(window, eps, func)
        # indices in the reversed (increasing 1/eps) order
        start, stop = len(eps) - hi, len(eps) - lo
        rule = "manual"
    dim, intercept, fit_err = scaling_fit(x, y, start, stop)
    raw_dim = scaling_fit(x, np.log(np.maximum(raw, 1))[::-1], start, stop)[0]
    terms = {"fit": fit_err, "sampling": 2.0 * abs(dim - raw_dim), "grids": 0.0}
    g = counts.shape[0]
    if g > 1:
        per_grid = [scaling_fit(x, np.log(np.maximum(c, 1))[::-1], start, stop)[0]
                    for c in fitted_per_grid]
        terms["grids"] = math.sqrt(float(np.var(per_grid, ddof=1)) / g)
    stderr = math.sqrt(sum(v * v for v in terms.values()))
    ws = np.exp(-x[start:stop])
    return DimensionEstimate(
        method="box counting",
        dimension=float(dim),
        stderr=float(stderr),
        window=(float(ws.min()), float(ws.max())),
        scales=eps,
        values=mean,
        n_points=t,
        window_rule=rule,
        intercept=float(intercept),
        details={"counts_per_grid": counts, "n_grids": g, "raw_counts": raw,
                 "singletons": f1, "doubletons": f2, "coverage": coverage,
                 "correction": correction, "raw_dimension": float(raw_dim),
                 "stderr_terms": terms},
    )

