"""Many identical networks trained at once: one vmapped computation over stacked parameters."""

from __future__ import annotations

import copy
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .._validation import check_int, check_number
from .loop import as_training_tensors, check_labels_fit
from .recorder import log_schedule

__all__ = ["EnsembleResult", "train_ensemble"]


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` returns: N trained members as stacked tensors.

    Attributes
    ----------
    params : dict of str -> torch.Tensor
        Final parameters, each ``(n_models, *shape)`` (CPU, float32), in the order of
        ``model.named_parameters()``.
    buffers : dict of str -> torch.Tensor
        Final buffers (BatchNorm running statistics), each ``(n_models, *shape)``.
    seeds : numpy.ndarray of int64, shape (n_models,)
        Member ``i`` is ``model_fn(seeds[i])`` trained with batch-order seed ``seeds[i]``.
    loss : numpy.ndarray of float32, shape (n_models, steps)
        Minibatch loss of every optimizer step (before the step), per member.
    train_loss, train_accuracy : numpy.ndarray of float64, shape (n_models,)
        Final loss and accuracy on the whole training split, in eval mode (as
        :func:`~fractaldiff.train.train` evaluates). Accuracy is None-valued (NaN) for
        ``loss="mse"``.
    test_loss, test_accuracy : numpy.ndarray or None
        The same on the test split (None without test data).
    displacement : numpy.ndarray of float64, shape (n_models, len(displacement_steps))
        R(t) = ||w(t) - w(0)||_2 over all parameters of each member (buffers excluded), at
        ``displacement_steps`` (log-spaced, step 0 included), computed on the fly.
    displacement_steps : numpy.ndarray of int64
    steps : int
        Optimizer steps taken by every member.
    seconds : float
        Wall time of the training loop.
    store : str or None
        Path of the snapshot store, if recording (see :func:`train_ensemble`).
    config : dict
        The arguments the ensemble was trained with (JSON-able).
    model : torch.nn.Module
        A template member (architecture only; its own tensors are not the members').
    data : Any
        The ``data`` argument, kept for later analyses
        (:func:`fractaldiff.bayes.compare_posterior`).
    """

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    seeds: np.ndarray
    loss: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    displacement: np.ndarray
    displacement_steps: np.ndarray
    steps: int
    seconds: float
    store: str | None
    config: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    data: Any = None

    @property
    def n_models(self) -> int:
        """Number of members N."""
        return int(len(self.seeds))

    @property
    def n_params(self) -> int:
        """Parameters per member D."""
        return int(sum(p[0].numel() for p in self.params.values()))

    def flat_params(self) -> np.ndarray:
        """All members' parameters flattened, ``(n_models, n_params)`` float32 (order of
        ``named_parameters()``, as :class:`~fractaldiff.train.Recorder` records)."""
        n = self.n_models
        return torch.cat([p.reshape(n, -1) for p in self.params.values()], dim=1).numpy()

    def member(self, i: int) -> nn.Module:
        """Member ``i`` as an ordinary module (a copy of the template with its tensors)."""
        if not -self.n_models <= i < self.n_models:
            raise IndexError(f"member index {i} out of range for {self.n_models} members")
        m = copy.deepcopy(self.model)
        state = {k: v[i].clone() for k, v in self.params.items()}
        state.update({k: v[i].clone() for k, v in self.buffers.items()})
        m.load_state_dict(state)
        m.eval()
        return m

    def predict(self, x: Any, *, chunk: int = 8192) -> torch.Tensor:
        """Outputs (logits) of every member on ``x``: ``(n_models, len(x), n_out)``, eval mode."""
        return stacked_forward(self.model, self.params, self.buffers, x, chunk=chunk)

    def summary(self) -> dict[str, Any]:
        """Means and spreads of the final metrics (JSON-able)."""
        out: dict[str, Any] = {"n_models": self.n_models, "n_params": self.n_params,
                               "steps": self.steps, "seconds": self.seconds}
        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            v = getattr(self, name)
            if v is not None and np.isfinite(v).any():
                out[name] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v)),
                             "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
        return out


class _VmapBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with the same tensors and results, written with plain tensor ops.

    Under ``vmap`` torch's batching rule for ``batch_norm`` with per-member running
    statistics is slow on the CPU (about 10x the arithmetic); the same formulas as ordinary
    ops vectorize well. Training mode: batch mean and biased variance normalize, the running
    mean and the unbiased variance are updated with ``momentum`` in place (per member under
    vmap), ``num_batches_tracked`` counts. Eval mode: running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.training:
            dims = [0] if x.ndim == 2 else [0, 2]
            shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
            mean = x.mean(dim=dims)
            xc = x - mean.reshape(shape)
            var = (xc * xc).mean(dim=dims)  # torch.var is slow on this layout under vmap
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach() * self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(
                    var.detach() * (self.momentum * n / max(n - 1, 1)))
                self.num_batches_tracked.add_(1)
        else:
            shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
            xc = x - self.running_mean.reshape(shape)
            var = self.running_var
        y = xc * torch.rsqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


def _template(model: nn.Module) -> nn.Module:
    """A copy of one member whose plain BatchNorm1d layers are vmap-friendly equivalents."""
    t = copy.deepcopy(model)
    for parent in t.modules():
        for name, child in list(parent.named_children()):
            if (type(child) is nn.BatchNorm1d and child.affine and child.track_running_stats
                    and child.momentum is not None):
                bn = _VmapBatchNorm1d(child.num_features, eps=child.eps,
                                      momentum=child.momentum)
                bn.load_state_dict(child.state_dict())
                bn.train(child.training)
                setattr(parent, name, bn)
    return t


def stacked_forward(model: nn.Module, params: dict[str, torch.Tensor],
                    buffers: dict[str, torch.Tensor], x: Any, *, chunk: int = 8192,
                    train_mode: bool = False) -> torch.Tensor:
    """Evaluate stacked members on the same inputs: ``(N, len(x), n_out)``, no gradient.

    Parameters
    ----------
    model : torch.nn.Module
        Template with the members' architecture.
    params, buffers : dict of str -> Tensor
        Stacked ``(N, ...)`` tensors (as :func:`torch.func.stack_module_state` makes).
    x : array_like or Tensor, shape (n, features...)
    """
    from torch.func import functional_call, vmap

    dev = next(iter(params.values())).device
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) \
        else x.detach().to(torch.float32)
    xt = xt.to(dev)
    was = model.training
    model.train(train_mode)
    try:
        def f(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (p, b), (xx,))
        outs = []
        with torch.no_grad():
            for i in range(0, xt.shape[0], chunk):
                outs.append(vmap(f, in_dims=(0, 0, None))(params, buffers, xt[i: i + chunk]))
        return torch.cat(outs, dim=1)
    finally:
        model.train(was)


def batched_sequential(template: nn.Module) -> Callable | None:
    """A batched-matmul forward for an ``nn.Sequential`` of Linear / BatchNorm1d / ReLU.

    Returns ``f(params, buffers, x, training) -> (N, B, out)`` computing every member with one
    ``baddbmm`` per Linear (the same arithmetic as the vmapped ``functional_call``, about 2x
    faster on the CPU for small layers), BatchNorm with per-member running statistics updated
    in place in training mode; None when the template has any other module.
    """
    if not isinstance(template, nn.Sequential):
        return None
    layers: list[tuple[str, str, Any]] = []
    for name, mod in template.named_children():
        if type(mod) is nn.Linear:
            layers.append(("linear", name, mod.bias is not None))
        elif isinstance(mod, nn.BatchNorm1d) and mod.affine and mod.track_running_stats and \
                mod.momentum is not None:
            layers.append(("bn", name, (float(mod.momentum), float(mod.eps))))
        elif type(mod) is nn.ReLU:
            layers.append(("relu", name, None))
        else:
            return None

    def f(params: dict, buffers: dict, x: torch.Tensor, training: bool) -> torch.Tensor:
        h = x
        for kind, name, extra in layers:
            if kind == "linear":
                w = params[f"{name}.weight"]
                if extra:
                    h = torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), h, w.transpose(1, 2))
                else:
                    h = torch.bmm(h, w.transpose(1, 2))
            elif kind == "relu":
                h = torch.relu(h)
            else:
                mom, eps = extra
                rm, rv = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
                if training:
                    mean = h.mean(1)
                    hc = h - mean.unsqueeze(1)
                    var = (hc * hc).mean(1)
                    nb = h.shape[1]
                    with torch.no_grad():
                        rm.mul_(1 - mom).add_(mean.detach() * mom)
                        rv.mul_(1 - mom).add_(var.detach() * (mom * nb / max(nb - 1, 1)))
                        buffers[f"{name}.num_batches_tracked"].add_(1)
                else:
                    hc = h - rm.unsqueeze(1)
                    var = rv
                h = hc * torch.rsqrt(var + eps).unsqueeze(1)
                h = h * params[f"{name}.weight"].unsqueeze(1) + params[f"{name}.bias"].unsqueeze(1)
        return h

    return f


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise ValueError unless all modules have the same parameter/buffer names and shapes."""
    ref = [(k, tuple(v.shape)) for k, v in models[0].state_dict().items()]
    ref_cls = [type(m).__name__ for m in models[0].modules()]
    for i, m in enumerate(models[1:], start=1):
        here = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
        if here != ref or [type(mm).__name__ for mm in m.modules()] != ref_cls:
            diff = sorted(set(here) ^ set(ref))[:4]
            raise ValueError(
                f"ensemble members differ in architecture: member {i} has tensors that member "
                f"0 lacks or shapes that differ (e.g. {diff or 'module types differ'}); "
                f"model_fn must build identical architectures for every seed")


def train_ensemble(
    model_fn: Callable[[int], nn.Module],
    data: Any,
    n_models: int,
    *,
    lr: float,
    batch_size: int,
    epochs: int | None = None,
    steps: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    loss: str = "cross_entropy",
    drop_last: bool = True,
    sampling: str = "reshuffle",
    backend: str = "auto",
    device: Any = "cpu",
    record: str | os.PathLike | None = None,
    record_every: int = 1,
    displacement_points: int = 64,
    progress: bool = False,
) -> EnsembleResult:
    """Train N identical-architecture networks with different seeds as one vmapped computation.

    Member ``i`` uses seed ``s_i = seeds[i]`` (default ``seed + i``) twice, exactly as a loop
    of single trainings would::

        for s in seeds:
            m = model_fn(s)
            fractaldiff.train.train(m, data, seed=s, lr=lr, batch_size=batch_size, ...)

    i.e. the initialization is ``model_fn(s_i)`` and the batch order comes from a
    ``torch.Generator`` seeded with ``s_i`` (a fresh ``randperm`` each epoch, batches of
    ``batch_size`` without replacement, the last incomplete batch dropped when ``drop_last``).
    Parameters and buffers are stacked (:func:`torch.func.stack_module_state`); each step
    runs the forward pass of all members on their own minibatches with
    :func:`torch.func.vmap` over :func:`torch.func.functional_call`, backpropagates the sum
    of the members' losses (the members are independent, so each slice of the gradient is
    that member's gradient), and takes one optimizer step on the stacked tensors (SGD with
    momentum / weight decay, and Adam, are elementwise, so this is each member's own step).
    The result equals the loop to float tolerance (not bit for bit: batched kernels round
    differently).

    BatchNorm is supported: running statistics are per-member buffers, updated in training
    mode inside the vmapped call; evaluation uses them in eval mode, as ``train`` does.

    Parameters
    ----------
    model_fn : callable seed -> torch.nn.Module
        Builds one member from its seed, e.g.
        ``lambda s: fractaldiff.train.mlp(2, 2, width=32, seed=s)``. Every member must have
        the same architecture.
    data : Dataset or tuple
        As for :func:`~fractaldiff.train.train`. For ``loss="mse"``, y holds float targets
        ``(n,)`` or ``(n, n_out)``.
    n_models : int
        N >= 2.
    lr, batch_size, epochs, steps, momentum, weight_decay, drop_last
        As for :func:`~fractaldiff.train.train` (exactly one of ``epochs``, ``steps``).
    optimizer : {"sgd", "adam"}
    betas : (float, float)
        Adam's betas (torch's defaults).
    seeds : sequence of int, optional
        One seed per member (distinct); default ``seed, seed + 1, ...``.
    loss : {"cross_entropy", "mse"}
        Cross-entropy on class labels (as ``train``), or ``0.5 * sum_k (f_k(x) - y_k)^2``
        averaged over the batch (the unit-noise Gaussian negative log-likelihood, up to a
        constant).
    sampling : {"reshuffle", "independent"}, default "reshuffle"
        ``"reshuffle"``: as :func:`~fractaldiff.train.train` (a fresh permutation per epoch,
        per member). ``"independent"``: every step draws a fresh batch of ``batch_size``
        distinct examples for every member, independently of earlier steps (one generator
        seeded with ``seed``; not loop-equivalent). Random reshuffling makes an epoch's
        gradient noise sum to zero, so its iterates at epoch ends are far less spread than
        the small-learning-rate Langevin law of independent batches (measured on a quadratic
        in tests/test_posterior.py: 8x narrower); use ``"independent"`` when comparing with
        that law.
    backend : {"auto", "vmap", "bmm"}, default "auto"
        ``"vmap"``: :func:`torch.func.vmap` over :func:`torch.func.functional_call` (any
        architecture). ``"auto"``: for an ``nn.Sequential`` of Linear / BatchNorm1d / ReLU
        (e.g. :func:`~fractaldiff.train.mlp`), an equivalent batched-matmul program (one
        ``baddbmm`` per layer for all members), used after checking that it reproduces the
        vmapped loss on one batch; anything else uses vmap. ``config["backend"]`` says which
        ran.
    device : {"cpu", "cuda", "auto"} or torch.device, default "cpu"
    record : path, optional
        Record every member's trajectory in ONE snapshot store with a member axis: each row
        is the concatenation of all members' flattened parameters, member-major
        (``n_models * n_params`` columns; member ``i`` owns columns
        ``[i * n_params, (i + 1) * n_params)``, in ``named_parameters()`` order). Rows are
        step 0 (the initialization) and every ``record_every`` steps. The store's metadata
        holds ``n_models``, ``n_params_per_member`` and the seeds. One store rather than N:
        one file, one append per snapshot, and per-member analyses are column slices.
    record_every : int, default 1
    displacement_points : int, default 64
        Number of log-spaced steps at which R(t) = ||w(t) - w(0)|| of every member is
        computed on the fly (cheap; no snapshots kept).
    progress : bool, default False
        Show a tqdm progress bar over steps.

    Returns
    -------
    EnsembleResult
    """
    from torch.func import functional_call, stack_module_state, vmap

    if not callable(model_fn):
        raise TypeError(f"model_fn must be a callable seed -> nn.Module, got "
                        f"{type(model_fn).__name__}")
    if isinstance(n_models, bool) or not isinstance(n_models, numbers.Integral):
        raise TypeError(f"n_models must be an int, got {type(n_models).__name__}")
    if n_models < 2:
        raise ValueError(f"n_models must be >= 2 for an ensemble, got {n_models} "
                         f"(use fractaldiff.train.train for a single model)")
    n_models = int(n_models)
    lr = check_number(lr, "lr", positive=True)
    momentum = check_number(momentum, "momentum", minimum=0.0)
    weight_decay = check_number(weight_decay, "weight_decay", minimum=0.0)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= or steps=")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    epochs = None if epochs is None else check_int(epochs, "epochs", minimum=1)
    steps = None if steps is None else check_int(steps, "steps", minimum=1)
    record_every = check_int(record_every, "record_every", minimum=1)
    displacement_points = check_int(displacement_points, "displacement_points", minimum=2)
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if optimizer == "adam" and momentum:
        raise ValueError("momentum applies to optimizer='sgd' only (Adam has betas)")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if backend not in ("auto", "vmap", "bmm"):
        raise ValueError(f"backend must be 'auto', 'vmap' or 'bmm', got {backend!r}")
    if sampling not in ("reshuffle", "independent"):
        raise ValueError(f"sampling must be 'reshuffle' or 'independent', got {sampling!r}")
    if seeds is None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        seeds_arr = np.arange(int(seed), int(seed) + n_models, dtype=np.int64)
    else:
        if isinstance(seeds, (numbers.Integral, str, bytes)) or not hasattr(seeds, "__len__"):
            raise TypeError(f"seeds must be a sequence of n_models={n_models} ints, got "
                            f"{type(seeds).__name__}")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
        if bad:
            raise TypeError(f"seeds must hold ints, got {bad[0]!r}")
        seeds_arr = np.asarray([int(s) for s in seeds], dtype=np.int64)
        if seeds_arr.shape != (n_models,):
            raise ValueError(f"seeds must hold n_models={n_models} ints, got {len(seeds_arr)}")
        if len(np.unique(seeds_arr)) != n_models:
            raise ValueError("seeds must be distinct")
    if device is None or device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here")

    tensors = as_training_tensors(data, labels=loss == "cross_entropy")
    x_train, y_train = tensors[0], tensors[1]
    n = x_train.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training examples")

    models = []
    for s in seeds_arr:
        m = model_fn(int(s))
        if not isinstance(m, nn.Module):
            raise TypeError(f"model_fn must return a torch.nn.Module, got {type(m).__name__}")
        models.append(m)
    check_same_architecture(models)
    if loss == "cross_entropy":
        check_labels_fit(models[0], x_train, dict(zip(("y_train", "y_test"), tensors[1::2])))
    template = _template(models[0]).to(dev)
    for m in models:
        m.to(dev)
        m.train()
    params, buffers = stack_module_state(models)
    del models
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    buffers = {k: v.detach().clone() for k, v in buffers.items()}
    plist = list(params.values())
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(plist, lr=lr, momentum=momentum,
                                                     weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(plist, lr=lr, weight_decay=weight_decay, betas=tuple(betas))

    x_train, y_train = x_train.to(dev), y_train.to(dev)
    test = tuple(t.to(dev) for t in tensors[2:]) if len(tensors) == 4 else None

    if loss == "cross_entropy":
        def loss_one(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(out, y)
    else:
        def loss_one(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((out - y) ** 2).sum(-1).mean()

    def member_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_one(functional_call(template, (p, b), (x,)), y)

    vmapped_loss = vmap(member_loss)
    program = batched_sequential(template) if backend in ("auto", "bmm") else None
    if backend == "bmm" and program is None:
        raise ValueError("backend='bmm' needs an nn.Sequential of Linear, BatchNorm1d and ReLU")
    if program is not None:
        # check the batched program against vmap on one batch (buffers untouched)
        idx0 = torch.arange(min(batch_size, n)).repeat(n_models, 1).to(dev)
        with torch.no_grad():
            b1 = {k: v.clone() for k, v in buffers.items()}
            b2 = {k: v.clone() for k, v in buffers.items()}
            ref = vmapped_loss(params, b1, x_train[idx0], y_train[idx0])
            out = program(params, b2, x_train[idx0], True)
            got = torch.stack([loss_one(o, yy) for o, yy in zip(out, y_train[idx0])])
        if not torch.allclose(ref, got, rtol=1e-4, atol=1e-6):
            program = None
    used_backend = "vmap" if program is None else "bmm"

    if program is None:
        batched_loss = vmapped_loss
    elif loss == "cross_entropy":
        def batched_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = program(p, b, x, True)
            return nn.functional.cross_entropy(
                out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none"
            ).reshape(y.shape).mean(1)
    else:
        def batched_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = program(p, b, x, True)
            return 0.5 * ((out - y) ** 2).sum(-1).mean(1)

    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    total = steps if steps is not None else epochs * per_epoch
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds_arr]
    gen_ind = torch.Generator().manual_seed(int(seeds_arr[0]) * 7919 + 1)
    dsteps = log_schedule(total, displacement_points)
    dset = {int(s): j for j, s in enumerate(dsteps)}
    disp = np.zeros((n_models, len(dsteps)))
    w0 = [p.detach().clone() for p in plist]

    def displacement_now() -> np.ndarray:
        sq = sum(((p.detach() - q) ** 2).reshape(n_models, -1).sum(1) for p, q in zip(plist, w0))
        return torch.sqrt(sq).double().cpu().numpy()

    store = None
    n_per = sum(p[0].numel() for p in plist)
    if record is not None:
        import fractaldiff as fd

        store = fd.SnapshotStore.create(
            record, n_models * n_per, dtype="float32",
            meta={"kind": "ensemble", "n_models": n_models, "n_params_per_member": n_per,
                  "member_major": True, "seeds": [int(s) for s in seeds_arr],
                  "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
                  "momentum": momentum, "weight_decay": weight_decay,
                  "parameters": [[k, list(v.shape[1:])] for k, v in params.items()]})

    def snapshot(step: int, epoch: int) -> None:
        with torch.no_grad():
            row = torch.cat([p.detach().reshape(n_models, -1) for p in plist], dim=1)
        store.append(row.reshape(-1).cpu(), step=step, epoch=epoch)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"ensemble x{n_models}", leave=False)
    losses = torch.empty((total, n_models), dtype=torch.float32)
    t0 = time.perf_counter()
    template.train()
    step = 0
    epoch = 0
    if store is not None:
        snapshot(0, 0)
    try:
        while step < total:
            if sampling == "reshuffle":
                orders = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
            for b in range(per_epoch):
                if step >= total:
                    break
                if sampling == "reshuffle":
                    idx = orders[:, b * batch_size: (b + 1) * batch_size]
                else:
                    idx = torch.rand(n_models, n, generator=gen_ind).argsort(1)[:, :batch_size]
                    idx = idx.to(dev)
                lv = batched_loss(params, buffers, x_train[idx], y_train[idx])
                opt.zero_grad(set_to_none=True)
                lv.sum().backward()
                opt.step()
                losses[step] = lv.detach().cpu()
                step += 1
                if step in dset:
                    disp[:, dset[step]] = displacement_now()
                if store is not None and step % record_every == 0:
                    snapshot(step, epoch)
                if bar is not None:
                    bar.update(1)
            epoch += 1
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    seconds = time.perf_counter() - t0

    fparams = {k: v.detach().cpu() for k, v in params.items()}
    fbuffers = {k: v.detach().cpu() for k, v in buffers.items()}
    template_cpu = template.cpu()

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = stacked_forward(template_cpu, fparams, fbuffers, x.cpu())
        yc = y.cpu()
        if loss == "cross_entropy":
            lv = torch.stack([nn.functional.cross_entropy(o, yc) for o in out])
            acc = (out.argmax(-1) == yc).double().mean(1).numpy()
        else:
            lv = 0.5 * ((out - yc) ** 2).sum(-1).mean(1)
            acc = np.full(n_models, np.nan)
        return lv.double().numpy(), acc

    tr_loss, tr_acc = evaluate(x_train, y_train)
    te_loss = te_acc = None
    if test is not None:
        te_loss, te_acc = evaluate(*test)
    config = {"n_models": n_models, "lr": lr, "batch_size": batch_size, "epochs": epochs,
              "steps": steps, "optimizer": optimizer, "momentum": momentum,
              "weight_decay": weight_decay, "betas": list(betas), "loss": loss,
              "drop_last": drop_last, "sampling": sampling, "backend": used_backend,
              "device": str(dev), "n_train": int(n)}
    return EnsembleResult(
        params=fparams, buffers=fbuffers, seeds=seeds_arr,
        loss=losses.T.contiguous().numpy(), train_loss=tr_loss, train_accuracy=tr_acc,
        test_loss=te_loss, test_accuracy=te_acc, displacement=disp,
        displacement_steps=dsteps, steps=int(total), seconds=seconds,
        store=None if record is None else str(record), config=config,
        model=template_cpu, data=data,
    )
