"""Sweeps: learning-rate x batch-size grids and seed ensembles, each run to its own store.

Runs go to worker processes (``concurrent.futures.ProcessPoolExecutor``, one torch thread
each): small networks train far faster side by side than one after another with intra-op
threads. Each run writes ``<out_dir>/<name>.fdstore``; the sweep writes ``summary.json`` and
``summary.csv`` next to them and returns the table.
"""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SweepResult", "run_config", "sweep"]

_COLUMNS = ("name", "lr", "batch_size", "seed", "status", "steps", "final_loss",
            "train_accuracy", "test_accuracy", "n_snapshots", "seconds", "store")


@dataclass
class SweepResult:
    """The summary of a sweep: one row (dict) per run, in grid order.

    Attributes
    ----------
    rows : list of dict
        Keys ``name, lr, batch_size, seed, status ("ok", "stopped: ..." or "error: ..."),
        steps, final_loss, train_accuracy, test_accuracy, n_snapshots, seconds, store``.
    out_dir : pathlib.Path
    """

    rows: list[dict[str, Any]]
    out_dir: Path

    def table(self) -> str:
        """A fixed-width text table of the runs."""
        head = ("name", "lr", "bs", "seed", "status", "steps", "loss", "train_acc", "test_acc",
                "snaps", "s")
        lines = [head]
        for r in self.rows:
            def f(v: Any, spec: str) -> str:
                return "-" if v is None else format(v, spec)
            lines.append((r["name"], f(r["lr"], "g"), str(r["batch_size"]), str(r["seed"]),
                          r["status"][:24], str(r["steps"]), f(r["final_loss"], ".4g"),
                          f(r["train_accuracy"], ".3f"), f(r["test_accuracy"], ".3f"),
                          str(r["n_snapshots"]), f(r["seconds"], ".1f")))
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines)

    @property
    def ok(self) -> bool:
        """All runs finished without error."""
        return all(r["status"] == "ok" for r in self.rows)

    def __str__(self) -> str:
        return self.table()


_DATA_CACHE: dict[str, Any] = {}


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """Run one sweep member (in the current process) and return its summary row.

    ``config`` holds: ``name, store, lr, batch_size, seed, data, data_kwargs, model_kwargs,
    optimizer, epochs, steps, momentum, weight_decay, every, torch_threads, recorder_kwargs``.
    Errors are caught and reported in the row's ``status``.
    """
    row: dict[str, Any] = {k: None for k in _COLUMNS}
    row.update(name=config["name"], lr=config["lr"], batch_size=config["batch_size"],
               seed=config["seed"], store=config["store"], n_snapshots=0)
    t0 = time.perf_counter()
    try:
        import torch

        threads = torch.get_num_threads()
        if config.get("torch_threads"):
            torch.set_num_threads(int(config["torch_threads"]))
        try:
            row.update(_train_one(config))
        finally:
            torch.set_num_threads(threads)  # in-process runs leave the caller's setting
    except Exception as exc:  # a failed run must not take the sweep down
        row["status"] = f"error: {type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()
    row["seconds"] = time.perf_counter() - t0
    return row


