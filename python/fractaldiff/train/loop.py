"""A small, deterministic training loop for the paper's experiments."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_int, check_number
from .data import Dataset
from .recorder import NonFiniteLossError, Recorder

__all__ = ["TrainHistory", "resolve_device", "train"]


@dataclass
class TrainHistory:
    """What :func:`train` returns.

    Attributes
    ----------
    loss : list of float
        Training loss of every optimizer step (minibatch loss, before the step).
    evals : list of dict
        One per evaluation (end of every epoch and of the run): ``step``, ``epoch``,
        ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (test entries only
        with test data). Accuracies are fractions in [0, 1], in eval mode (BatchNorm running
        statistics), on the whole split.
    steps : int
        Optimizer steps taken.
    epochs : int
        Epochs started.
    stopped : str or None
        Why the run ended early (a non-finite loss with ``on_nan="stop"``), else None.
    seconds : float
        Wall time of the loop.
    store : str or None
        Path of the snapshot store written, if any.
    """

    loss: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    stopped: str | None = None
    seconds: float = 0.0
    store: str | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last evaluation (empty dict if none)."""
        return self.evals[-1] if self.evals else {}

    @property
    def train_accuracy(self) -> float | None:
        """Final training accuracy."""
        return self.final.get("train_accuracy")

    @property
    def test_accuracy(self) -> float | None:
        """Final test accuracy (None without test data)."""
        return self.final.get("test_accuracy")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        return {
            "loss": list(self.loss), "evals": [dict(e) for e in self.evals],
            "steps": self.steps, "epochs": self.epochs, "stopped": self.stopped,
            "seconds": self.seconds, "store": self.store,
        }


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got "
                         f"{device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu'")
    return dev


def _as_tensor(a: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} could not be converted to a tensor: {exc}") from None
    if dtype == torch.int64:
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"{name} must hold integer class labels, got dtype {t.dtype}")
        return t.to(torch.int64)
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise TypeError(f"{name} must be numeric, got dtype {t.dtype}")
    return t.to(dtype)


def as_training_tensors(data: Any, *, labels: bool = True) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train)`` or ``(x_train, y_train, x_test, y_test)`` as checked tensors.

    ``data``: a :class:`~fractaldiff.train.data.Dataset`, ``(x, y)`` or ``(x_train, y_train,
    x_test, y_test)`` (numpy arrays or tensors). x becomes float32 ``(n, features...)``; with
    ``labels`` y becomes int64 class indices ``(n,)`` (>= 0), else float32 targets ``(n, k)``
    (a 1-D y becomes ``(n, 1)``). The one unpacker of :func:`train` and
    :func:`~fractaldiff.train.train_ensemble`; TypeError/ValueError name the part at fault.
    """
    if isinstance(data, Dataset):
        parts: tuple[Any, ...] = (data.x_train, data.y_train, data.x_test, data.y_test)
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
        parts = tuple(data)
    else:
        raise TypeError(
            "data must be a fractaldiff.train.Dataset, a tuple (x, y) or a tuple "
            f"(x_train, y_train, x_test, y_test); got {type(data).__name__}"
        )
    out = []
    for i in range(0, len(parts), 2):
        which = "train" if i == 0 else "test"
        x = _as_tensor(parts[i], f"data x_{which}", torch.float32)
        if labels:
            y = _as_tensor(parts[i + 1], f"data y_{which}", torch.int64)
            if y.ndim != 1:
                raise ValueError(f"data: y_{which} must hold class indices (n,), got shape "
                                 f"{tuple(y.shape)}")
            if (y < 0).any():
                raise ValueError(f"data: y_{which} must hold class indices >= 0")
        else:
            y = _as_tensor(parts[i + 1], f"data y_{which}", torch.float32)
            if y.ndim == 1:
                y = y[:, None]
        if x.ndim < 2 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data: x_{which} must be (n, features...) with as many rows as y_{which}; "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"data: x_{which} is empty")
        if not torch.isfinite(x).all():
            raise ValueError(f"data: x_{which} contains NaN or Inf")
        out += [x, y]
    return tuple(out)


def check_labels_fit(model: nn.Module, x: torch.Tensor, labels: dict[str, torch.Tensor]) -> None:
    """Check, before any training, that ``model`` maps ``x`` to class logits ``(n, K)`` and that
    every label is below K (otherwise cross-entropy fails deep inside torch, mid-run).

    One example goes through the model in eval mode without gradients (no parameter, running
    statistic or random state changes); the model's mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:1])
    except Exception as exc:
        raise ValueError(f"model could not be applied to data x_train of shape "
                         f"{tuple(x.shape)}: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must map a batch of x to class logits (n, n_classes >= 2) for "
                         f"the cross-entropy loss; got output {shape} for one example")
    k = int(out.shape[1])
    for name, y in labels.items():
        top = int(y.max()) if y.numel() else -1
        if top >= k:
            raise ValueError(f"data: {name} holds class label {top} but the model has {k} "
                             f"outputs (labels must lie in 0..{k - 1})")


