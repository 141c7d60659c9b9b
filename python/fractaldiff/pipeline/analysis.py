"""Trajectory analysis of one recorded run: a JSON-able dict with every number and its error.

Uses only the public names of :mod:`fractaldiff`. The late-time window is where the paper's
theory applies: the last regime that :func:`fractaldiff.crossover` finds in R(t) (or the
window given in the config), reported with the results.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import fractaldiff as fd

from .errors import PipelineError

__all__ = ["analyze_trajectory", "load_trajectory", "bound_and_spectral_dimension", "est"]


def est(value: Any, stderr: Any = None, ci: Any = None, **extra: Any) -> dict[str, Any]:
    """A number with its uncertainty, as stored in results.json."""
    out: dict[str, Any] = {"value": _num(value), "stderr": _num(stderr)}
    if ci is not None:
        out["ci"] = [_num(ci[0]), _num(ci[1])]
    out.update(extra)
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _log_even(t: np.ndarray, y: np.ndarray, n: int = 300) -> tuple[list, list]:
    """Thin a curve to at most ``n`` points spread evenly in log t (for plots)."""
    if len(t) <= n:
        return [float(v) for v in t], [float(v) for v in y]
    pos = t > 0
    idx = np.unique(np.round(np.geomspace(1, pos.sum(), n)).astype(int) - 1)
    tt, yy = t[pos][idx], y[pos][idx]
    return [float(v) for v in tt], [float(v) for v in yy]


def load_trajectory(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recorded run (store, checkpoint folder, .npy) into memory.

    Returns a dict with ``W`` (T, D float array), ``steps`` (T,), ``layout`` (list of
    (name, start, stop) or None) and ``kind``. Raises :class:`PipelineError` when the path
    does not exist or holds no trajectory.
    """
    p = Path(path)
    if not p.exists():
        raise PipelineError(f"RUN path {str(p)!r} does not exist")
    layout = None
    try:
        if p.is_dir() and fd.is_store(p):
            run = fd.open_store(p)
            try:
                W = np.array(run, dtype=np.float64 if run.dtype == np.float64 else np.float32)
                steps = np.asarray(run.steps, dtype=np.int64)
                lay = run.layout
                if lay is not None:
                    layout = [(str(n), int(a), int(b)) for n, a, b in lay.ranges()]
                meta = dict(run.meta)
            finally:
                run.close()
            kind = "store"
        elif p.is_dir():
            run = fd.CheckpointFolder(p)
            W = np.asarray(run)
            steps = np.asarray(run.steps, dtype=np.int64)
            lay = getattr(run, "layout", None)
            if lay is not None:
                layout = [(str(n), int(a), int(b)) for n, a, b in lay.ranges()]
            meta = dict(run.meta)
            kind = "checkpoint folder"
        elif p.suffix == ".npy":
            W = np.load(p, mmap_mode="r")
            if W.ndim != 2:
                raise PipelineError(f"{str(p)!r} holds an array of shape {W.shape}; a trajectory "
                                    "is 2-D (snapshots T, parameters D)")
            W = np.asarray(W)
            steps = np.arange(W.shape[0], dtype=np.int64)
            meta = {}
            kind = ".npy"
        else:
            raise PipelineError(
                f"RUN path {str(p)!r} is not a trajectory: expected a snapshot store "
                "(directory), a checkpoint folder or a .npy file of shape (T, D)")
    except PipelineError:
        raise
    except (ValueError, TypeError, OSError, KeyError) as exc:
        raise PipelineError(f"RUN path {str(p)!r} could not be read as a trajectory: {exc}") \
            from None
    if W.ndim != 2 or W.shape[0] < 16 or W.shape[1] < 1:
        raise PipelineError(f"RUN {str(p)!r}: need at least 16 snapshots of >= 1 parameter, "
                            f"got shape {tuple(W.shape)}")
    if not np.issubdtype(W.dtype, np.floating):
        raise PipelineError(f"RUN {str(p)!r}: snapshots must be floating point, got {W.dtype}")
    if not np.isfinite(W).all():
        bad = np.argwhere(~np.isfinite(W))[0]
        raise PipelineError(f"RUN {str(p)!r}: non-finite value at snapshot {bad[0]}, "
                            f"parameter {bad[1]}")
    return {"W": W, "steps": steps, "layout": layout, "kind": kind, "meta": meta}