def _train_one(config: dict[str, Any]) -> dict[str, Any]:
    from .data import load_dataset
    from .loop import train
    from .models import mlp
    from .recorder import Recorder

    key = json.dumps([config["data"], config["data_kwargs"]], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(config["data"], **config["data_kwargs"])
    data = _DATA_CACHE[key]
    model = mlp(data.n_features, data.n_classes, seed=config["seed"],
                **config["model_kwargs"])
    meta = {k: config[k] for k in ("lr", "batch_size", "seed", "optimizer", "momentum",
                                   "weight_decay", "data", "model_kwargs")}
    rec = Recorder(model, config["store"], every=config["every"], meta=meta,
                   on_nan="stop", **config["recorder_kwargs"])
    with rec:
        hist = train(model, data, optimizer=config["optimizer"], lr=config["lr"],
                     batch_size=config["batch_size"], epochs=config["epochs"],
                     steps=config["steps"], seed=config["seed"], recorder=rec,
                     device=config.get("device", "cpu"), momentum=config["momentum"],
                     weight_decay=config["weight_decay"])
    return dict(status="ok" if hist.stopped is None else f"stopped: {hist.stopped}",
                steps=hist.steps, final_loss=hist.loss[-1] if hist.loss else None,
                train_accuracy=hist.train_accuracy, test_accuracy=hist.test_accuracy,
                n_snapshots=rec.n_snapshots)


def _fmt_lr(lr: float) -> str:
    return format(lr, "g").replace("+", "")


def sweep(
    data: Any = "digits",
    *,
    out_dir: str | os.PathLike,
    lrs: Any = (0.01,),
    batch_sizes: Any = (32,),
    seeds: Any = (0,),
    optimizer: str = "sgd",
    epochs: int | None = None,
    steps: int | None = None,
    every: int = 1,
    model: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    recorder_kwargs: dict[str, Any] | None = None,
    n_workers: int | None = None,
    mp_context: str = "spawn",
    device: str = "cpu",
) -> SweepResult:
    """Train one MLP per (learning rate, batch size, seed), each recorded to its own store.

    Parameters
    ----------
    data : {"digits", "moons", "mnist"} or Dataset, default "digits"
        The data set (loaded once per worker; ``data_kwargs`` are passed to its loader, e.g.
        ``{"path": ...}`` for MNIST).
    out_dir : str or os.PathLike
        Folder for the stores (created); run ``name`` goes to ``out_dir/name.fdstore``, with
        ``name = f"lr{lr:g}_bs{batch_size}_seed{seed}"``. Existing stores are an error (nothing
        is started).
    lrs, batch_sizes, seeds : iterables
        The grid (the Cartesian product); ``seeds=range(500)`` makes a seed ensemble. The seed
        sets both the model's initialization and the batch order.
    optimizer : {"sgd", "adam"}, default "sgd"
    epochs, steps : int
        Run length (exactly one).
    every : int, default 1
        Snapshot interval in steps.
    model : dict, optional
        Keyword arguments of :func:`~fractaldiff.train.models.mlp` (``width``, ``depth``,
        ``batch_norm``).
    momentum, weight_decay : float
    recorder_kwargs : dict, optional
        More :class:`~fractaldiff.train.Recorder` arguments (``dtype``, ``params``, ...).
    n_workers : int, optional
        Worker processes (default: the CPU count, at most the number of runs); 0 or 1 runs in
        this process, one after another.
    mp_context : {"spawn", "forkserver", "fork"}, default "spawn"
        How workers start ("spawn" is safe with threads and CUDA; "fork" starts faster).
    device : str, default "cpu"

    Returns
    -------
    SweepResult
        Also written to ``out_dir/summary.json`` and ``summary.csv``.
    """
    from .data import Dataset

    lrs, batch_sizes, seeds = list(lrs), list(batch_sizes), list(seeds)
    for name, vals in (("lrs", lrs), ("batch_sizes", batch_sizes), ("seeds", seeds)):
        if not vals:
            raise ValueError(f"{name} must not be empty")
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= or steps=")
    if isinstance(data, Dataset):
        data_spec: Any = data  # pickled to the workers
    elif isinstance(data, str):
        data_spec = data
    else:
        raise TypeError(f"data must be a data set name or a Dataset, got {type(data).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = []
    for lr, bs, seed in itertools.product(lrs, batch_sizes, seeds):
        name = f"lr{_fmt_lr(float(lr))}_bs{int(bs)}_seed{int(seed)}"
        store = out / f"{name}.fdstore"
        if store.exists():
            raise FileExistsError(f"{store} already exists; choose another out_dir or remove it")
        configs.append(dict(
            name=name, store=str(store), lr=float(lr), batch_size=int(bs), seed=int(seed),
            data=data_spec, data_kwargs=dict(data_kwargs or {}), model_kwargs=dict(model or {}),
            optimizer=optimizer, epochs=epochs, steps=steps, momentum=float(momentum),
            weight_decay=float(weight_decay), every=int(every), torch_threads=1,
            recorder_kwargs=dict(recorder_kwargs or {}), device=device,
        ))
    if len({c["name"] for c in configs}) != len(configs):
        raise ValueError("the grid holds duplicate (lr, batch_size, seed) combinations")
    if n_workers is None:
        n_workers = min(len(configs), os.cpu_count() or 1)
    if n_workers <= 1:
        rows = [run_config(c) for c in configs]
    else:
        ctx = multiprocessing.get_context(mp_context)
        with ProcessPoolExecutor(max_workers=int(n_workers), mp_context=ctx) as pool:
            rows = list(pool.map(run_config, configs))
    result = SweepResult(rows, out)
    (out / "summary.json").write_text(json.dumps(rows, indent=1, default=str))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(_COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return result