def _make_optimizer(optimizer: Any, model: nn.Module, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                               weight_decay=weight_decay)
    if optimizer == "adam":
        if momentum:
            raise ValueError("momentum applies to optimizer='sgd' only (Adam has betas)")
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or a torch.optim.Optimizer, got "
                     f"{optimizer!r}")


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any,
              chunk: int = 8192) -> tuple[float, float]:
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, x.shape[0], chunk):
        out = model(x[i : i + chunk])
        total += float(loss_fn(out, y[i : i + chunk])) * out.shape[0]
        correct += int((out.argmax(dim=1) == y[i : i + chunk]).sum())
    model.train(was)
    return total / x.shape[0], correct / x.shape[0]


def train(
    model: nn.Module,
    data: Any,
    *,
    optimizer: Any = "sgd",
    lr: float,
    batch_size: int,
    epochs: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    recorder: Recorder | str | os.PathLike | None = None,
    device: Any = "auto",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    drop_last: bool = True,
    on_nan: str = "stop",
    eval_every: int | None = None,
) -> TrainHistory:
    """Train a classifier with minibatch SGD or Adam, deterministically, optionally recording.

    Cross-entropy loss; batches are drawn without replacement, reshuffled every epoch by a
    generator seeded with ``seed`` (the model's initialization is the caller's: build it with
    a seed, e.g. :func:`~fractaldiff.train.models.mlp`). The same model initialization, data,
    arguments and device give the same trajectory bit for bit on the CPU.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch ``x`` to class logits ``(batch, n_classes)``; moved to ``device``.
    data : Dataset or tuple
        A :class:`~fractaldiff.train.data.Dataset`, ``(x, y)`` or ``(x_train, y_train, x_test,
        y_test)`` (numpy arrays or tensors; y: integer class labels).
    optimizer : {"sgd", "adam"} or torch.optim.Optimizer, default "sgd"
        Plain SGD (no momentum, no weight decay unless asked) or Adam.
    lr : float
        Learning rate (> 0).
    batch_size : int
        Minibatch size, 1..n_train.
    epochs, steps : int
        Length of the run: exactly one of them (steps may span several epochs).
    seed : int, default 0
        Seeds the batch order.
    recorder : Recorder, path or None
        A :class:`~fractaldiff.train.Recorder` of this model, called after every optimizer step;
        or a path, for which a recorder (snapshots every step) is made and closed here.
    device : {"auto", "cpu", "cuda"} or torch.device, default "auto"
    momentum, weight_decay : float, default 0
    drop_last : bool, default True
        Skip an epoch's last incomplete batch (keeps the batch size, hence the SGD noise, fixed).
    on_nan : {"stop", "warn", "ignore"}, default "stop"
        For a path ``recorder`` and for runs without a recorder: what a non-finite loss does
        (``"stop"`` ends the run with ``history.stopped`` set).
    eval_every : int, optional
        Evaluate every ``eval_every`` steps as well as at the end of each epoch and of the run.

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lr = check_number(lr, "lr", positive=True)
    momentum = check_number(momentum, "momentum", minimum=0.0)
    weight_decay = check_number(weight_decay, "weight_decay", minimum=0.0)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= or steps=")
    for name, v in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size),
                    ("eval_every", eval_every)):
        if v is not None:
            check_int(v, name, minimum=1)
    check_int(seed, "seed")
    if on_nan not in ("stop", "warn", "ignore"):
        raise ValueError(f"on_nan must be 'stop', 'warn' or 'ignore', got {on_nan!r}")
    dev = resolve_device(device)
    tensors = as_training_tensors(data)
    x_train, y_train = tensors[0], tensors[1]
    n = x_train.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training examples")
    model.to(dev)
    tensors = tuple(t.to(dev) for t in tensors)
    check_labels_fit(model, tensors[0], dict(zip(("y_train", "y_test"), tensors[1::2])))
    x_train, y_train = tensors[0], tensors[1]
    test = tensors[2:] if len(tensors) == 4 else None
    opt = _make_optimizer(optimizer, model, lr, momentum, weight_decay)
    loss_fn = nn.CrossEntropyLoss()

    own_recorder = False
    if recorder is not None and not isinstance(recorder, Recorder):
        if not isinstance(recorder, (str, os.PathLike)):
            raise TypeError(f"recorder must be a Recorder, a path or None, got "
                            f"{type(recorder).__name__}")
        recorder = Recorder(model, recorder, on_nan=on_nan,
                            meta={"optimizer": optimizer if isinstance(optimizer, str) else
                                  type(optimizer).__name__, "lr": lr, "batch_size": batch_size,
                                  "seed": int(seed), "momentum": momentum,
                                  "weight_decay": weight_decay})
        own_recorder = True
    elif recorder is not None and recorder.model is not model:
        raise ValueError("recorder records a different model than the one being trained")

    gen = torch.Generator().manual_seed(int(seed))
    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    total = steps if steps is not None else epochs * per_epoch
    hist = TrainHistory(store=None if recorder is None or recorder.store is None
                        else str(recorder.store.path))
    loss_dev: list[torch.Tensor] = []

    def evaluate(epoch: int) -> None:
        hist.loss.extend(float(v) for v in torch.stack(loss_dev).cpu()) if loss_dev else None
        loss_dev.clear()
        row: dict[str, Any] = {"step": hist.steps, "epoch": epoch}
        row["train_loss"], row["train_accuracy"] = _evaluate(model, x_train, y_train, loss_fn)
        if test is not None:
            row["test_loss"], row["test_accuracy"] = _evaluate(model, test[0], test[1], loss_fn)
        hist.evals.append(row)

    t0 = time.perf_counter()
    model.train()
    epoch = 0
    try:
        while hist.steps < total and hist.stopped is None:
            order = torch.randperm(n, generator=gen).to(dev)
            for b in range(per_epoch):
                if hist.steps >= total:
                    break
                idx = order[b * batch_size : (b + 1) * batch_size]
                out = model(x_train[idx])
                loss = loss_fn(out, y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                hist.steps += 1
                loss_dev.append(loss.detach())
                if recorder is not None:
                    try:
                        recorder.step(loss=loss.detach(), lr=opt.param_groups[0]["lr"],
                                      epoch=epoch, batch_size=int(idx.shape[0]))
                    except NonFiniteLossError as exc:
                        hist.stopped = f"non-finite loss or parameters at step {exc.step}"
                        break
                elif dev.type == "cpu" and on_nan != "ignore" and not torch.isfinite(loss):
                    if on_nan == "stop":
                        hist.stopped = f"non-finite loss at step {hist.steps}"
                        break
                if eval_every is not None and hist.steps % eval_every == 0:
                    evaluate(epoch)
            epoch += 1
            hist.epochs = epoch
            if hist.stopped is None and (not hist.evals or hist.evals[-1]["step"] != hist.steps):
                evaluate(epoch - 1)
        if hist.stopped is not None and loss_dev:
            hist.loss.extend(float(v) for v in torch.stack(loss_dev).cpu())
            loss_dev.clear()
        if recorder is not None:
            if own_recorder:
                recorder.close()
            else:
                recorder.flush()
    finally:
        if own_recorder and recorder is not None:
            recorder.close()
    hist.seconds = time.perf_counter() - t0
    return hist
