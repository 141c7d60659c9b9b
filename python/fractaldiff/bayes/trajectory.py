"""lambda-hat along a recorded training run and its time average: :func:`llc_trajectory`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ._engine import (
    as_tensors,
    check_count,
    check_pos,
    default_nbeta,
    emit,
    make_module_potential,
    run_sgld,
    summarize,
    torch_threads,
)
from .llc import DEFAULTS, LOCALIZATION_MODEL, LLCResult, check_common, init_losses

__all__ = ["LLCTrajectory", "llc_trajectory", "run_group"]

#: Flags that exclude a snapshot from lambda-bar under the default rule.
UNHEALTHY = ("diverged", "negative", "below_init")


@dataclass(repr=False)
class LLCTrajectory:
    """lambda-hat at snapshots of a run and the time average lambda-bar (paper Eq. 16).

    Attributes
    ----------
    rows : numpy.ndarray of int
        Snapshot (row) indices estimated.
    steps : numpy.ndarray of int
        Their training steps (the row index where the run records none).
    values, stderrs : numpy.ndarray of float
        lambda-hat and its between-chain standard error at each snapshot.
    included : numpy.ndarray of bool
        Whether each snapshot enters lambda-bar (see ``rule``).
    flags : list of list of str
        Diagnostic flags raised at each snapshot.
    results : list of LLCResult
        The full result at each snapshot (traces, acceptance, diagnostics).
    mean_llc : float
        lambda-bar over the included snapshots.
    mean_llc_stderr : float
        Its standard error, sqrt(sum_i w_i² se_i²) (SGLD error only; the snapshots' chains
        are independent).
    weights : numpy.ndarray
        The averaging weights of the included snapshots (sum to 1; 0 for excluded ones).
    rule : str
        The exclusion rule applied, in words.
    lambda_bar : Estimate
        ``fractaldiff.Estimate(mean_llc, mean_llc_stderr)``: pass it to
        ``fd.spectral_dimension`` / ``fd.check_spectral_bound``.
    """

    rows: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    stderrs: np.ndarray
    included: np.ndarray
    flags: list[list[str]]
    results: list[LLCResult]
    mean_llc: float
    mean_llc_stderr: float
    weights: np.ndarray
    rule: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def lambda_bar(self) -> Any:
        """lambda-bar ± stderr as ``fractaldiff.Estimate`` (same as :meth:`as_estimate`)."""
        return self.as_estimate()

    def as_estimate(self, confidence: float = 0.95) -> Any:
        """lambda-bar as ``fractaldiff.Estimate``, for ``fd.spectral_dimension`` and
        ``fd.check_spectral_bound``."""
        from .. import Estimate

        return Estimate(float(self.mean_llc), float(self.mean_llc_stderr), confidence)

    def plot(self, ax: Any = None) -> Any:
        """lambda-hat ± stderr against the step; excluded snapshots hollow; lambda-bar line."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        inc = self.included
        ax.errorbar(self.steps[inc], self.values[inc], yerr=self.stderrs[inc], fmt="o", ms=4,
                    capsize=2, label="included")
        if (~inc).any():
            ax.errorbar(self.steps[~inc], self.values[~inc], yerr=self.stderrs[~inc], fmt="o",
                        mfc="none", ms=4, capsize=2, color="0.5", label="excluded")
        if math.isfinite(self.mean_llc):
            ax.axhline(self.mean_llc, color="k", lw=1,
                       label=f"λ̄ = {self.mean_llc:.4g} ± {self.mean_llc_stderr:.2g}")
        ax.set_xlabel("training step")
        ax.set_ylabel("λ̂")
        ax.legend(fontsize="small")
        return ax

    def __repr__(self) -> str:
        return (
            f"LLCTrajectory({len(self.rows)} snapshots, {int(self.included.sum())} included, "
            f"λ̄={self.mean_llc:.5g} ± {self.mean_llc_stderr:.3g}; rule: {self.rule})"
        )


def _bn_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
             torch.nn.SyncBatchNorm)
    return [m for m in model.modules() if isinstance(m, kinds)
            and m.track_running_stats]


