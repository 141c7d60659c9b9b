"""Units of work: one training run (or one ensemble) from a JSON-able spec to a result dict.

A unit runs in a worker process (``--jobs``) or inline, writes its snapshots and its
``result.json`` into its own cache folder, and is skipped when that ``result.json`` exists
(the cache key is a hash of the spec, so a changed setting is a different folder). torch,
``fractaldiff.train`` and ``fractaldiff.bayes`` are imported here, lazily.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import analyze_trajectory, bound_and_spectral_dimension, est, load_trajectory
from .errors import PipelineError
from .llc import llc_over_snapshots

__all__ = ["run_unit", "build_data", "build_model", "write_json_atomic", "read_json"]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(clean_json(obj), fh, indent=1, allow_nan=False, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def clean_json(obj: Any) -> Any:
    """A copy with NaN/Inf floats as None (JSON has no such numbers) and numpy as Python."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def build_data(spec: dict[str, Any]) -> Any:
    """The data set of a spec (``{"name": "moons" | "digits" | "stdlib-text", ...}``)."""
    from fractaldiff.train import digits, two_moons

    name = spec["name"]
    if name == "moons":
        return two_moons(spec["n_samples"], noise=spec.get("noise", 0.1), seed=spec["seed"])
    if name == "digits":
        return digits(seed=spec["seed"])
    if name == "stdlib-text":
        from fractaldiff.train.text import stdlib_corpus

        return stdlib_corpus(spec["n_chars"], seq_len=spec["seq_len"])
    raise ValueError(f"unknown data set {name!r}")  # pragma: no cover


def build_model(spec: dict[str, Any], data: Any, seed: int) -> Any:
    """The model of a spec (``{"kind": "mlp" | "cnn" | "char_transformer", ...}``)."""
    from fractaldiff.train import mlp
    from fractaldiff.train.models import char_transformer, cnn

    kind = spec["kind"]
    if kind == "mlp":
        return mlp(data.n_features, data.n_classes, width=spec["width"], depth=spec["depth"],
                   seed=seed)
    if kind == "cnn":
        return cnn((8, 8), data.n_classes, channels=tuple(spec["channels"]), seed=seed)
    if kind == "char_transformer":
        return char_transformer(data.vocab_size, d_model=spec["d_model"],
                                n_heads=spec["n_heads"], n_layers=spec["n_layers"],
                                max_len=max(128, data.x_train.shape[1]), seed=seed)
    raise ValueError(f"unknown model kind {kind!r}")  # pragma: no cover


