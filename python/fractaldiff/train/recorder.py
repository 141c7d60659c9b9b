"""Record a model's weight trajectory from any training loop into a snapshot store.

:class:`Recorder` is called once per optimizer step (``recorder.step(loss=..., lr=...)``);
on the steps its schedule selects it copies the flattened parameters (all trainable ones, or a
selection by name) and appends them, with per-step metadata, to a
:class:`~fractaldiff.io.store.SnapshotStore`, and/or feeds them to online accumulators.

Recording costs the training loop little. CPU parameters recorded into a store (the common
case) are written *directly*: one compiled call, without the GIL, checksums the parameters
where they are (hot in the cache after the optimizer step) and writes them with one vectored
write straight from the tensors' memory, then the metadata line and the commit record; no
copy, no thread, and the snapshot is safe on disk (in the page cache) when :meth:`Recorder.step`
returns. Otherwise (CUDA, online accumulators, a dtype conversion) parameters are gathered into
one of a few preallocated buffers (pinned host memory and a non-blocking copy on a side stream
on CUDA; one memcpy on the CPU) and a background writer thread appends them to the store, so
the training loop does not wait for the disk (nor, on a GPU, for the device-to-host transfer).
On steps without a snapshot, :meth:`Recorder.step` only reads the loss.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.layout import ParameterLayout
from ..io.store import PartsWriter, SnapshotStore, is_store, open_store
from .online import OnlineAccumulators

__all__ = ["NonFiniteLossError", "Recorder", "log_schedule"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16}


class NonFiniteLossError(FloatingPointError):
    """The loss (or the parameters) became NaN/Inf and the recorder was told to stop.

    Attributes
    ----------
    step : int
        The optimizer step at which it was detected.
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def log_schedule(n_steps: int, n_snapshots: int, *, include_zero: bool = True) -> np.ndarray:
    """Log-spaced snapshot steps in [1, n_steps] (and 0), distinct, increasing.

    Parameters
    ----------
    n_steps : int
        Last step of the run (>= 1).
    n_snapshots : int
        Wanted number of snapshots (>= 2). Fewer are returned when rounding to integers merges
        steps (early steps are all taken first).
    include_zero : bool, default True
        Include step 0 (the initial weights).

    Returns
    -------
    numpy.ndarray of int64

    Examples
    --------
    >>> log_schedule(1000, 8)
    array([   0,    1,    3,    7,   19,   52,  139,  373, 1000])
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
    if (
        isinstance(n_snapshots, bool)
        or not isinstance(n_snapshots, numbers.Integral)
        or n_snapshots < 2
    ):
        raise ValueError(f"n_snapshots must be an int >= 2, got {n_snapshots!r}")
    steps = np.unique(np.round(np.geomspace(1, n_steps, int(n_snapshots))).astype(np.int64))
    if include_zero:
        steps = np.concatenate([[0], steps])
    return steps


def _select_params(model: Any, params: Any) -> list[tuple[str, torch.Tensor]]:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(
            f"model has no trainable parameters (none of its {len(list(model.parameters()))} "
            f"parameters has requires_grad=True); there is nothing to record"
        )
    if params is None:
        return trainable
    patterns = [params] if isinstance(params, str) else list(params)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"params must be a name/glob pattern or a non-empty list of them, got {params!r}"
        )
    for pat in patterns:
        hits = [(n, p) for n, p in trainable if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise ValueError(
                f"params: {pat!r} matches no trainable parameter of the model; names are "
                f"{[n for n, _ in trainable]}"
            )
    # keep the model's order (the flat layout follows named_parameters())
    wanted = {n for n, _ in trainable if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)}
    return [(n, p) for n, p in trainable if n in wanted]


def _as_float(value: Any) -> float | None:
    """A host float from a Python/numpy number or a CPU tensor; None for CUDA tensors."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"loss must be a scalar, got a tensor of shape {tuple(value.shape)}")
        if not value.is_cpu:
            return None
        return float(value.detach().item())
    if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"loss must be a number or a scalar tensor, got {type(value).__name__}")


def _gather(tensors: list[torch.Tensor], out: torch.Tensor) -> None:
    """Concatenate flat tensors into ``out`` (one ``torch.cat`` when the dtypes agree, else
    converting copies piece by piece)."""
    if all(t.dtype == out.dtype for t in tensors):
        torch.cat(tensors, out=out)
        return
    off = 0
    for t in tensors:
        out[off : off + t.numel()].copy_(t)
        off += t.numel()