def recompute_bn_stats(model: torch.nn.Module, x: torch.Tensor, chunk: int = 4096) -> None:
    """Set BatchNorm running statistics to the exact full-data statistics of the current
    weights (cumulative average over chunks, train-mode forward, no gradient)."""
    bns = _bn_modules(model)
    if not bns:
        return
    saved = [(m, m.momentum) for m in bns]
    was = model.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = exact mean over the chunks
        model.train()
        with torch.no_grad():
            for a in range(0, len(x), chunk):
                model(x[a:a + chunk])
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was)


def _assign(model: torch.nn.Module, vector: np.ndarray) -> None:
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        offset = 0
        for p in trainable:
            k = p.numel()
            p.copy_(torch.from_numpy(np.ascontiguousarray(vector[offset:offset + k]))
                    .reshape(p.shape).to(p.dtype))
            offset += k


def run_group(
    model: torch.nn.Module,
    vectors: np.ndarray,
    buffers: list[dict[str, np.ndarray]] | None,
    data: tuple[Any, Any],
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Estimate lambda-hat at several centres (rows of ``vectors``, in the model's trainable
    order) and return one summary dict per centre. One batched SGLD run for all centres'
    chains when the centres share the model's buffers (``buffers`` None), else one run per
    centre (each with its own BatchNorm statistics). Used locally and on dask workers."""
    func = "llc_trajectory"
    model = copy.deepcopy(model)
    dev = settings["device"]
    C = settings["n_chains"]
    out: list[dict[str, Any]] = []

    def one_run(vecs: np.ndarray) -> None:
        pot, w0 = make_module_potential(model, data, settings["loss"], dev, func,
                                        backend=settings["backend"])
        try:
            centers_s = torch.as_tensor(vecs, dtype=pot.dtype, device=pot.device)
            init = init_losses(pot, centers_s, func, what="a snapshot")
            S = len(vecs)
            centers = centers_s.repeat_interleave(C, dim=0)
            nb = settings["nbeta"]
            run = run_sgld(
                pot, centers, nbeta=torch.full((S * C,), nb, dtype=torch.float64),
                gamma=torch.full((S * C,), settings["localization"], dtype=torch.float64),
                eps=torch.full((S * C,), settings["step_size"], dtype=torch.float64),
                n_steps=settings["n_draws"], batch_size=settings["batch_size"],
                seed=None if settings["seed"] is None else settings["seed"] + len(out),
                mala_every=settings["mala_every"], progress=settings["progress"],
                desc="llc_trajectory")
        finally:
            pot.cleanup()
        for s in range(S):
            sl = slice(s * C, (s + 1) * C)
            summ = summarize(run.trace[sl], float(init[s]), nb, settings["n_burnin"],
                             run.acceptance[sl], pot.n_params, virial=run.virial[sl])
            out.append(dict(summary=summ, trace=run.trace[sl], init=float(init[s]),
                            seconds=run.seconds / S, n_params=pot.n_params,
                            backend=pot.backend))

    if buffers is None:
        if settings["bn_recompute"]:
            raise AssertionError("bn_recompute needs per-snapshot runs")
        one_run(np.asarray(vectors))
    else:
        x_all = as_tensors(data, func)[0]
        for k, vec in enumerate(np.asarray(vectors)):
            _assign(model, vec)
            if buffers[k]:
                named = dict(model.named_buffers())
                with torch.no_grad():
                    for name, val in buffers[k].items():
                        named[name].copy_(torch.as_tensor(val).reshape(named[name].shape))
            elif settings["bn_recompute"]:
                p = next(model.parameters())
                xx = x_all.to(p.device)
                recompute_bn_stats(model, xx.to(p.dtype) if torch.is_floating_point(xx) else xx)
            one_run(vec[None])
    return out


def _weights(steps: np.ndarray, how: str) -> np.ndarray:
    k = len(steps)
    if k == 0:
        return np.zeros(0)
    if how == "uniform" or k == 1 or np.unique(steps).size < 2:
        return np.full(k, 1.0 / k)
    order = np.argsort(steps, kind="stable")
    t = steps[order].astype(np.float64)
    w = np.zeros(k)
    dt = np.diff(t)
    w[order[:-1]] += dt / 2
    w[order[1:]] += dt / 2
    return w / w.sum()


def llc_trajectory(
    run: Any,
    model: torch.nn.Module,
    data: Any,
    *,
    at: Any = None,
    loss: str | Callable = "cross_entropy",
    n_chains: int = DEFAULTS["n_chains"],
    n_draws: int = DEFAULTS["n_draws"],
    n_burnin: int = DEFAULTS["n_burnin"],
    step_size: float = 1e-4,
    localization: float | None = None,
    nbeta: float | None = None,
    batch_size: int | None = None,
    seed: int | None = 0,
    device: Any = None,
    progress: bool = False,
    mala_every: int = DEFAULTS["mala_every"],
    exclude: Any = "unhealthy",
    weights: str = "time",
    batchnorm: str = "recompute",
    client: Any = None,
    backend: str = "auto",
    n_threads: int | None = None,
    warn: bool = True,
) -> LLCTrajectory:
    """lambda-hat at selected snapshots of a recorded run, and lambda-bar (paper Eq. 16).

    Each snapshot is loaded into (a copy of) ``model`` with
    :func:`fractaldiff.train.load_snapshot` and its LLC is estimated as by
    :func:`estimate_llc` (same arguments, same meaning). Chains of all snapshots run as one
    batched computation when the snapshots share the model's buffers (a model without
    BatchNorm); with BatchNorm each snapshot gets its own statistics and its own batched run.
    With ``client=`` (a ``dask.distributed.Client``) the snapshots are split over the
    cluster's workers.

    **Exclusion rule** (``exclude="unhealthy"``, the default): a snapshot is left out of
    lambda-bar when its λ̂ is negative, a chain's mean loss sits below the snapshot's own loss
    (``below_init``: the weights are not at a local minimum yet, as early in training), or a
    chain diverged. Other flags (not converged, chains disagree, low acceptance) are reported
    but do not exclude. ``exclude="leading"`` drops only the unhealthy snapshots before the
    first healthy one (training has not reached a minimum yet) and keeps later ones;
    ``"none"`` keeps all; a boolean mask over ``at`` or a list of row indices excludes exactly
    those.

    Parameters
    ----------
    run : SnapshotStore, CheckpointFolder, path to either, or an array (T, D)
        Rows are flat parameter vectors as the Recorder writes them.
    model : torch.nn.Module
        A model of the recorded architecture (its weights are not modified).
    data : as for :func:`estimate_llc`
    at : int, sequence of int or None
        Row indices (negative from the end). An int k: k snapshots evenly spread over the run
        (always including the last). Default: 10 evenly spread snapshots (all if fewer).
    weights : {"time", "uniform"}, default "time"
        lambda-bar = Σ w_i λ̂_i over the included snapshots: "time" uses trapezoid weights
        over their training steps, the time average of Eq. 16 (a log-spaced schedule then
        counts late snapshots more, as the integral does); "uniform" a plain mean.
    batchnorm : {"recompute", "model"}, default "recompute"
        BatchNorm running statistics are not recorded with the parameters: "recompute" sets
        them to the exact full-data statistics of each snapshot's weights (a train-mode pass
        over ``data``, no gradient) unless the run itself holds them (checkpoint folders);
        "model" uses the model's current statistics for every snapshot.
    client : dask.distributed.Client, optional
    n_threads : int, optional
        torch threads for this call (see :func:`estimate_llc`); not applied on dask workers.
    Other parameters
        As for :func:`estimate_llc`.

    Returns
    -------
    LLCTrajectory
        ``.values``, ``.stderrs``, ``.mean_llc`` ± ``.mean_llc_stderr``, ``.as_estimate()``
        (accepted by ``fd.spectral_dimension`` and ``fd.check_spectral_bound``).
    """
    from ..train.snapshots import load_snapshot, open_run

    func = "llc_trajectory"
    if localization is None:
        localization = LOCALIZATION_MODEL
    n_chains, n_draws, n_burnin, gamma, mala_every = check_common(
        func, n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin,
        localization=localization, mala_every=mala_every)
    eps = check_pos(step_size, "step_size", func)
    if weights not in ("time", "uniform"):
        raise ValueError(f"{func}: weights must be 'time' or 'uniform', got {weights!r}")
    if batchnorm not in ("recompute", "model"):
        raise ValueError(f"{func}: batchnorm must be 'recompute' or 'model', got {batchnorm!r}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{func}: model must be a torch.nn.Module, got {type(model).__name__}")
    source = open_run(run)
    shape = getattr(source, "shape", None)
    if shape is None or len(shape) != 2:
        raise TypeError(f"{func}: run must be a snapshot store, a CheckpointFolder, a path to "
                        f"one or a 2-D array; got {type(run).__name__}")
    T = int(shape[0])
    if T == 0:
        raise ValueError(f"{func}: the run holds no snapshots")
    if at is None:
        at = min(T, 10)
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        k = int(at)
        if not 1 <= k <= T:
            raise ValueError(f"{func}: at={k} snapshots, but the run has {T}")
        rows = np.unique(np.round(np.linspace(T - 1, 0, k)[::-1]).astype(np.int64))
    else:
        rows = np.asarray(at).reshape(-1)
        if rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
            raise TypeError(f"{func}: at must be an int or a non-empty sequence of row indices")
        if ((rows < -T) | (rows >= T)).any():
            raise IndexError(f"{func}: at holds a row index out of range for {T} snapshots")
        rows = rows % T
    steps_all = getattr(source, "steps", None)
    steps = np.asarray(steps_all)[rows] if steps_all is not None and len(steps_all) == T \
        else rows.copy()
    x, y = as_tensors(data, func)
    n_data = int(x.shape[0])
    if batch_size is None:
        batch = min(DEFAULTS["batch_size"], n_data)
    else:
        batch = check_count(batch_size, "batch_size", func, 1)
        if batch > n_data:
            raise ValueError(f"{func}: batch_size={batch} is larger than the data set "
                             f"({n_data} samples)")
    check_count(n_data, "the number of samples in data", func, 2)
    nb = default_nbeta(n_data) if nbeta is None else check_pos(nbeta, "nbeta", func)
    # read the snapshots into the model's trainable order (and buffers the run holds)
    work = copy.deepcopy(model)
    has_bn = bool(_bn_modules(work))
    buffer_names = {n for n, _ in work.named_buffers()}
    layout = getattr(source, "layout", None)
    run_buffers = [e.name for e in layout if e.name in buffer_names] if layout is not None else []
    vectors, bufs = [], []
    for r in rows.tolist():
        load_snapshot(work, source, int(r))
        vectors.append(torch.cat([p.detach().reshape(-1).cpu() for p in work.parameters()
                                  if p.requires_grad]).numpy().copy())
        named = dict(work.named_buffers())
        bufs.append({n: named[n].detach().cpu().numpy().copy() for n in run_buffers})
    vectors_arr = np.stack(vectors)
    bn_recompute = has_bn and batchnorm == "recompute" and not run_buffers
    per_snapshot = bn_recompute or bool(run_buffers)
    settings = dict(loss=loss, n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin,
                    step_size=eps, localization=gamma, nbeta=nb, batch_size=batch, seed=seed,
                    device=device, progress=progress and client is None,
                    mala_every=mala_every, bn_recompute=bn_recompute, backend=backend)
    data_np = (x.cpu(), y.cpu())
    if client is None:
        with torch_threads(n_threads, func):
            outs = run_group(work, vectors_arr, bufs if per_snapshot else None, data_np,
                             settings)
    else:
        try:
            n_workers = max(1, len(client.scheduler_info()["workers"]))
        except Exception:
            n_workers = 1
        groups = np.array_split(np.arange(len(rows)), min(n_workers, len(rows)))
        futures = []
        for k, g in enumerate(groups):
            if len(g) == 0:
                continue
            st = dict(settings, seed=None if seed is None else seed + 1000 * k)
            futures.append(client.submit(
                run_group, work, vectors_arr[g], [bufs[i] for i in g] if per_snapshot else None,
                data_np, st, pure=False))
        outs = [o for part in client.gather(futures) for o in part]
    results, values, stderrs, flags = [], [], [], []
    for r, o in zip(rows.tolist(), outs):
        s = o["summary"]
        st = dict(n=n_data, nbeta=nb, step_size=eps, localization=gamma, n_chains=n_chains,
                  n_draws=n_draws, n_burnin=n_burnin, batch_size=batch, seed=seed,
                  n_params=o["n_params"], mala_every=mala_every, device=str(device),
                  step_size_auto=False, backend=o["backend"], row=int(r))
        diag = dict(flags=s.flags, warnings=s.warnings, diverged=s.diverged,
                    first_half=s.first_half, second_half=s.second_half,
                    chi2_pvalue=s.chi2_pvalue, virial=s.virial, seconds=o["seconds"])
        results.append(LLCResult(s.mean, s.stderr, s.per_chain, s.per_chain_stderr,
                                 o["trace"], o["init"], s.acceptance, st, diag))
        values.append(s.mean)
        stderrs.append(s.stderr)
        flags.append([k for k, v in s.flags.items() if v])
    values_a = np.array(values, dtype=np.float64)
    stderrs_a = np.array(stderrs, dtype=np.float64)
    unhealthy = np.array([any(f in UNHEALTHY for f in fl) or not math.isfinite(v)
                          for fl, v in zip(flags, values)])
    if isinstance(exclude, str):
        if exclude == "unhealthy":
            included = ~unhealthy
            rule = ("excluded: snapshots with λ̂ < 0, a chain below the snapshot's loss "
                    "(not a local minimum) or a diverged chain")
        elif exclude == "leading":
            first_ok = int(np.argmax(~unhealthy)) if (~unhealthy).any() else len(rows)
            included = np.arange(len(rows)) >= first_ok
            included &= np.isfinite(values_a)
            rule = "excluded: unhealthy snapshots before the first healthy one"
        elif exclude == "none":
            included = np.isfinite(values_a)
            rule = "none excluded"
        else:
            raise ValueError(f"{func}: exclude must be 'unhealthy', 'leading', 'none', a boolean "
                             f"mask or row indices, got {exclude!r}")
    else:
        ex = np.asarray(exclude)
        if ex.dtype == bool:
            if ex.shape != rows.shape:
                raise ValueError(f"{func}: a boolean exclude mask must have one entry per "
                                 f"estimated snapshot ({len(rows)}), got {ex.shape}")
            included = ~ex
        else:
            included = ~np.isin(rows, np.asarray(ex).reshape(-1) % T)
        included &= np.isfinite(values_a)
        rule = "user-given exclusion"
    w = np.zeros(len(rows))
    if included.any():
        w[included] = _weights(steps[included], weights)
        lam = float((w * np.where(included, values_a, 0.0)).sum())
        se = float(math.sqrt((w**2 * np.where(included, stderrs_a, 0.0) ** 2).sum()))
    else:
        lam, se = float("nan"), float("nan")
    if warn:
        msgs = []
        for r, st_, fl in zip(rows.tolist(), steps.tolist(), flags):
            if fl:
                msgs.append(f"snapshot {r} (step {st_}): {', '.join(fl)}")
        if not included.any():
            msgs.append("no snapshot was included: lambda-bar is NaN")
        if unhealthy.any() and included[unhealthy].any():
            msgs.append("some unhealthy snapshots are included in lambda-bar (exclude rule)")
        emit(msgs, f"{func}: ")
    return LLCTrajectory(rows, steps, values_a, stderrs_a, included, flags, results, lam, se, w,
                         rule, dict(settings, weights=weights, exclude=exclude,
                                    batchnorm=batchnorm))