def _lm_loss(out: Any, y: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def run_unit(spec: dict[str, Any], folder: str) -> dict[str, Any]:
    """Run one unit (cached): returns its result dict (also in ``folder/result.json``)."""
    folder_p = Path(folder)
    done = folder_p / "result.json"
    if done.exists():
        res = read_json(done)
        res["cached"] = True
        return res
    if folder_p.exists():  # left by a killed run: start this unit over
        shutil.rmtree(folder_p)
    folder_p.mkdir(parents=True)
    write_json_atomic(folder_p / "spec.json", spec)
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    t0 = time.perf_counter()
    kind = spec["kind"]
    if kind == "ensemble":
        res = _run_ensemble(spec, folder_p)
    elif kind in ("classifier", "lm"):
        res = _run_single(spec, folder_p)
    else:  # pragma: no cover
        raise ValueError(f"unknown unit kind {kind!r}")
    res["name"] = spec["name"]
    res["seconds"] = time.perf_counter() - t0
    res["cached"] = False
    write_json_atomic(done, res)
    return res


def _run_single(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    import torch

    from fractaldiff.train import Recorder, train
    from fractaldiff.train.text import train_lm

    data = build_data(spec["data"])
    model = build_model(spec["model"], data, spec["seed"])
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    timings: dict[str, float] = {}
    phases_out = []
    store = folder / "run.fdstore"
    for k, ph in enumerate(spec["phases"]):
        t0 = time.perf_counter()
        rec = None
        if ph.get("record"):
            rec = Recorder(model, str(store), every=spec["record_every"],
                           meta={"name": spec["name"], "phase": k, **{
                               kk: ph[kk] for kk in ("optimizer", "lr", "batch_size")}})
        try:
            if spec["kind"] == "lm":
                h = train_lm(model, data, optimizer=ph["optimizer"], lr=ph["lr"],
                             batch_size=ph["batch_size"], steps=ph["steps"],
                             seed=spec["seed"] + 1000 * k, recorder=rec,
                             progress=bool(spec.get("progress")))
                summary = {"final_loss": float(np.mean(h.loss[-20:])), "test_loss": h.test_loss,
                           "test_accuracy": h.test_accuracy, "stopped": h.stopped}
            else:
                h = train(model, data, optimizer=ph["optimizer"], lr=ph["lr"],
                          batch_size=ph["batch_size"], steps=ph["steps"],
                          seed=spec["seed"] + 1000 * k, recorder=rec, device="cpu")
                fin = h.final
                summary = {"final_loss": fin.get("train_loss"),
                           "train_accuracy": fin.get("train_accuracy"),
                           "test_loss": fin.get("test_loss"),
                           "test_accuracy": fin.get("test_accuracy"), "stopped": h.stopped}
        finally:
            if rec is not None:
                rec.close()
        summary.update({kk: ph[kk] for kk in ("optimizer", "lr", "batch_size", "steps")})
        summary["recorded"] = bool(ph.get("record"))
        phases_out.append(summary)
        timings[f"train phase {k + 1} ({ph['optimizer']})"] = time.perf_counter() - t0
    res: dict[str, Any] = {"kind": spec["kind"], "label": spec.get("label", spec["name"]),
                           "group": spec.get("group"), "n_params": int(n_params),
                           "phases": phases_out, "final": phases_out[-1]}
    if phases_out[-1].get("stopped"):
        res["error"] = f"training stopped: {phases_out[-1]['stopped']}"
        res["timings"] = timings
        return res

    t0 = time.perf_counter()
    traj = load_trajectory(store)
    acfg = spec["analysis"]
    ana = analyze_trajectory(traj["W"], traj["steps"], layout=traj["layout"],
                             late_window=acfg["late_window"], n_blocks=acfg["n_blocks"],
                             max_points_dimension=acfg["max_points_dimension"], seed=spec["seed"])
    ana["total_displacement"] = float(np.linalg.norm(traj["W"][-1].astype(np.float64)
                                                     - traj["W"][0]))
    timings["analysis"] = time.perf_counter() - t0
    res["analysis"] = ana

    t0 = time.perf_counter()
    lcfg = spec.get("llc")
    if not lcfg or not lcfg.get("enabled", True):
        res["llc"] = {"available": False, "reason": "disabled in the config ([llc] enabled)"}
    else:
        a, b = ana["late_snapshots"]
        idx = sorted(set(np.linspace(a, b, lcfg["n_points"]).round().astype(int).tolist()))
        if spec["kind"] == "lm":
            xy = (torch.as_tensor(data.x_train), torch.as_tensor(data.y_train))
            loss: Any = _lm_loss
            # a batch of sequences is seq_len examples: keep the SGLD batch at the LM's own
            lcfg = dict(lcfg, batch_size=min(lcfg["batch_size"], spec["phases"][-1]["batch_size"]))
        else:
            xy = (data.x_train, data.y_train)
            loss = "cross_entropy"
        try:
            res["llc"] = llc_over_snapshots(model, xy, traj["W"], idx, lcfg, seed=spec["seed"],
                                            loss=loss, steps=[int(s) for s in traj["steps"]],
                                            progress=bool(spec.get("progress")))
        except (ValueError, TypeError, RuntimeError) as exc:
            res["llc"] = {"available": False, "reason": f"LLC estimation failed: {exc}"}
    timings["llc"] = time.perf_counter() - t0
    res["bound"] = bound_and_spectral_dimension(ana, res["llc"])
    res["timings"] = timings
    del traj
    if not spec.get("keep_snapshots", False):
        shutil.rmtree(store, ignore_errors=True)
    return res


def _run_ensemble(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The moons ensemble: R(t) of every member at log-spaced steps, with early/late fits."""
    import fractaldiff as fd
    from fractaldiff.train import Recorder, log_schedule, train

    data = build_data(spec["data"])
    mspec = spec["model"]
    n_models = spec["n_models"]
    ph = spec["phases"][0]
    seeds = [spec["seed"] + i for i in range(n_models)]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def model_fn(s: int) -> Any:
        return build_model(mspec, data, s)

    method = "loop"
    try:
        from fractaldiff.train import train_ensemble  # noqa: F401
        method = "vmapped"
    except (ImportError, AttributeError):
        pass
    if method == "vmapped":
        from fractaldiff.train import train_ensemble

        er = train_ensemble(model_fn, data, n_models, lr=ph["lr"], batch_size=ph["batch_size"],
                            steps=ph["steps"], optimizer=ph["optimizer"], seeds=seeds,
                            device="cpu", displacement_points=spec["n_points"],
                            progress=bool(spec.get("progress")))
        steps = np.asarray(er.displacement_steps, dtype=np.float64)
        R = np.asarray(er.displacement, dtype=np.float64)
        acc = (np.asarray(er.test_accuracy, dtype=np.float64) if er.test_accuracy is not None
               else np.asarray(er.train_accuracy, dtype=np.float64))
        loss = np.asarray(er.train_loss, dtype=np.float64)
    else:
        sched = log_schedule(ph["steps"], spec["n_points"])
        Rs, accs, losses = [], [], []
        for i, s in enumerate(seeds):
            m = model_fn(s)
            path = folder / f"member{i}.fdstore"
            with Recorder(m, str(path), schedule=sched) as rec:
                h = train(m, data, optimizer=ph["optimizer"], lr=ph["lr"],
                          batch_size=ph["batch_size"], steps=ph["steps"], seed=s,
                          recorder=rec, device="cpu")
            with fd.open_store(path) as run:
                Rs.append(fd.displacement(run))
                st = np.asarray(run.steps, dtype=np.float64)
            shutil.rmtree(path, ignore_errors=True)
            accs.append(h.test_accuracy if h.test_accuracy is not None else np.nan)
            losses.append(h.final.get("train_loss", np.nan))
        steps, R = st, np.stack(Rs)
        acc, loss = np.asarray(accs, dtype=float), np.asarray(losses, dtype=float)
    timings["train (" + method + ")"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pos = steps > 0
    t, Rp = steps[pos], R[:, pos]
    if (Rp <= 0).any():
        raise PipelineError("a moons ensemble member did not move")
    tn = t / t[-1]
    mean_R = Rp.mean(axis=0)
    out: dict[str, Any] = {"kind": "ensemble", "method": method, "n_models": n_models,
                           "t_normalized": tn.tolist(), "steps": t.tolist(),
                           "mean_R": mean_R.tolist(),
                           "sd_R": (Rp.std(axis=0, ddof=1) if n_models > 1
                                    else 0 * mean_R).tolist(),
                           "test_accuracy": est(np.nanmean(acc),
                                                np.nanstd(acc, ddof=1) / np.sqrt(len(acc))
                                                if len(acc) > 1 else None),
                           "final_loss": float(np.nanmean(loss))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cx = fd.crossover(t, Rp, max_breaks=2) if n_models > 1 else fd.crossover(t, mean_R)
            out["crossover"] = {"breakpoints": [float(b) for b in cx.breakpoints],
                                "regimes": [{"window": [float(r.window[0]), float(r.window[1])],
                                             **est(r.exponent, r.stderr, r.ci),
                                             "prefactor": float(r.prefactor)}
                                            for r in cx.regimes], "r2": float(cx.r2)}
            regs = cx.regimes
        except (ValueError, TypeError) as exc:
            out["crossover"] = {"error": str(exc)}
            regs = ()
        fits = {}
        if regs:
            wins = {"early": regs[0].window, "late": regs[-1].window}
            if len(regs) == 1:
                half = t[len(t) // 2]
                wins = {"early": (t[0], half), "late": (half, t[-1])}
            for name, (lo, hi) in wins.items():
                try:
                    f = fd.fit_exponent(t, Rp if n_models > 1 else mean_R, window=(lo, hi),
                                        curve="displacement",
                                        cov=None if n_models > 1 else "independent")
                    fits[name] = {**est(f.exponent, f.stderr, f.ci), "r2": float(f.r2),
                                  "window": [float(f.window[0]), float(f.window[1])],
                                  "prefactor": float(f.prefactor),
                                  "window_normalized": [float(f.window[0] / t[-1]),
                                                        float(f.window[1] / t[-1])]}
                except (ValueError, TypeError) as exc:
                    fits[name] = {"error": str(exc)}
        out["fits"] = fits
    timings["analysis"] = time.perf_counter() - t0
    out["timings"] = timings
    return out