class _Slot:
    """One snapshot buffer: host memory (pinned on CUDA) and, on CUDA, a device copy + event."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        cuda = device.type == "cuda"
        self.host = torch.empty(n, dtype=dtype, pin_memory=cuda)
        self.host_np = self.host.numpy()
        self.loss_host = torch.empty(1, dtype=torch.float64, pin_memory=cuda)
        self.flag_host = torch.zeros(1, dtype=torch.bool, pin_memory=cuda)
        self.device_buf = torch.empty(n, dtype=dtype, device=device) if cuda else None
        self.event = torch.cuda.Event() if cuda else None


class Recorder:
    """Record the weight trajectory of a model, from any training loop.

    Call :meth:`step` once per optimizer step, after ``optimizer.step()``. On the steps the
    schedule selects, the flattened parameters are appended to a snapshot store with the
    step's metadata, and/or fed to online accumulators.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its trainable parameters (``requires_grad``) are recorded, flattened in
        ``named_parameters()`` order (the layout is written to the store).
    store : str, os.PathLike, SnapshotStore or None
        Where snapshots go: a path for a new store (created), an existing store's path together
        with ``resume=True`` (appending continues), a :class:`~fractaldiff.SnapshotStore` open
        in mode ``"a"``, or None to keep no snapshots (online accumulators only).
    every : int, optional
        Snapshot every ``every`` optimizer steps (steps 0, every, 2*every, ...). Default 1.
    schedule : iterable of int or callable, optional
        Instead of ``every``: the steps to snapshot (e.g. :func:`log_schedule`), or a function
        ``step -> bool``.
    params : str or list of str, optional
        Record only the parameters whose names match these glob patterns (``"fc*.weight"``);
        each pattern must match something. Default: all trainable parameters.
    online : bool, OnlineAccumulators or dict, optional
        Online accumulators to feed (True: MSD and R(t) with defaults; a dict: keyword arguments
        of :class:`~fractaldiff.train.online.OnlineAccumulators`). They need equally spaced
        snapshots: they are fed every ``online_every`` steps.
    online_every : int, optional
        Spacing of the online accumulators' snapshots (default ``every``, or 1 with
        ``schedule``).
    dtype : {"float32", "float64", "float16"}, default "float32"
        Storage dtype of a new store (and of the copy buffers).
    meta : dict, optional
        Run-level metadata for a new store (model, optimizer, seed, ...).
    resume : bool, default False
        Allow ``store`` to be the path of an existing store and append to it. Its parameter
        count and layout must match the model's selection.
    start_step : int, optional
        Step number of the first :meth:`step` call minus one (default 0, or the last step in a
        resumed store). Snapshot steps not after the store's last step are skipped.
    record_initial : bool, default True
        Snapshot the current weights as step ``start_step`` on construction, if the schedule
        selects that step (and it is not in the store already).
    on_nan : {"warn", "stop", "ignore"}, default "warn"
        A non-finite loss or non-finite parameters are recorded (snapshot stored with NaN, its
        metadata flagged ``"nonfinite": true``) and then: warn once, raise
        :class:`NonFiniteLossError` (``"stop"``; from :meth:`step`, or from the next call when
        found by the background writer) or nothing.
    direct : bool, optional
        Write snapshots straight from the parameters' memory, synchronously, in one compiled
        call (checksum, vectored write, metadata, commit record; no copy, no thread). Needs CPU
        parameters of the store's dtype, a store and no online accumulators; default: whenever
        that holds. False uses the copy + background writer path below.
    background : bool, default True
        When not writing directly: append in a background thread (the loop only copies the
        parameters). False appends synchronously inside :meth:`step` (simplest to debug).
    buffers : int, default 3
        Snapshot buffers in flight (host memory: ``buffers * D * itemsize``; on CUDA as much
        again on the device). When all are busy, :meth:`step` waits for the oldest.
    checksum, durable : bool
        Options of a new store (:meth:`SnapshotStore.create`).

    Attributes
    ----------
    store : SnapshotStore or None
    online : OnlineAccumulators or None
    names : list of str
        Recorded parameter names, in flat order.
    n_params : int
        D.
    n_snapshots : int
        Snapshots taken (queued or written) by this recorder.
    nonfinite_steps : list of int
        Steps whose loss or parameters were not finite.

    Examples
    --------
    >>> with Recorder(model, "run.fdstore", every=10) as rec:   # doctest: +SKIP
    ...     for x, y in loader:
    ...         loss = loss_fn(model(x), y)
    ...         opt.zero_grad(); loss.backward(); opt.step()
    ...         rec.step(loss=loss, lr=opt.param_groups[0]["lr"], epoch=epoch)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        store: Any = None,
        *,
        every: int | None = None,
        schedule: Iterable[int] | Callable[[int], bool] | None = None,
        params: str | Iterable[str] | None = None,
        online: Any = None,
        online_every: int | None = None,
        dtype: str = "float32",
        meta: dict | None = None,
        resume: bool = False,
        start_step: int | None = None,
        record_initial: bool = True,
        on_nan: str = "warn",
        direct: bool | None = None,
        background: bool = True,
        buffers: int = 3,
        checksum: bool = True,
        durable: bool = False,
    ) -> None:
        self._closed = True
        self._owns_store = False
        self.store: SnapshotStore | None = None
        if on_nan not in ("warn", "stop", "ignore"):
            raise ValueError(f"on_nan must be 'warn', 'stop' or 'ignore', got {on_nan!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if not isinstance(buffers, int) or isinstance(buffers, bool) or buffers < 1:
            raise ValueError(f"buffers must be an int >= 1, got {buffers!r}")
        self.model = model
        self._params = _select_params(model, params)
        self.names = [n for n, _ in self._params]
        self._tensors = [p for _, p in self._params]
        self.n_params = sum(p.numel() for _, p in self._params)
        self.layout = ParameterLayout.from_spec(
            [
                {"name": n, "shape": tuple(p.shape), "dtype": str(p.dtype).replace("torch.", "")}
                for n, p in self._params
            ],
            self.n_params,
            "layout",
        )
        self.dtype = dtype
        self.on_nan = on_nan
        self._due = self._make_schedule(every, schedule)
        if online_every is None:
            online_every = every if (schedule is None and every is not None) else 1
        if not isinstance(online_every, int) or isinstance(online_every, bool) or online_every < 1:
            raise ValueError(f"online_every must be an int >= 1, got {online_every!r}")
        self.online_every = online_every
        self.online = self._make_online(online)
        if store is None and self.online is None:
            raise ValueError("store is None and online is off: the recorder would keep nothing")
        devices = {p.device for _, p in self._params}
        if len(devices) != 1:
            raise ValueError(f"the recorded parameters live on several devices: {devices}")
        self.device = devices.pop()

        self.store, self._owns_store = self._open_store(store, meta, resume, checksum, durable)
        last = None
        if self.store is not None and len(self.store):
            last = int(self.store.steps[-1])
        self._last_stored_step = last
        if start_step is None:
            start_step = 0 if last is None else last
        if isinstance(start_step, bool) or not isinstance(start_step, numbers.Integral):
            raise TypeError(f"start_step must be an int, got {type(start_step).__name__}")
        self._step = int(start_step)
        self.n_snapshots = 0
        self.nonfinite_steps: list[int] = []
        self._warned_nan = False
        self._warned_skip = False
        self._pending_error: BaseException | None = None
        self._pending_stop: NonFiniteLossError | None = None
        self._lock = threading.Lock()

        tdtype = _DTYPES[self.dtype]  # the store's dtype when resuming
        self._slots = [_Slot(self.n_params, tdtype, self.device) for _ in range(buffers)]
        self._free: queue.Queue = queue.Queue()
        for s in self._slots:
            self._free.put(s)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._dev_nonfinite = (
            torch.zeros((), dtype=torch.bool, device=self.device)
            if self.device.type == "cuda"
            else None
        )
        self._views: list[torch.Tensor] = []
        self._view_ptrs: list[int] = []
        self._all_views = False
        self._background = bool(background)
        # CPU snapshots that only go to a store: written directly from the parameters (one
        # compiled call, no copy, no thread), or with direct=False handed to the store's
        # compiled writer thread (no GIL; the training thread only gathers and enqueues).
        # Otherwise (CUDA copies to wait for, online accumulators to feed) a Python writer
        # thread does the work.
        store_only_cpu = (
            self.store is not None and self.online is None and self.device.type == "cpu"
        )
        can_direct = (
            store_only_cpu
            and all(p.dtype == tdtype for _, p in self._params)
        )
        if direct and not can_direct:
            raise ValueError(
                "direct=True needs CPU parameters of the store's dtype "
                f"({self.dtype}) and no online accumulators"
            )
        self._direct = can_direct if direct is None else bool(direct)
        self._every = None
        if schedule is None:
            self._every = 1 if every is None else int(every)
        # one write strategy, chosen once (see _WriteStrategy)
        strategy: _WriteStrategy
        if self._direct:
            strategy = _DirectWrite(self)
        elif self._background and store_only_cpu:
            strategy = _QueuedWrite(self)
        elif self._background:
            strategy = _ThreadWrite(self)
        else:
            strategy = _InlineWrite(self)
        self._strategy = strategy
        self._closed = False
        if record_initial:
            self._maybe_snapshot(self._step, {}, None, initial=True)

    # -- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _make_schedule(every: Any, schedule: Any) -> Callable[[int], bool]:
        if schedule is not None and every is not None:
            raise ValueError("give either every= or schedule=, not both")
        if schedule is None:
            every = 1 if every is None else every
            if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every < 1:
                raise ValueError(f"every must be an int >= 1, got {every!r}")
            k = int(every)
            return lambda step: step % k == 0
        if callable(schedule):
            return lambda step: bool(schedule(step))
        try:
            steps = np.asarray(list(schedule))
        except TypeError:
            raise TypeError(
                f"schedule must be an iterable of ints or a callable, got "
                f"{type(schedule).__name__}"
            ) from None
        if steps.size == 0 or steps.dtype.kind not in "iu" or (steps < 0).any():
            raise ValueError("schedule must hold at least one non-negative integer step")
        wanted = frozenset(int(s) for s in steps)
        return lambda step: step in wanted

    def _make_online(self, online: Any) -> OnlineAccumulators | None:
        if online is None or online is False:
            return None
        if online is True:
            return OnlineAccumulators(self.n_params)
        if isinstance(online, dict):
            return OnlineAccumulators(self.n_params, **online)
        if isinstance(online, OnlineAccumulators):
            if online.n_params != self.n_params:
                raise ValueError(
                    f"online accumulators expect n_params={online.n_params} but the recorded "
                    f"parameters have {self.n_params} values"
                )
            return online
        raise TypeError(
            f"online must be True/False, a dict or an OnlineAccumulators, got "
            f"{type(online).__name__}"
        )

    def _open_store(
        self, store: Any, meta: Any, resume: bool, checksum: bool, durable: bool
    ) -> tuple[SnapshotStore | None, bool]:
        if store is None:
            return None, False
        if isinstance(store, SnapshotStore):
            if store.closed or store.mode != "a":
                raise ValueError(
                    "store must be open for appending (mode='a'); got a "
                    + ("closed store" if store.closed else f"store open in mode {store.mode!r}")
                )
            self._check_store(store, store.path)
            return store, False
        if not isinstance(store, (str, os.PathLike)):
            raise TypeError(
                f"store must be a path, a SnapshotStore or None, got {type(store).__name__}"
            )
        path = Path(store)
        if path.exists() and is_store(path):
            if not resume:
                raise FileExistsError(
                    f"store {path} already exists; pass resume=True to append to it, or choose "
                    f"a new path"
                )
            s = open_store(path, "a", durable=durable)
            try:
                self._check_store(s, path)
            except BaseException:
                s.close()
                raise
            return s, True
        run_meta = {
            "model": type(self.model).__name__,
            "recorded_params": self.names,
            "recorder": {"dtype": self.dtype, "online_every": self.online_every},
        }
        if meta:
            run_meta.update(dict(meta))
        s = SnapshotStore.create(
            path, self.n_params, dtype=self.dtype, meta=run_meta, layout=self.layout,
            checksum=checksum, durable=durable,
        )
        return s, True

    def _check_store(self, store: SnapshotStore, where: Any) -> None:
        if store.n_params != self.n_params:
            raise ValueError(
                f"store {where} holds snapshots of n_params={store.n_params} values but the "
                f"model's recorded parameters have {self.n_params} values ({len(self.names)} "
                f"tensors); use a new store or the matching model/params selection"
            )
        lay = store.layout
        if lay is not None and [(e.name, e.shape) for e in lay] != [
            (e.name, e.shape) for e in self.layout
        ]:
            raise ValueError(
                f"store {where} has a different parameter layout: "
                f"{[e.name for e in lay]} vs the model's {self.names}"
            )
        if store.dtype.name != self.dtype:
            self.dtype = store.dtype.name  # copy buffers in the store's dtype

    # -- stepping -----------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        """The step number of the last :meth:`step` call (``start_step`` before any)."""
        return self._step

    def step(
        self,
        loss: Any = None,
        lr: Any = None,
        epoch: Any = None,
        batch_size: Any = None,
        *,
        step: int | None = None,
        **extra: Any,
    ) -> bool:
        """Tell the recorder that one optimizer step was taken; snapshot if it is due.

        Parameters
        ----------
        loss : float or scalar tensor, optional
            The step's loss (a CUDA tensor is read without a device sync: its finiteness is
            checked on the device and read with the next snapshot).
        lr : float, optional
        epoch : int, optional
        batch_size : int, optional
        step : int, optional
            The step's number (default: previous + 1); must increase.
        **extra
            More JSON-able per-step metadata to store with a snapshot.

        Returns
        -------
        bool
            Whether a snapshot was taken at this step.

        Raises
        ------
        NonFiniteLossError
            ``on_nan="stop"`` and the loss or parameters are not finite (after recording).
        """
        # the fast path: a few attribute reads and, without a snapshot, no dict or JSON
        if self._closed:
            raise RuntimeError("this Recorder is closed")
        if step is None:
            step = self._step + 1
        elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an int, got {type(step).__name__}")
        elif step <= self._step:
            raise ValueError(f"step={step} must be larger than the previous step {self._step}")
        elif step >= 2**63:
            raise ValueError(f"step={step} does not fit in int64")
        else:
            step = int(step)
        self._step = step
        if loss is None or type(loss) is float:
            host_loss = loss
        elif type(loss) is torch.Tensor and loss.is_cpu and loss.numel() == 1:
            host_loss = float(loss.detach().item())
        else:
            host_loss = _as_float(loss)
            if host_loss is None and self._dev_nonfinite is not None:
                self._dev_nonfinite |= ~torch.isfinite(loss.detach()).all()
        nonfinite = host_loss is not None and not math.isfinite(host_loss)
        if nonfinite:
            self._flag_nonfinite(step, f"loss is {host_loss}")
        every = self._every
        if self._direct:
            due = step % every == 0 if every is not None else self._due(step)
            taken = due and self._strategy.write_fields(  # type: ignore[attr-defined]
                step, epoch, lr, batch_size, host_loss, nonfinite, extra
            )
        elif (
            self.store is not None
            and (step % every == 0 if every is not None else self._due(step))
        ) or (self.online is not None and step % self.online_every == 0):
            meta = self._meta_dict(epoch, lr, batch_size, host_loss, nonfinite, extra)
            taken = self._maybe_snapshot(step, meta, loss if host_loss is None else None)
        else:
            taken = False
        if self._pending_error is not None or self._pending_stop is not None:
            self._raise_pending()
        if nonfinite and self.on_nan == "stop":
            self._raise_stop(step)
        return taken

    @staticmethod
    def _meta_dict(
        epoch: Any, lr: Any, batch_size: Any, loss: float | None, nonfinite: bool, extra: dict
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if epoch is not None:
            meta["epoch"] = int(epoch)
        if lr is not None:
            meta["lr"] = float(lr)
        if batch_size is not None:
            meta["batch_size"] = int(batch_size)
        if loss is not None:
            meta["loss"] = loss
        if nonfinite:
            meta["nonfinite"] = True
        meta.update(extra)
        return meta

    def _flag_nonfinite(self, step: int, what: str) -> None:
        with self._lock:
            if step not in self.nonfinite_steps:
                self.nonfinite_steps.append(step)
                self.nonfinite_steps.sort()
            warn = self.on_nan == "warn" and not self._warned_nan
            if warn:
                self._warned_nan = True
            if self.on_nan == "stop" and self._pending_stop is None:
                self._pending_stop = NonFiniteLossError(
                    f"non-finite training at step {step}: {what} (recorded; on_nan='stop')",
                    step,
                )
        if warn:
            warnings.warn(
                f"non-finite training at step {step}: {what}; it is recorded and flagged "
                f"(pass on_nan='stop' to stop, 'ignore' to silence)",
                RuntimeWarning,
                stacklevel=4,
            )

    def _raise_stop(self, step: int) -> None:
        with self._lock:
            err, self._pending_stop = self._pending_stop, None
        if err is not None:
            raise err

    def _already_stored(self, step: int, initial: bool) -> bool:
        """Whether ``step`` is not after the store's last step (warned once, unless initial)."""
        if self._last_stored_step is None or step > self._last_stored_step:
            return False
        if not initial and not self._warned_skip:
            self._warned_skip = True
            warnings.warn(
                f"step {step} is not after the store's last step {self._last_stored_step}: "
                f"snapshots up to that step are skipped (pass start_step= when resuming)",
                RuntimeWarning,
                stacklevel=4,
            )
        return True

    def _maybe_snapshot(
        self, step: int, meta: dict, device_loss: Any, initial: bool = False
    ) -> bool:
        if self._direct:
            if not self._due(step):
                return False
            return self._strategy.write_fields(  # type: ignore[attr-defined]
                step, meta.pop("epoch", None), meta.pop("lr", None), meta.pop("batch_size", None),
                meta.pop("loss", None), bool(meta.pop("nonfinite", False)), meta, initial,
            )
        to_store = self.store is not None and self._due(step)
        if to_store and self._already_stored(step, initial):
            to_store = False
        to_online = self.online is not None and step % self.online_every == 0
        if not (to_store or to_online):
            return False
        self._strategy.write(step, meta, device_loss, to_store, to_online)
        if to_store:
            self.n_snapshots += 1
        return to_store

    def _flat_views(self) -> list[torch.Tensor]:
        """Flat views of the recorded parameters (cached; rebuilt if a parameter's storage
        was replaced, e.g. by ``p.data = ...``)."""
        ptrs = [p.data_ptr() for _, p in self._params]
        if ptrs != self._view_ptrs:
            self._views = [p.detach().reshape(-1) for _, p in self._params]
            self._view_ptrs = ptrs
            # a non-contiguous parameter reshapes to a copy: never cache those
            self._all_views = all(p.is_contiguous() for _, p in self._params)
        if not self._all_views:
            return [p.detach().reshape(-1) for _, p in self._params]
        return self._views

    def _capture(self, slot: _Slot, device_loss: Any) -> None:
        tensors = self._flat_views()
        if slot.device_buf is None:  # CPU: one gather into the host buffer
            _gather(tensors, slot.host)
            return
        # CUDA: gather on the current stream (ordered after the optimizer step), then copy to
        # pinned memory on a side stream so the next training step does not wait for it
        main = torch.cuda.current_stream(self.device)  # views are detached: no autograd
        _gather(tensors, slot.device_buf)
        loss_dev = None
        if device_loss is not None:
            loss_dev = device_loss.detach().reshape(1).to(torch.float64)
        flag = self._dev_nonfinite.clone().reshape(1)
        self._dev_nonfinite.zero_()
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            slot.host.copy_(slot.device_buf, non_blocking=True)
            if loss_dev is not None:
                slot.loss_host.copy_(loss_dev, non_blocking=True)
            slot.flag_host.copy_(flag, non_blocking=True)
            slot.event.record(self._stream)
        slot.device_buf.record_stream(self._stream)
        if loss_dev is not None:
            loss_dev.record_stream(self._stream)
        flag.record_stream(self._stream)

    # -- writing ------------------------------------------------------------------------------

    def _consume(self, item: tuple) -> None:
        slot, step, meta, to_store, to_online, has_dev_loss = item
        try:
            if slot.event is not None:
                slot.event.synchronize()
                if has_dev_loss:
                    value = float(slot.loss_host[0])
                    meta["loss"] = value
                    if not math.isfinite(value):
                        meta["nonfinite"] = True
                        self._flag_nonfinite(step, f"loss is {value}")
                if bool(slot.flag_host[0]) and not meta.get("nonfinite"):
                    meta["nonfinite"] = True
                    self._flag_nonfinite(step, "a loss since the previous snapshot was not finite")
            row = slot.host_np
            if to_store:
                try:
                    self.store.append(row, step=step, **meta)
                except ValueError as exc:
                    if "non-finite" not in str(exc):
                        raise
                    meta["nonfinite"] = True
                    self.store.append(row, step=step, allow_nonfinite=True, **meta)
                    self._flag_nonfinite(step, "the parameters are not finite")
                self._last_stored_step = step
            if to_online:
                if meta.get("nonfinite") and not np.isfinite(row).all():
                    pass  # online accumulators cannot take NaN: skip this snapshot
                else:
                    self.online.update(row, step=step)
        finally:
            self._free.put(slot)

    def _raise_pending(self) -> None:
        err = self._pending_error
        if err is not None:
            self._pending_error = None
            raise RuntimeError(f"recording a snapshot failed in the writer thread: {err}") from err
        if self.on_nan == "stop" and self._pending_stop is not None:
            self._raise_stop(self._pending_stop.step)

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("this Recorder is closed")

    # -- lifetime -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every snapshot taken so far is in the store (and fed online)."""
        self._check_usable()
        self._strategy.drain()
        self._raise_pending()

    def close(self) -> None:
        """Write every pending snapshot, stop the writer, flush and close the store. Idempotent.

        A store given as a :class:`SnapshotStore` object is flushed but left open.
        """
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._strategy.stop()
            except NonFiniteLossError:  # recorded and flagged; closing goes on
                pass
            err, self._pending_error = self._pending_error, None
            if self.store is not None:
                if self._owns_store:
                    self.store.close()
                elif not self.store.closed:
                    self.store.flush()
            if err is not None:
                raise RuntimeError(
                    f"recording a snapshot failed in the writer thread: {err}"
                ) from err
        finally:
            self._slots = []

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:  # pragma: no cover
            pass

    def __repr__(self) -> str:
        where = None if self.store is None else str(self.store.path)
        return (
            f"Recorder(store={where!r}, n_params={self.n_params}, tensors={len(self.names)}, "
            f"step={self._step}, snapshots={self.n_snapshots}, closed={self._closed})"
        )


# --------------------------------------------------------------------------------------------
# Write strategies: how a due snapshot gets from the parameters into the store and the online
# accumulators. The recorder picks one at construction; all go through the store's append
# paths (fractaldiff.io.writer), so the store's guarantees are the same for each.
# --------------------------------------------------------------------------------------------


class _WriteStrategy:
    """One way of writing snapshots: :meth:`write` a due snapshot, :meth:`drain` until every
    snapshot taken is written (raising what failed), :meth:`stop` for good."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def write(self, step: int, meta: dict, device_loss: Any, to_store: bool,
              to_online: bool) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Wait until every snapshot taken so far is written."""

    def stop(self) -> None:
        self.drain()

    def _captured(self, device_loss: Any) -> _Slot:
        """A free buffer holding the parameters' current values (waits for one if all are in
        flight)."""
        slot = self.rec._free.get()
        try:
            self.rec._capture(slot, device_loss)
        except BaseException:
            self.rec._free.put(slot)
            raise
        return slot


class _InlineWrite(_WriteStrategy):
    """``background=False``: gather, then append (and feed online) on the training thread."""

    def write(self, step, meta, device_loss, to_store, to_online):
        slot = self._captured(device_loss)
        self.rec._consume((slot, step, meta, to_store, to_online, device_loss is not None))


class _ThreadWrite(_WriteStrategy):
    """CUDA parameters or online accumulators: gather into a buffer (a non-blocking copy on a
    side stream on CUDA), a Python writer thread waits for it, appends and feeds online."""

    def __init__(self, rec: Recorder) -> None:
        super().__init__(rec)
        self._work: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._loop, name="fractaldiff-recorder", daemon=True
        )
        self._thread.start()

    def write(self, step, meta, device_loss, to_store, to_online):
        slot = self._captured(device_loss)
        self._work.put((slot, step, meta, to_store, to_online, device_loss is not None))

    def _loop(self) -> None:
        rec = self.rec
        while True:
            item = self._work.get()
            if item is None:
                self._work.task_done()
                return
            try:
                if rec._pending_error is None:
                    rec._consume(item)
                else:
                    rec._free.put(item[0])
            except BaseException as exc:  # re-raised in the training thread
                rec._pending_error = exc
            finally:
                self._work.task_done()

    def drain(self) -> None:
        self._work.join()

    def stop(self) -> None:
        if self._thread is not None:
            self._work.put(None)
            self._thread.join()
            self._thread = None


class _QueuedWrite(_WriteStrategy):
    """CPU parameters into a store only, with ``direct=False``: gather into a buffer and hand
    it to the store's compiled writer thread (``append_async``); buffers come back as their
    snapshots are reported."""

    def __init__(self, rec: Recorder) -> None:
        super().__init__(rec)
        self._inflight: dict[int, _Slot] = {}

    def write(self, step, meta, device_loss, to_store, to_online):
        rec = self.rec
        self._reap(block=rec._free.empty())
        slot = self._captured(device_loss)
        t = rec.store.append_async(slot.host_np, step=step, **meta)
        self._inflight[t] = slot
        rec._last_stored_step = step

    def _reap(self, block: bool) -> None:
        """Give back the buffers of snapshots the store's writer has finished (all of them,
        waiting, with ``block``), and flag those that held NaN/Inf."""
        rec = self.rec
        done = rec.store.wait_async() if block else rec.store.collect_async()
        for t, step, n_bad in done:
            slot = self._inflight.pop(t, None)
            if slot is not None:
                rec._free.put(slot)
            if n_bad:
                rec._flag_nonfinite(step, f"the parameters are not finite ({n_bad} values)")

    def drain(self) -> None:
        self._reap(block=True)

    def stop(self) -> None:
        if self.rec.store is not None and not self.rec.store.closed:
            self._reap(block=True)


class _DirectWrite(_WriteStrategy):
    """CPU parameters of the store's dtype into a store only: one compiled call writes the
    row straight from the parameters' memory (``SnapshotStore.parts_writer``), no copy and no
    thread; the metadata line comes from a %-template for the usual keys."""

    def __init__(self, rec: Recorder) -> None:
        super().__init__(rec)
        self._parts: PartsWriter | None = None  # over the parameters
        self._parts_ptrs: list[int] = []
        self._gather_parts: PartsWriter | None = None  # for non-contiguous parameters
        self._templates: dict[tuple[bool, bool, bool, bool], str] = {}

    def write(self, step, meta, device_loss, to_store, to_online):
        self.write_fields(step, meta.pop("epoch", None), meta.pop("lr", None),
                          meta.pop("batch_size", None), meta.pop("loss", None),
                          bool(meta.pop("nonfinite", False)), meta)

    def write_fields(
        self,
        step: int,
        epoch: Any,
        lr: Any,
        batch_size: Any,
        loss: float | None,
        nonfinite: bool,
        extra: dict,
        initial: bool = False,
    ) -> bool:
        """Write one snapshot straight from the parameters; False when already stored."""
        rec = self.rec
        if rec._last_stored_step is not None and rec._already_stored(step, initial):
            return False
        writer = self._parts_writer()
        if lr is not None:
            lr = float(lr)
        # the metadata line: a template for the usual keys, else the store's JSON encoding
        if not extra and not nonfinite and (lr is None or math.isfinite(lr)):
            key = (epoch is not None, lr is not None, batch_size is not None, loss is not None)
            template = self._templates.get(key)
            if template is None:
                template = self._templates[key] = self._template(*key)
            args = [step]
            if epoch is not None:
                args.append(int(epoch))
            if lr is not None:
                args.append(lr)
            if batch_size is not None:
                args.append(int(batch_size))
            if loss is not None:
                args.append(loss)
            args.append(time.time())
            line = (template % tuple(args)).encode()
        else:
            meta = rec._meta_dict(epoch, lr, batch_size, loss, nonfinite, extra)
            meta["step"] = step
            meta["nonfinite"] = bool(meta.get("nonfinite", False))
            line, _ = rec.store.metadata_line(meta)
        if writer is None:  # a parameter is not contiguous: gather it first
            slot = rec._slots[0]
            rec._capture(slot, None)
            if self._gather_parts is None:
                self._gather_parts = rec.store.parts_writer([slot.host_np])
            writer = self._gather_parts
        _, n_bad = writer.append_line(line, step)
        rec.n_snapshots += 1
        rec._last_stored_step = step
        if n_bad:
            rec._flag_nonfinite(step, f"the parameters are not finite ({n_bad} values)")
        return True

    @staticmethod
    def _template(epoch: bool, lr: bool, batch_size: bool, loss: bool) -> str:
        """A metadata line's %-format: the keys the store's JSON encoding would write, in the
        same order (``%r`` of a finite float is what ``json.dumps`` writes)."""
        parts = ['{"step":%d', '"nonfinite":false']
        if epoch:
            parts.append('"epoch":%d')
        if lr:
            parts.append('"lr":%r')
        if batch_size:
            parts.append('"batch_size":%d')
        if loss:
            parts.append('"loss":%r')
        parts.append('"wall_time":%r}\n')
        return ",".join(parts)

    def _parts_writer(self) -> PartsWriter | None:
        """The direct writer over the parameters' memory (rebuilt when a parameter's storage
        was replaced, e.g. by ``p.data = ...``); None while one is not contiguous or not of the
        store's dtype (the gather path copies and converts those)."""
        rec = self.rec
        ptrs = [p.data_ptr() for p in rec._tensors]
        if ptrs != self._parts_ptrs or self._parts is None:
            self._parts = None
            self._parts_ptrs = ptrs
            want = getattr(torch, rec.store.dtype.name)  # float16/32/64: same names
            if all(p.is_contiguous() and p.dtype == want for _, p in rec._params):
                self._parts = rec.store.parts_writer(
                    [p.detach().numpy().reshape(-1) for _, p in rec._params]
                )
        return self._parts