def _blocks(n_params: int, n_blocks: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n_params)
    k = max(2, min(n_blocks, n_params))
    return [np.sort(b) for b in np.array_split(perm, k)]


def _regimes(cx: Any) -> list[dict[str, Any]]:
    return [{"window": [float(r.window[0]), float(r.window[1])],
             **est(r.exponent, r.stderr, r.ci)} for r in cx.regimes]


def _fit_dict(fit: Any) -> dict[str, Any]:
    return {**est(fit.exponent, fit.stderr, fit.ci), "r2": _num(fit.r2),
            "window": [float(fit.window[0]), float(fit.window[1])], "n_points": int(fit.n_points),
            "stderr_source": str(fit.stderr_source)}


def analyze_trajectory(W: np.ndarray, steps: np.ndarray, *, layout: list | None = None,
                       late_window: Any = "auto", n_blocks: int = 8,
                       max_points_dimension: int = 800, seed: int = 0) -> dict[str, Any]:
    """Everything the report shows about one trajectory, except the LLC.

    Parameters
    ----------
    W : ndarray (T, D)
        Snapshots.
    steps : ndarray (T,)
        Optimizer step of each snapshot (increasing).
    layout : list of (name, start, stop), optional
        Parameter groups for the per-layer exponents.
    late_window : "auto" or [lo, hi]
        Fractions of the run's length (in steps since the first snapshot) bounding the late
        window; "auto" takes the last regime of :func:`fractaldiff.crossover` on R(t).
    n_blocks : int
        Random parameter blocks whose spread gives calibrated standard errors.
    max_points_dimension : int
        Snapshots (evenly strided from the late window) for the fractal dimensions.
    """
    T, D = W.shape
    steps = np.asarray(steps, dtype=np.float64)
    t = steps - steps[0]
    out: dict[str, Any] = {"n_snapshots": int(T), "n_params": int(D),
                           "steps": [float(steps[0]), float(steps[-1])]}
    spacing = np.diff(steps)
    equal = bool(np.allclose(spacing, spacing[0])) if T > 1 else True
    blocks = _blocks(D, n_blocks, seed)

    # R(t) from the first snapshot, and per-block R_b(t)^2 (they sum to R(t)^2)
    R = fd.displacement(W, ref=0)
    pos = t > 0
    tt, RR = t[pos], R[pos]
    if (RR <= 0).any():
        raise PipelineError("the trajectory does not move (R(t) = 0 after the first snapshot)")
    rows = np.stack([fd.displacement(W[:, b], ref=0)[pos] ** 2 for b in blocks])
    rows = np.maximum(rows, np.finfo(float).tiny)
    out["displacement"] = dict(zip(("t", "R"), _log_even(tt, RR)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cx = fd.crossover(tt, RR, max_breaks=2)
            out["displacement_crossover"] = {"breakpoints": [float(b) for b in cx.breakpoints],
                                             "regimes": _regimes(cx), "r2": _num(cx.r2)}
        except (ValueError, TypeError) as exc:
            cx = None
            out["displacement_crossover"] = {"error": str(exc)}

    fit = None
    if isinstance(late_window, str):
        # the fitting layer's own rule when it has one: the last regime of R(t)^2's blocks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = fd.fit_exponent(tt, rows, window="last_regime", combine_rows="sum")
            except (ValueError, TypeError):
                fit = None
    if fit is not None:
        lo, hi = float(fit.window[0]), float(fit.window[1])
        rule = ("fd.fit_exponent(window='last_regime') on R(t)^2 of the parameter blocks: "
                + str(getattr(fit, "window_rule", "last regime")))
    elif isinstance(late_window, str):
        if cx is not None and cx.regimes:
            lo, hi = cx.regimes[-1].window
            rule = (f"last regime of fd.crossover on R(t) ({len(cx.regimes)} regime(s)), "
                    f"t in [{lo:.4g}, {hi:.4g}] steps")
        else:
            lo, hi = tt[len(tt) // 2], tt[-1]
            rule = "second half of the run (fd.crossover failed)"
    else:
        lo, hi = float(late_window[0]) * tt[-1], float(late_window[1]) * tt[-1]
        rule = (f"configured window [{late_window[0]}, {late_window[1]}] of the run length, "
                f"t in [{lo:.4g}, {hi:.4g}] steps")
    in_win = (tt >= lo * (1 - 1e-9)) & (tt <= hi * (1 + 1e-9))
    if in_win.sum() < 8:  # too few points: widen to the last half
        lo, hi = tt[len(tt) // 2], tt[-1]
        rule += "; widened to the second half of the run (fewer than 8 points)"
        fit = None
    out["late_window"] = {"t": [float(lo), float(hi)], "rule": rule}

    if fit is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fd.fit_exponent(tt, rows, window=(lo, hi), combine_rows="sum", curve="msd")
    # R^2 ~ t^(2 alpha): the paper's alpha (Table 1) is half the fitted exponent
    exps = fd.DiffusionExponents(msd_exponent=fit.exponent, msd_exponent_stderr=fit.stderr,
                                 fit=fit, source="displacement")
    out["displacement_exponent"] = {
        **est(exps.displacement_exponent, exps.displacement_exponent_stderr,
              exps.displacement_exponent_ci),
        "r2": _num(fit.r2), "window": [float(fit.window[0]), float(fit.window[1])],
        "n_points": int(fit.n_points), "stderr_source": f"{n_blocks} random parameter blocks",
        "walk_dimension": est(exps.walk_dimension, exps.walk_dimension_stderr),
        "diffusion_type": exps.diffusion_type,
    }
    # same fit on all points, early regime for the figure
    if cx is not None and len(cx.regimes) > 1:
        out["early_regime"] = _regimes(cx)[0]

    # MSD over the late segment (time-averaged, equally spaced snapshots needed)
    late_idx = np.nonzero((t >= lo * (1 - 1e-9)) & (t <= hi * (1 + 1e-9)))[0]
    seg = late_idx if len(late_idx) >= 16 else np.arange(T)
    out["late_snapshots"] = [int(seg[0]), int(seg[-1])]
    if equal and len(seg) >= 16:
        Ws = W[seg[0]:seg[-1] + 1]
        Ts = Ws.shape[0]
        dstep = float(spacing[0]) if T > 1 else 1.0
        groups: dict[str, np.ndarray] = {}
        if layout:
            for name, a, b in layout:
                n_sub = max(2, min(n_blocks, (b - a) // 4)) if b - a >= 8 else 1
                for j, blk in enumerate(_blocks(b - a, n_sub, seed + 1)):
                    groups[f"{name}#{j}"] = a + blk
        else:
            for j, blk in enumerate(blocks):
                groups[f"all#{j}"] = blk
        m = fd.msd(Ws, groups=groups)
        lags = np.arange(1, Ts) * dstep
        total = m["total"][1:]
        out["msd"] = dict(zip(("lag", "msd"), _log_even(lags, total)))
        cap = max(8, int(0.25 * Ts))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mcx = fd.crossover(lags[:cap], total[:cap], max_breaks=2)
                out["msd_crossover"] = {"breakpoints": [float(b) for b in mcx.breakpoints],
                                        "regimes": _regimes(mcx), "r2": _num(mcx.r2)}
            except (ValueError, TypeError) as exc:
                out["msd_crossover"] = {"error": str(exc)}
            brows = np.stack([m[k][1:] for k in groups]) if not layout else None
            if brows is None:  # blocks within layers: regroup into n_blocks random sums
                keys = list(groups)
                perm = np.random.default_rng(seed + 2).permutation(len(keys))
                brows = np.stack([sum(m[keys[i]][1:] for i in part)
                                  for part in np.array_split(perm, min(n_blocks, len(keys)))])
            brows = np.maximum(brows, np.finfo(float).tiny)
            try:
                mf = fd.fit_msd(lags, brows, n_snapshots=Ts, snapshot_spacing=dstep,
                                combine_rows="sum")
                out["msd_exponent"] = {**_fit_dict(mf.fit),
                                       **est(mf.msd_exponent, mf.msd_exponent_stderr,
                                             mf.msd_exponent_ci)}
                win = mf.fit.window
            except (ValueError, TypeError) as exc:
                out["msd_exponent"] = {"error": str(exc)}
                win = None
            if layout and win is not None:
                per = {}
                for name, a, b in layout:
                    keys = [k for k in groups if k.rsplit("#", 1)[0] == name]
                    lrows = np.maximum(np.stack([m[k][1:] for k in keys]), np.finfo(float).tiny)
                    try:
                        if len(keys) >= 2:
                            lf = fd.fit_msd(lags, lrows, window=win, combine_rows="sum")
                        else:
                            lf = fd.fit_msd(lags, lrows[0], window=win, cov="independent")
                        per[name] = {**est(lf.msd_exponent, lf.msd_exponent_stderr,
                                           lf.msd_exponent_ci), "n_params": int(b - a),
                                     "r2": _num(lf.fit.r2)}
                    except (ValueError, TypeError) as exc:
                        per[name] = {"error": str(exc), "n_params": int(b - a)}
                out["per_layer"] = per
    else:
        out["msd_exponent"] = {"error": "snapshots are not equally spaced (or too few in the "
                                        "late window): the time-averaged MSD needs equal spacing"}

    # fractal dimensions of the late point cloud
    stride = max(1, int(math.ceil(len(seg) / max_points_dimension)))
    Wd = np.ascontiguousarray(W[seg[0]:seg[-1] + 1:stride])
    out["dimension_points"] = int(Wd.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["box_counting_dimension"] = _dimension(fd.box_counting_dimension, Wd, {},
                                                   {"min_count": 8, "min_coverage": 0.7})
        theiler = max(1, min(Wd.shape[0] // 10, 20))
        cd = _dimension(fd.correlation_dimension, Wd, {"theiler": theiler}, None)
        out["correlation_dimension"] = {**cd, "theiler": theiler}
    return out


def _dimension(func: Any, X: np.ndarray, kwargs: dict, relaxed: dict | None) -> dict[str, Any]:
    """A dimension estimate with its interval; retried with a relaxed window when few points
    leave the default rule no scaling region (and then said so)."""
    note = None
    try:
        d = func(X, **kwargs)
    except ValueError as exc:
        if relaxed is None:
            return {"error": str(exc)}
        try:
            d = func(X, **kwargs, **relaxed)
            note = (f"default window found no scaling region with {X.shape[0]} points; relaxed "
                    f"to {relaxed}")
        except Exception as exc2:  # reported, the other analyses go on
            return {"error": str(exc2)}
    except Exception as exc:  # reported, the other analyses go on
        return {"error": str(exc)}
    interval = (d.details or {}).get("interval")
    if interval is None:
        interval = (d.dimension - 1.96 * d.stderr, d.dimension + 1.96 * d.stderr)
    interval = (max(0.0, float(interval[0])), float(interval[1]))  # a dimension is >= 0
    out = est(d.dimension, d.stderr, interval)
    if d.takens is not None:
        out["takens"] = est(d.takens, d.takens_stderr)
    notes = []
    if (d.details or {}).get("resolution_limited"):
        notes.append("lower bound")
        out["resolution_limited"] = True
    if note:
        notes.append("relaxed window")
        out["relaxed_window"] = note
    if notes:
        out["note"] = ", ".join(notes)
    return out


def bound_and_spectral_dimension(analysis: dict[str, Any], llc: dict[str, Any]) -> dict[str, Any]:
    """d_s = 2 lambda_bar alpha and Lemma 3.4's check, from an analysis and an LLC summary."""
    de = analysis.get("displacement_exponent") or {}
    if not llc.get("available") or de.get("value") is None or not llc.get("mean"):
        reason = llc.get("reason") or "displacement exponent not available"
        return {"available": False, "reason": reason}
    exps = fd.DiffusionExponents(msd_exponent=2 * de["value"],
                                 msd_exponent_stderr=2 * (de["stderr"] or 0.0),
                                 source="displacement")
    lam, lam_se = float(llc["mean"]), float(llc.get("stderr") or 0.0)
    if lam <= 0:
        return {"available": False, "reason": f"time-averaged LLC {lam:.3g} is not positive"}
    ds = fd.spectral_dimension(lam, exps, mean_llc_stderr=lam_se)
    chk = fd.check_spectral_bound(lam, exps, mean_llc_stderr=lam_se)
    return {"available": True, "spectral_dimension": est(ds.value, ds.stderr, ds.ci),
            "margin": est(chk.margin.value, chk.margin.stderr, chk.margin.ci),
            "verdict": chk.verdict, "holds": bool(chk.satisfied),
            "significant": bool(chk.significant),
            "z_score": _num(chk.z_score)}
