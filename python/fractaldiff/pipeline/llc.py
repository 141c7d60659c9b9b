"""λ̄, the time-averaged LLC over the late window, through :func:`fractaldiff.bayes.estimate_llc`.

When the Bayesian module is not importable the summary says so (``available: False`` and
the reason); no number is ever made up.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np

__all__ = ["bayes_status", "llc_over_snapshots", "set_flat_params"]


def bayes_status(*names: str) -> tuple[bool, str]:
    """Whether ``fractaldiff.bayes`` provides ``names`` (and why not)."""
    try:
        import fractaldiff.bayes as bayes
    except ImportError as exc:
        return False, f"fractaldiff.bayes is not available in this version ({exc})"
    for name in names:
        try:
            getattr(bayes, name)
        except (AttributeError, ImportError) as exc:
            return False, f"fractaldiff.bayes.{name} is not available in this version ({exc})"
    return True, ""


def set_flat_params(model: Any, w: np.ndarray) -> None:
    """Load one flat snapshot (the Recorder's order: trainable parameters, in order)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    if n != w.shape[-1]:
        raise ValueError(f"the model has {n} trainable parameters but the run's snapshots "
                         f"have {w.shape[-1]}")
    torch.nn.utils.vector_to_parameters(torch.as_tensor(np.asarray(w, dtype=np.float32)), params)


def _refresh_batchnorm(model: Any, x: Any) -> None:
    """Recompute BatchNorm running statistics at the current weights (exact averages)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = model.training
    model.train()
    with torch.no_grad():
        model(x)
    model.train(was)
    for m, mom in zip(bns, saved):
        m.momentum = mom


def llc_over_snapshots(model: Any, data: tuple, W: np.ndarray, indices: list[int],
                       cfg: dict[str, Any], *, seed: int, loss: str | Callable = "cross_entropy",
                       steps: list[int] | None = None, progress: bool = False) -> dict[str, Any]:
    """λ̂ at the snapshots ``indices`` and λ̄ = their mean, with a standard error.

    The standard error of λ̄ combines the spread of λ̂ over the snapshots (its standard error
    of the mean) with the estimator's own standard error (each λ̂'s ``stderr``), in quadrature.
    """
    ok, reason = bayes_status("estimate_llc")
    if not ok:
        return {"available": False, "reason": reason}
    if bayes_status("llc_trajectory")[0]:
        return _with_llc_trajectory(model, data, W, indices, cfg, seed=seed, loss=loss,
                                    steps=steps, progress=progress)
    import torch

    from fractaldiff.bayes import estimate_llc

    x, y = data
    xt = torch.as_tensor(x)
    per, per_se, at = [], [], []
    notes: list[str] = []
    healthy: list[bool] = []
    for j, i in enumerate(indices):
        set_flat_params(model, W[i])
        _refresh_batchnorm(model, xt)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = estimate_llc(model, (x, y), loss=loss, n_chains=cfg["n_chains"],
                               n_draws=cfg["n_draws"], n_burnin=cfg["n_burnin"],
                               step_size=cfg["step_size"], localization=cfg["localization"],
                               batch_size=min(cfg["batch_size"], len(x)), seed=seed + j,
                               progress=False)
        for w in caught:
            msg = str(w.message)
            if msg not in notes:
                notes.append(msg)
        healthy.append(bool(getattr(res, "healthy", True)))
        per.append(float(res.mean))
        per_se.append(float(res.stderr))
        at.append(int(steps[i]) if steps is not None else int(i))
    per_a = np.asarray(per)
    mean = float(per_a.mean())
    sem = float(per_a.std(ddof=1) / math.sqrt(len(per_a))) if len(per_a) > 1 else 0.0
    est_se = float(math.sqrt(np.sum(np.square(per_se))) / len(per_se))
    stderr = math.hypot(sem, est_se)
    return {"available": True, "mean": mean, "stderr": stderr, "per_snapshot": per,
            "per_snapshot_stderr": per_se, "steps": at, "final": per[-1],
            "final_stderr": per_se[-1], "healthy": healthy, "warnings": notes[:10],
            "settings": {k: cfg[k] for k in ("n_chains", "n_draws", "n_burnin", "step_size",
                                             "localization", "batch_size")}}


def _with_llc_trajectory(model: Any, data: tuple, W: np.ndarray, indices: list[int],
                         cfg: dict[str, Any], *, seed: int, loss: Any,
                         steps: list[int] | None, progress: bool = False) -> dict[str, Any]:
    """λ̄ through :func:`fractaldiff.bayes.llc_trajectory` (its exclusion rule, time weights
    of Eq. 16, BatchNorm statistics recomputed per snapshot)."""
    from fractaldiff.bayes import llc_trajectory

    x, y = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = llc_trajectory(np.asarray(W, dtype=np.float32), model, (x, y), at=list(indices),
                            loss=loss, n_chains=cfg["n_chains"], n_draws=cfg["n_draws"],
                            n_burnin=cfg["n_burnin"], step_size=cfg["step_size"],
                            localization=cfg["localization"],
                            batch_size=min(cfg["batch_size"], len(x)), seed=seed,
                            progress=progress, weights="time", batchnorm="recompute")
    notes: list[str] = []
    for w in caught:
        if str(w.message) not in notes:
            notes.append(str(w.message))
    values = [float(v) for v in np.asarray(tr.values, dtype=float)]
    ses = [float(v) for v in np.asarray(tr.stderrs, dtype=float)]
    at = [int(steps[i]) if steps is not None else int(i) for i in np.asarray(tr.rows)]
    out = {"per_snapshot": values, "per_snapshot_stderr": ses, "steps": at,
           "included": [bool(v) for v in np.asarray(tr.included)],
           "flags": [list(f) for f in tr.flags], "exclusion_rule": str(tr.rule),
           "final": values[-1], "final_stderr": ses[-1], "warnings": notes[:10],
           "estimator": "fractaldiff.bayes.llc_trajectory (time-weighted, Eq. 16)",
           "settings": {k: cfg[k] for k in ("n_chains", "n_draws", "n_burnin", "step_size",
                                             "localization", "batch_size")}}
    mean, se = float(tr.mean_llc), float(tr.mean_llc_stderr)
    if not (math.isfinite(mean) and math.isfinite(se)):
        out.update({"available": False, "reason": "every LLC estimate of the late window was "
                                                  "excluded as unhealthy: " + "; ".join(
                                                      sorted({f for fl in tr.flags for f in fl}))})
        return out
    out.update({"available": True, "mean": mean, "stderr": se})
    return out
