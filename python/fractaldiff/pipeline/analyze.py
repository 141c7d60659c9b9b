"""``fractaldiff analyze RUN``: the main job's analysis and report for a user's recorded run."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import analyze_trajectory, bound_and_spectral_dimension, load_trajectory
from .errors import PipelineError
from .paper import PAPER
from .units import write_json_atomic

__all__ = ["analyze_run", "load_factory"]


def load_factory(spec: str, what: str) -> Any:
    """Import ``MODULE:FACTORY`` (the current directory is on the path) and call it."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise PipelineError(f"--{what} must be MODULE:FACTORY (e.g. mymodels:make_{what}), "
                            f"got {spec!r}")
    mod_name, attr = spec.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise PipelineError(f"--{what} {spec!r}: module {mod_name!r} could not be imported "
                            f"({exc})") from None
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise PipelineError(f"--{what} {spec!r}: {mod_name} has no callable {attr!r}")
    try:
        return fn()
    except Exception as exc:
        raise PipelineError(f"--{what} {spec!r}: calling {attr}() failed: "
                            f"{type(exc).__name__}: {exc}") from None


def _check_model_data(model: Any, data: Any, n_params: int, model_spec: str,
                      data_spec: str) -> tuple[Any, tuple]:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise PipelineError(f"--model {model_spec!r} returned {type(model).__name__}, not a "
                            "torch.nn.Module")
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        xy = (data.x_train, data.y_train)
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
        xy = (data[0], data[1])
    else:
        raise PipelineError(f"--data {data_spec!r} returned {type(data).__name__}; expected a "
                            "pair (x, y), (x_train, y_train, x_test, y_test) or a "
                            "fractaldiff.train.Dataset")
    try:
        n_x, n_y = len(xy[0]), len(xy[1])
    except TypeError:
        raise PipelineError(f"--data {data_spec!r}: x and y must be arrays or tensors") from None
    if n_x != n_y or n_x < 2:
        raise PipelineError(f"--data {data_spec!r}: x has {n_x} samples and y {n_y}; need the "
                            "same number, >= 2")
    n_model = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_model != n_params:
        raise PipelineError(f"--model {model_spec!r} has {n_model} trainable parameters but the "
                            f"run's snapshots have {n_params}: not the recorded model")
    return model, xy


def analyze_run(run: str | os.PathLike, out: str | os.PathLike | None = None, *,
                model: str | None = None, data: str | None = None, loss: str = "cross_entropy",
                late_window: Any = "auto", llc: dict[str, Any] | None = None,
                force: bool = False, seed: int = 0) -> Path:
    """Analyse a recorded trajectory and write results.json + report.html into ``out``.

    Parameters
    ----------
    run : str or os.PathLike
        The recorded trajectory.
    out : str or os.PathLike, optional
        The output folder (default: ``RUN.report`` next to ``run``).
    model, data : str, optional
        ``MODULE:FACTORY`` callables returning the torch model of the run and its training
        data (``(x, y)`` or a Dataset); give both or neither. They enable the LLC.
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        The model's loss for the LLC.
    late_window : "auto" or (float, float), default "auto"
        The late part of the run: the last regime of R(t), or ``(lo, hi)`` fractions of it.
    llc : dict, optional
        Overrides of the ``[llc]`` section of the default config.
    force : bool, default False
        Also clear a non-empty output folder that holds no ``results.json`` (one that does is
        overwritten anyway).
    seed : int, default 0
        Seed of the analysis and of the LLC's chains.

    Returns
    -------
    pathlib.Path
        The report's path, ``out/report.html``.
    """
    from . import config as _config
    from .run import versions

    t_start = time.perf_counter()
    run_p = Path(run)
    out_p = Path(out) if out is not None else run_p.with_name(run_p.name + ".report")
    traj = load_trajectory(run_p)  # raises PipelineError for a bad RUN
    if out_p.exists() and any(out_p.iterdir()):
        if not (out_p / "results.json").exists() and not force:
            raise PipelineError(f"output folder {str(out_p)!r} is not empty; pass --force or "
                                "choose another --out")
        if force or (out_p / "results.json").exists():
            for name in ("results.json", "report.html", "figures"):
                p = out_p / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    W, steps = traj["W"], traj["steps"]
    mdl = dat = None
    if model is not None:
        mdl, dat = _check_model_data(load_factory(model, "model"), load_factory(data, "data"),
                                     W.shape[1], model, data)
    out_p.mkdir(parents=True, exist_ok=True)
    cfg = _config.default_config()
    lcfg = dict(cfg["llc"], **(llc or {}))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ana = analyze_trajectory(W, steps, layout=traj["layout"], late_window=late_window,
                             n_blocks=cfg["analysis"]["n_blocks"],
                             max_points_dimension=cfg["analysis"]["max_points_dimension"],
                             seed=seed)
    ana["total_displacement"] = float(np.linalg.norm(W[-1].astype(np.float64) - W[0]))
    timings["analysis"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if mdl is None:
        llc_res = {"available": False, "reason": "no --model/--data factories given (the LLC "
                                                 "needs the model and its training data)"}
    else:
        from .llc import llc_over_snapshots

        a, b = ana["late_snapshots"]
        idx = sorted(set(np.linspace(a, b, lcfg["n_points"]).round().astype(int).tolist()))
        try:
            llc_res = llc_over_snapshots(mdl, dat, W, idx, lcfg, seed=seed, loss=loss,
                                         steps=[int(s) for s in steps])
        except (ValueError, TypeError, RuntimeError) as exc:
            llc_res = {"available": False, "reason": f"LLC estimation failed: {exc}"}
    timings["llc"] = time.perf_counter() - t0
    bound = bound_and_spectral_dimension(ana, llc_res)
    import fractaldiff as fd

    row = {"name": run_p.name, "label": run_p.name, "group": None, "n_params": int(W.shape[1]),
           "analysis": ana, "llc": llc_res, "bound": bound, "final": {}}
    from .run import summary_row

    res = {"format": "fractaldiff-results/1", "kind": "analyze", "run_path": str(run_p),
           "run_kind": traj["kind"], "run_meta": traj["meta"],
           "config": {"late_window": late_window, "llc": lcfg, "loss": loss,
                      "model": model, "data": data, "seed": seed},
           "config_hash": "", "versions": versions(), "build_info": fd.build_info(),
           "paper": PAPER, "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "runs": {run_p.name: row}, "errors": {}, "summary": [summary_row(row)],
           "per_layer": {run_p.name: ana.get("per_layer")}, "claims": [], "jobs": 1}
    from ..report import render_report

    res["timings"] = {"stages": timings, "total_wall": time.perf_counter() - t_start}
    write_json_atomic(out_p / "results.json.partial", res)
    t0 = time.perf_counter()
    render_report(out_p, res)
    timings["report"] = time.perf_counter() - t0
    res["timings"]["total_wall"] = time.perf_counter() - t_start
    os.replace(out_p / "results.json.partial", out_p / "results.json")
    write_json_atomic(out_p / "results.json", res)
    return render_report(out_p, res, figures=False)
