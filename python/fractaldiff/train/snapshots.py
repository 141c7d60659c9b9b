"""Load a recorded snapshot back into a model: :func:`load_snapshot`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_snapshot", "open_run"]


def open_run(run: Any) -> Any:
    """A snapshot source from a path (store or checkpoint folder) or an object that has rows.

    Paths: a snapshot store directory (``fractaldiff.is_store``) opens read-only with
    ``fractaldiff.open_store``; any other directory as a ``fractaldiff.CheckpointFolder``.
    Anything else is returned as it is (a store, a checkpoint folder, an array, a tensor).
    """
    if isinstance(run, (str, os.PathLike)):
        import fractaldiff as fd

        path = Path(run)
        if fd.is_store(path):
            return fd.open_store(path)
        if path.is_dir():
            return fd.CheckpointFolder(path)
        raise FileNotFoundError(f"run {str(run)!r} is neither a snapshot store nor a folder of "
                                "checkpoints")
    return run


def _n_rows(run: Any) -> int:
    shape = getattr(run, "shape", None)
    if shape is None or len(shape) != 2:
        raise TypeError(
            "run must be a snapshot store, a CheckpointFolder, a path to one, or a 2-D array "
            f"of snapshots (T, D); got {type(run).__name__}"
        )
    return int(shape[0])


def _row(run: Any, i: int) -> np.ndarray:
    if isinstance(run, torch.Tensor):
        return run[i].detach().cpu().numpy()
    return np.asarray(run[i])


def load_snapshot(
    model: torch.nn.Module, run: Any, i: int, *, strict: bool = True
) -> torch.nn.Module:
    """Copy snapshot ``i`` of a recorded run into ``model``'s parameters (in place).

    Rows are flat parameter vectors as :class:`fractaldiff.train.Recorder` writes them: the
    model's trainable parameters (``requires_grad``) in ``named_parameters()`` order, each
    flattened in C order. When the run carries a parameter layout (a store written by the
    Recorder, a checkpoint folder), tensors are matched **by name** and shape, so a run that
    recorded a subset of the parameters (``Recorder(params=...)``) loads that subset, and a
    checkpoint folder that also holds BatchNorm running statistics loads them into the
    buffers. Without a layout (a plain array), the row length must equal the number of
    trainable parameters.

    Parameters
    ----------
    model : torch.nn.Module
    run : SnapshotStore, CheckpointFolder, path to either, numpy array or tensor (T, D)
    i : int
        Row (snapshot) index; negative counts from the end.
    strict : bool, default True
        With a layout whose names are not the model's: fall back to loading by order only if
        the shapes match one to one (False: also accept it when only the total count matches).

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    ValueError
        The snapshot does not fit the model (parameter count or a shape differs; the message
        gives both), or it holds a non-finite value.
    IndexError
        ``i`` out of range.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"load_snapshot: model must be a torch.nn.Module, got {type(model).__name__}"
        )
    run = open_run(run)
    T = _n_rows(run)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"load_snapshot: i must be an integer row index, got {i!r}")
    if not -T <= int(i) < T:
        raise IndexError(f"load_snapshot: snapshot index {i} is out of range for {T} snapshots")
    row = _row(run, int(i) % T).reshape(-1)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("load_snapshot: model has no trainable parameters")
    n_model = sum(p.numel() for _, p in trainable)
    layout = getattr(run, "layout", None)
    if not np.isfinite(row).all():
        bad = int(np.flatnonzero(~np.isfinite(row))[0])
        raise ValueError(f"load_snapshot: snapshot {i} holds a non-finite value at parameter "
                         f"{bad} (a diverged step?)")
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    targets: list[tuple[torch.Tensor, np.ndarray]] = []
    if layout is not None and len(layout) and all(
            e.name in params or e.name in buffers for e in layout):
        for e in layout:
            t = params.get(e.name, buffers.get(e.name))
            assert t is not None
            if tuple(t.shape) != tuple(e.shape):
                raise ValueError(
                    f"load_snapshot: {e.name!r} has shape {tuple(e.shape)} in the run but "
                    f"{tuple(t.shape)} in the model"
                )
            targets.append((t, row[e.offset:e.stop]))
    else:
        if row.size != n_model:
            extra = ""
            if layout is not None and len(layout):
                missing = [e.name for e in layout if e.name not in params][:5]
                extra = f"; the run's tensors {missing} are not parameters of the model"
            raise ValueError(
                f"load_snapshot: the snapshot has {row.size} values but the model has {n_model} "
                f"trainable parameters{extra}"
            )
        if layout is not None and len(layout) and strict:
            run_shapes = [tuple(e.shape) for e in layout]
            model_shapes = [tuple(p.shape) for _, p in trainable]
            if run_shapes != model_shapes:
                raise ValueError(
                    "load_snapshot: the run's layout names and shapes do not match the model's "
                    f"parameters (run: {[e.name for e in layout][:5]}..., model: "
                    f"{[n for n, _ in trainable][:5]}...); pass strict=False to load by order"
                )
        offset = 0
        for _, p in trainable:
            targets.append((p, row[offset:offset + p.numel()]))
            offset += p.numel()
    with torch.no_grad():
        for t, values in targets:
            t.copy_(torch.from_numpy(np.ascontiguousarray(values)).reshape(t.shape).to(t.dtype))
    return model
