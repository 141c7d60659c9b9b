"""The batched localized-SGLD engine shared by estimate_llc, calibrate_llc and llc_trajectory.

Everything here works on stacked flat parameter vectors ``W`` of shape (C, D): C chains (of one
or several centres w*), D parameters. A :class:`Potential` gives the mini-batch mean loss and
its gradient for all chains in one vmapped call; :func:`run_sgld` runs the chains; and
:func:`summarize` turns the loss traces into lambda-hat, its standard error and diagnostics.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch.func import functional_call, vmap

__all__ = [
    "LLCWarning",
    "Potential",
    "check_count",
    "check_nonneg",
    "check_pos",
    "default_nbeta",
    "emit",
    "make_module_potential",
    "make_functional_potential",
    "run_sgld",
    "sequential_program",
    "summarize",
    "torch_threads",
    "value_and_grad_sum",
]


class LLCWarning(UserWarning):
    """An LLC estimate that should not be trusted as it is (see the result's diagnostics)."""


# --- argument checks (one message style: "func: name must be ..., got ...") -----------------


def _is_real(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_pos(value: Any, name: str, func: str) -> float:
    """A finite number > 0."""
    if not _is_real(value):
        raise TypeError(f"{func}: {name} must be a number > 0, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{func}: {name} must be finite and > 0, got {value!r}")
    return v


def check_nonneg(value: Any, name: str, func: str) -> float:
    """A finite number >= 0."""
    if not _is_real(value):
        raise TypeError(f"{func}: {name} must be a number >= 0, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{func}: {name} must be finite and >= 0, got {value!r}")
    return v


def check_count(value: Any, name: str, func: str, minimum: int) -> int:
    """An integer >= minimum."""
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


class torch_threads:
    """Context manager: ``torch.set_num_threads(n)`` inside, the previous count restored after
    (``n=None``: leave it)."""

    def __init__(self, n: int | None, func: str) -> None:
        self.n = None if n is None else check_count(n, "n_threads", func, 1)

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        if self.n is not None:
            torch.set_num_threads(self.before)


def default_nbeta(n: int) -> float:
    """n / log n, the inverse temperature nβ of Watanabe's WBIC (n = data-set size)."""
    return n / math.log(n)


# --- potentials ------------------------------------------------------------------------------


@dataclass
class Potential:
    """Mean loss L(w) of stacked parameter vectors, with its gradient, for all chains at once.

    ``value_and_grad(W, idx)``: W (C, D), idx (C, B) int64 rows of the data per chain or None
    (full data / no data); returns (loss (C,), grad (C, D)). ``full_loss(W)``: (C,) full-data
    loss, chunked over the data.
    """

    n_params: int
    n_data: int | None
    dtype: torch.dtype
    device: torch.device
    value_and_grad: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
    full_loss: Callable[[torch.Tensor], torch.Tensor]
    cleanup: Callable[[], None] = field(default=lambda: None)
    backend: str = "vmap"
    #: gradients by the hand-written backward of :func:`sequential_value_and_grad`
    manual_grad: bool = False


def value_and_grad_sum(
    vf: Callable, W: torch.Tensor, *args: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses (C,) of the vmapped ``vf`` and their gradients (C, D) w.r.t. the rows of W.

    Chains are independent (loss c depends on W[c] only), so the gradient of the summed loss
    is every chain's own gradient: one reverse pass over the vmapped forward, which is faster
    than ``vmap(grad(f))`` (no batching rules for the backward pass).
    """
    with torch.enable_grad():
        Wr = W.detach().requires_grad_(True)
        L = vf(Wr, *args)
        (g,) = torch.autograd.grad(L.sum(), Wr)
    return L.detach(), g


def _scalar_check(value: Any, what: str, func: str) -> None:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"{func}: {what} must return a scalar tensor (the mean loss), got {shape}"
        )


def make_functional_potential(
    loss_fn: Callable, w0: Any, func: str
) -> tuple[Potential, torch.Tensor]:
    """Potential of ``loss_fn(w) -> scalar`` (torch ops), and w0 as a flat tensor."""
    if not callable(loss_fn):
        raise TypeError(f"{func}: loss_fn must be callable (flat parameter tensor -> mean loss)")
    if isinstance(w0, torch.Tensor):
        w = w0.detach()
    else:
        try:
            w = torch.as_tensor(np.asarray(w0, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{func}: w0 must be a 1-D tensor or array of numbers") from exc
    if not torch.is_floating_point(w):
        w = w.to(torch.float64)
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(
            f"{func}: w0 must be a non-empty 1-D parameter vector, got shape {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()):
        bad = int(torch.nonzero(~torch.isfinite(w))[0, 0])
        raise ValueError(f"{func}: w0 has a non-finite value at index {bad}")
    with torch.no_grad():
        value = loss_fn(w.clone())
    _scalar_check(value, "loss_fn", func)

    def scalar(v: torch.Tensor) -> torch.Tensor:
        return loss_fn(v).reshape(())

    vf = vmap(scalar)

    def value_and_grad(
        W: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return value_and_grad_sum(vf, W)

    def full_loss(W: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vf(W)

    return Potential(w.numel(), None, w.dtype, w.device, value_and_grad, full_loss), w


LOSSES = ("cross_entropy", "mse")


def resolve_loss(loss: Any, func: str) -> Callable:
    """The per-batch mean loss ``f(output, target) -> scalar``."""
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return torch.nn.functional.cross_entropy
    if loss == "mse":
        def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            y = y.reshape(out.shape)
            return 0.5 * ((out - y) ** 2).reshape(out.shape[0], -1).sum(1).mean()
        return mse
    raise ValueError(
        f"{func}: loss must be 'cross_entropy', 'mse' or a callable (output, target) -> mean "
        f"loss, got {loss!r}"
    )


def as_tensors(data: Any, func: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) from a tuple, a torch Dataset or fractaldiff.train.Dataset (its train split)."""
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        x, y = data.x_train, data.y_train
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{func}: data (a torch Dataset) must have a length") from None
        if n == 0:
            raise ValueError(f"{func}: data is empty")
        items = [data[i] for i in range(n)]
        if not all(isinstance(it, (tuple, list)) and len(it) >= 2 for it in items[:1]):
            raise TypeError(f"{func}: data (a torch Dataset) must yield (input, target) pairs")
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
    else:
        raise TypeError(
            f"{func}: data must be a tuple (X, y) of tensors/arrays, a torch.utils.data.Dataset "
            f"or a fractaldiff.train.Dataset, got {type(data).__name__}"
        )
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{func}: data inputs and targets must have the same first dimension, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{func}: data is empty")
    return x, y


def make_module_potential(
    model: torch.nn.Module, data: Any, loss: Any, device: Any, func: str,
    chunk: int = 8192, backend: str = "auto",
) -> tuple[Potential, torch.Tensor]:
    """Potential of an nn.Module on a data set (eval mode: BatchNorm uses running statistics).

    ``backend="vmap"``: ``vmap`` of ``functional_call`` over the stacked chain parameters.
    ``"auto"``: the same, except for an ``nn.Sequential`` of Linear / BatchNorm1d /
    elementwise activations / Flatten / Dropout, which runs as a batched-matmul program
    (``baddbmm`` per layer over all chains; about twice as fast on the CPU), used only after
    it reproduced the vmapped loss on a few samples.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{func}: model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(
            f"{func}: model has no trainable parameters (requires_grad=True); there is nothing "
            "to sample"
        )
    loss_f = resolve_loss(loss, func)
    first = named[0][1]
    dev = torch.device(device) if device is not None else first.device
    dtype = first.dtype
    x, y = as_tensors(data, func)
    x = x.to(dev)
    if torch.is_floating_point(x):
        x = x.to(dtype)
    if torch.is_floating_point(y):
        y = y.to(dev, dtype)
    else:
        y = y.to(dev)
    names = [n for n, _ in named]
    shapes = [tuple(p.shape) for _, p in named]
    sizes = [p.numel() for _, p in named]
    trainable = set(names)
    frozen = {n: p.detach().to(dev) for n, p in model.named_parameters() if n not in trainable}
    buffers = {n: b.to(dev) for n, b in model.named_buffers()}
    was_training = model.training
    model.eval()

    def unflat(w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(names, torch.split(w, sizes), shapes)}

    def f(w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (unflat(w), frozen, buffers), (xb,))
        return loss_f(out, yb)

    w0 = torch.cat([p.detach().reshape(-1) for _, p in named]).to(dev)
    try:
        with torch.no_grad():
            value = f(w0, x[: min(len(x), 8)], y[: min(len(y), 8)])
    except Exception:
        model.train(was_training)
        raise
    try:
        _scalar_check(value, "loss", func)
    except ValueError:
        model.train(was_training)
        raise
    vb = vmap(f, in_dims=(0, 0, 0))
    vf = vmap(f, in_dims=(0, None, None))
    n = int(x.shape[0])
    if backend not in ("auto", "vmap"):
        model.train(was_training)
        raise ValueError(f"{func}: backend must be 'auto' or 'vmap', got {backend!r}")
    prog = None
    if backend == "auto":
        prog = sequential_program(model, names, sizes, loss, loss_f)
        if prog is not None:
            # use it only if it reproduces the vmapped functional_call on a few samples
            try:
                W2 = torch.stack([w0, w0 * 0.9])
                xs, ys = x[: min(n, 5)], y[: min(n, 5)]
                with torch.no_grad():
                    ref = vf(W2, xs, ys)
                    got = prog(W2, xs, ys, True)
                    ref_b = vb(W2, xs.expand(2, *xs.shape), ys.expand(2, *ys.shape))
                    got_b = prog(W2, xs.expand(2, *xs.shape), ys.expand(2, *ys.shape), False)
                if got_b.shape != ref_b.shape or not torch.allclose(got_b, ref_b, rtol=1e-4,
                                                                    atol=1e-6):
                    prog = None
                if got.shape != ref.shape or not torch.allclose(got, ref, rtol=1e-4, atol=1e-6):
                    prog = None
            except Exception:  # unsupported shapes etc.: the general path
                prog = None
    manual = None
    if prog is not None:
        program = prog
        vb = lambda W, xb, yb: program(W, xb, yb, False)  # noqa: E731
        vf = lambda W, xb, yb: program(W, xb, yb, True)  # noqa: E731
        manual = sequential_value_and_grad(model, names, sizes, loss)
        if manual is not None:
            # use the hand-written backward only if it reproduces autograd's gradients
            try:
                W2 = torch.stack([w0, w0 * 0.9 + 0.01])
                xs, ys = x[: min(n, 7)], y[: min(n, 7)]
                xb2, yb2 = xs.expand(2, *xs.shape), ys.expand(2, *ys.shape)
                for args, shared in (((xb2, yb2), False), ((xs, ys), True)):
                    ref_l, ref_g = value_and_grad_sum(vf if shared else vb, W2, *args)
                    got_l, got_g = manual(W2, *args, shared)
                    scale = float(ref_g.abs().max()) + 1e-12
                    if not (torch.allclose(got_l, ref_l, rtol=1e-4, atol=1e-6)
                            and torch.allclose(got_g, ref_g, rtol=1e-3, atol=1e-5 * scale)):
                        manual = None
                        break
            except Exception:  # anything unexpected: autograd
                manual = None

    def value_and_grad(
        W: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if manual is not None:
            return manual(W, x, y, True) if idx is None else manual(W, x[idx], y[idx], False)
        if idx is None:
            return value_and_grad_sum(vf, W, x, y)
        return value_and_grad_sum(vb, W, x[idx], y[idx])

    def full_loss(W: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(W.shape[0], dtype=torch.float64, device=W.device)
        with torch.no_grad():
            for a in range(0, n, chunk):
                b = min(n, a + chunk)
                total += vf(W, x[a:b], y[a:b]).to(torch.float64) * (b - a)
        return (total / n).to(W.dtype)

    pot = Potential(w0.numel(), n, dtype, dev, value_and_grad, full_loss,
                    cleanup=lambda: model.train(was_training),
                    backend="vmap" if prog is None else "bmm", manual_grad=manual is not None)
    return pot, w0


_ACTIVATIONS = {
    torch.nn.ReLU: torch.relu,
    torch.nn.Tanh: torch.tanh,
    torch.nn.Sigmoid: torch.sigmoid,
    torch.nn.GELU: None,  # module call (approximate= option)
    torch.nn.LeakyReLU: None,
    torch.nn.ELU: None,
    torch.nn.SiLU: None,
    torch.nn.Softplus: None,
    torch.nn.Identity: None,
    torch.nn.Dropout: "identity",  # eval mode
}


def _leaves(module: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]] | None:
    out: list[tuple[str, torch.nn.Module]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            sub = _leaves(child, full + ".")
            if sub is None:
                return None
            out.extend(sub)
        elif isinstance(child, (torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.Flatten)) or \
                type(child) in _ACTIVATIONS:
            out.append((full, child))
        else:
            return None
    return out


def sequential_program(model: torch.nn.Module, names: list[str], sizes: list[int],
                       loss: Any, loss_f: Callable) -> Callable | None:
    """A batched-matmul forward + loss for a plain ``nn.Sequential`` MLP, or None.

    ``prog(W, xb, yb) -> (C,)`` mean losses, W (C, D) stacked flat parameters in ``names``
    order, xb (C, B, F) per-chain batches or (B, F) shared. BatchNorm1d in eval mode (running
    statistics), dropout off, exactly as the vmapped ``functional_call``.
    """
    if not isinstance(model, torch.nn.Sequential):
        return None
    leaves = _leaves(model)
    if not leaves:
        return None
    index = {n: i for i, n in enumerate(names)}
    fixed = {n: p.detach() for n, p in model.named_parameters()}
    for _, m in leaves:
        if isinstance(m, torch.nn.BatchNorm1d) and not m.track_running_stats:
            return None
        if isinstance(m, torch.nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
            return None

    def get(parts: list[torch.Tensor], name: str, shape: tuple[int, ...], C: int) -> torch.Tensor:
        i = index.get(name)
        if i is None:
            return fixed[name].expand(C, *shape)
        return parts[i].view(C, *shape)

    def forward(W: torch.Tensor, xb: torch.Tensor, shared: bool) -> torch.Tensor:
        C = W.shape[0]
        parts = list(torch.split(W, sizes, dim=1))
        h = xb.expand(C, *xb.shape) if shared else xb
        for name, m in leaves:
            if isinstance(m, torch.nn.Linear):
                w = get(parts, name + ".weight", tuple(m.weight.shape), C)
                if h.dim() != 3:
                    raise ValueError("Linear on a non-matrix input")
                if m.bias is not None:
                    b = get(parts, name + ".bias", (1, m.out_features), C)
                    h = torch.baddbmm(b, h, w.transpose(1, 2))
                else:
                    h = torch.bmm(h, w.transpose(1, 2))
            elif isinstance(m, torch.nn.BatchNorm1d):
                if h.dim() != 3:
                    raise ValueError("BatchNorm1d on a non-matrix input")
                inv = torch.rsqrt(m.running_var + m.eps)
                if m.affine:  # folded: h * (g / sd) + (b - mean g / sd), one pass over h
                    g = get(parts, name + ".weight", (1, m.num_features), C)
                    b = get(parts, name + ".bias", (1, m.num_features), C)
                    scale = g * inv
                    h = torch.addcmul(b - m.running_mean * scale, h, scale)
                else:
                    h = (h - m.running_mean) * inv
            elif isinstance(m, torch.nn.Flatten):
                h = h.reshape(C, h.shape[1], -1)
            else:
                fn = _ACTIVATIONS[type(m)]
                if fn == "identity":
                    continue
                h = fn(h) if fn is not None else m(h)
        return h

    if loss == "cross_entropy":
        def prog(W: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, shared: bool) -> torch.Tensor:
            out = forward(W, xb, shared)
            if out.dim() != 3 or yb.dtype not in (torch.int64, torch.int32):
                raise ValueError("unsupported")
            y = yb.expand(out.shape[0], *yb.shape) if shared else yb
            picked = out.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
            return (torch.logsumexp(out, -1) - picked).mean(1)
    elif loss == "mse":
        def prog(W: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, shared: bool) -> torch.Tensor:
            out = forward(W, xb, shared)
            y = (yb.expand(out.shape[0], *yb.shape) if shared else yb).reshape(out.shape)
            return 0.5 * ((out - y) ** 2).reshape(out.shape[0], out.shape[1], -1).sum(-1).mean(1)
    else:
        def prog(W: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, shared: bool) -> torch.Tensor:
            out = forward(W, xb, shared)
            return vmap(loss_f, in_dims=(0, None if shared else 0))(out, yb)
    return prog


#: activations whose derivative the hand-written backward below knows (Dropout: eval mode)
_MANUAL_ACTIVATIONS = {torch.nn.ReLU: "relu", torch.nn.Tanh: "tanh", torch.nn.Sigmoid: "sigmoid",
                       torch.nn.Identity: None, torch.nn.Dropout: None}


def sequential_value_and_grad(model: torch.nn.Module, names: list[str], sizes: list[int],
                              loss: Any) -> Callable | None:
    """Losses and gradients of a plain ``nn.Sequential`` MLP by a hand-written backward pass.

    ``vg(W, xb, yb, shared) -> (L (C,), G (C, D))`` for the same networks as
    :func:`sequential_program` with ReLU / Tanh / Sigmoid activations and the cross-entropy or
    mse loss; None otherwise. Why by hand: the layers' gradients are a few batched matmuls, and
    writing each straight into its slice of one (C, D) buffer saves autograd's bookkeeping,
    the per-parameter gradient tensors and their concatenation (a fifth of an SGLD step on a
    26k-weight MLP). The caller checks it against autograd before use.
    """
    if loss not in ("cross_entropy", "mse") or not isinstance(model, torch.nn.Sequential):
        return None
    leaves = _leaves(model)
    if not leaves:
        return None
    offsets: dict[str, tuple[int, int]] = {}
    off = 0
    for n_, size in zip(names, sizes):
        offsets[n_] = (off, size)
        off += size
    fixed = {n_: p.detach() for n_, p in model.named_parameters()}
    covered = set()
    for name, m in leaves:
        if isinstance(m, torch.nn.BatchNorm1d):
            if not m.track_running_stats:
                return None
        elif isinstance(m, torch.nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                return None
        elif not isinstance(m, torch.nn.Linear) and type(m) not in _MANUAL_ACTIVATIONS:
            return None
        covered.update(f"{name}.{p}" for p, _ in m.named_parameters())
    if not set(names) <= covered:
        return None

    def param(W: torch.Tensor, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name in offsets:
            a, n_ = offsets[name]
            return W[:, a : a + n_].view(W.shape[0], *shape)
        return fixed[name].to(W.dtype).expand(W.shape[0], *shape)

    def grad_slot(G: torch.Tensor, name: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        if name not in offsets:
            return None
        a, n_ = offsets[name]
        return G[:, a : a + n_].view(G.shape[0], *shape)

    def vg(W: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
           shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        C = W.shape[0]
        G = torch.empty_like(W)
        h = xb.expand(C, *xb.shape) if shared else xb
        tape: list[tuple] = []
        with torch.no_grad():
            for name, m in leaves:
                if isinstance(m, torch.nn.Linear):
                    w = param(W, name + ".weight", tuple(m.weight.shape))
                    tape.append(("linear", name, m, h, w))
                    if m.bias is not None:
                        b = param(W, name + ".bias", (1, m.out_features))
                        h = torch.baddbmm(b, h, w.transpose(1, 2))
                    else:
                        h = torch.bmm(h, w.transpose(1, 2))
                elif isinstance(m, torch.nn.BatchNorm1d):
                    inv = torch.rsqrt(m.running_var + m.eps).to(W.dtype)
                    xhat = (h - m.running_mean.to(W.dtype)) * inv
                    if m.affine:
                        g = param(W, name + ".weight", (1, m.num_features))
                        b = param(W, name + ".bias", (1, m.num_features))
                        tape.append(("bn", name, m, xhat, g * inv))
                        h = torch.addcmul(b, xhat, g)
                    else:
                        tape.append(("bn", name, m, None, inv))
                        h = xhat
                elif isinstance(m, torch.nn.Flatten):
                    tape.append(("flatten", name, m, h.shape, None))
                    h = h.reshape(C, h.shape[1], -1)
                else:
                    kind = _MANUAL_ACTIVATIONS[type(m)]
                    if kind == "relu":
                        h = torch.relu(h)
                    elif kind == "tanh":
                        h = torch.tanh(h)
                    elif kind == "sigmoid":
                        h = torch.sigmoid(h)
                    else:
                        continue
                    tape.append((kind, name, m, h, None))
            B = h.shape[1]
            if loss == "cross_entropy":
                y = (yb.expand(C, *yb.shape) if shared else yb).long()
                lse = torch.logsumexp(h, -1)
                L = (lse - h.gather(-1, y.unsqueeze(-1)).squeeze(-1)).mean(1)
                gz = torch.exp(h - lse.unsqueeze(-1))
                gz.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(lse.unsqueeze(-1), -1.0))
                gz.mul_(1.0 / B)
            else:
                y = (yb.expand(C, *yb.shape) if shared else yb).reshape(h.shape)
                diff = h - y
                L = 0.5 * (diff * diff).reshape(C, B, -1).sum(-1).mean(1)
                gz = diff.mul_(1.0 / B)
            # below the lowest layer with a trainable parameter no gradient is needed
            lowest = min((i for i, e in enumerate(tape) if e[0] in ("linear", "bn")
                          and (e[1] + ".weight" in offsets or e[1] + ".bias" in offsets)),
                         default=len(tape))
            for i in range(len(tape) - 1, lowest - 1, -1):
                kind, name, m, a, b = tape[i]
                if kind == "linear":
                    slot = grad_slot(G, name + ".weight", tuple(m.weight.shape))
                    if slot is not None:
                        torch.bmm(gz.transpose(1, 2), a, out=slot)
                    if m.bias is not None:
                        bslot = grad_slot(G, name + ".bias", (m.out_features,))
                        if bslot is not None:
                            torch.sum(gz, dim=1, out=bslot)
                    if i > lowest:
                        gz = torch.bmm(gz, b)
                elif kind == "bn":
                    if a is not None:
                        wslot = grad_slot(G, name + ".weight", (m.num_features,))
                        if wslot is not None:
                            torch.sum(gz * a, dim=1, out=wslot)
                        bslot = grad_slot(G, name + ".bias", (m.num_features,))
                        if bslot is not None:
                            torch.sum(gz, dim=1, out=bslot)
                    if i > lowest:
                        gz = gz * b
                elif kind == "flatten":
                    gz = gz.reshape(a)
                elif kind == "relu":  # torch's own ReLU backward: 20x masked_fill on a CPU
                    gz = torch.ops.aten.threshold_backward(gz, a, 0.0)
                elif kind == "tanh":
                    gz = gz * (1.0 - a * a)
                elif kind == "sigmoid":
                    gz = gz * (a * (1.0 - a))
        return L, G

    return vg


# --- the sampler -----------------------------------------------------------------------------


#: Use the compiled fused update on the CPU (tests switch it off to compare with the tensor path).
_FUSED_CPU_STEP = True


class _Batches:
    """Per-chain mini-batch indices without replacement within an epoch (C, B) per step."""

    def __init__(self, n: int, batch: int, chains: int, gen: torch.Generator,
                 device: torch.device) -> None:
        self.n, self.b, self.c, self.gen, self.device = n, batch, chains, gen, device
        self.pos = n  # force a fresh permutation

    def next(self) -> torch.Tensor:
        if self.pos + self.b > self.n:
            keys = torch.rand(self.c, self.n, generator=self.gen)
            self.perm = torch.argsort(keys, dim=1).to(self.device)
            self.pos = 0
        idx = self.perm[:, self.pos : self.pos + self.b]
        self.pos += self.b
        return idx


@dataclass
class Run:
    """Raw output of :func:`run_sgld` (numpy, float64)."""

    trace: np.ndarray  # (C, n_steps) mini-batch loss at w_t before the step
    virial: np.ndarray  # (C, n_steps) (w_t - w*) . grad U(w_t) / D, -> 1 at equilibrium
    acceptance: np.ndarray  # (C,) mean MALA acceptance probability (nan if not measured)
    n_accept_checks: int
    final: torch.Tensor  # (C, D) last parameters
    seconds: float


def run_sgld(
    pot: Potential,
    centers: torch.Tensor,
    *,
    nbeta: torch.Tensor,
    gamma: torch.Tensor,
    eps: torch.Tensor,
    n_steps: int,
    batch_size: int | None,
    seed: int | None,
    mala_every: int,
    progress: bool,
    desc: str = "SGLD",
) -> Run:
    """Run C localized SGLD chains as one batched computation.

    w_{t+1} = w_t - (eps/2) (nbeta grad L_B(w_t) + gamma (w_t - w*)) + sqrt(eps) N(0, I), per
    chain c with its own centre w*_c = centers[c], nbeta_c, gamma_c, eps_c.
    """
    import time

    C, D = centers.shape
    dev, dt = centers.device, centers.dtype
    base_seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator(device="cpu")  # batches (and the noise on the CPU)
    gen.manual_seed(base_seed)
    if dev.type == "cpu":
        noise_gen = gen
    else:  # noise drawn where the chains live
        noise_gen = torch.Generator(device=dev)
        noise_gen.manual_seed(base_seed + 1)
    nb = nbeta.to(dev, dt).reshape(C, 1)
    gm = gamma.to(dev, dt).reshape(C, 1)
    ep = eps.to(dev, dt).reshape(C, 1)
    half_ep = 0.5 * ep
    sq_ep = ep.sqrt()
    batches = None
    if batch_size is not None and pot.n_data is not None and batch_size < pot.n_data:
        batches = _Batches(pot.n_data, batch_size, C, gen, dev)
    trace = torch.empty(C, n_steps, dtype=torch.float64)
    acc_sum = torch.zeros(C, dtype=torch.float64)
    virial = torch.empty(C, n_steps, dtype=torch.float64)
    n_checks = 0
    W = centers.clone()
    # On the CPU one compiled pass does the update (drift, virial, Gaussian draws, new w; see
    # sgld_kernels.hpp), which as separate tensor operations and torch.randn took a quarter of
    # a step. Elsewhere (a GPU) the tensor operations below.
    fused = (_FUSED_CPU_STEP and dev.type == "cpu" and dt in (torch.float32, torch.float64)
             and W.is_contiguous() and centers.is_contiguous())
    if fused:
        from .. import _core

        W_next = torch.empty_like(W)
        vir = np.zeros(C)
        nb_np = nb[:, 0].to(torch.float64).numpy().copy()
        gm_np = gm[:, 0].to(torch.float64).numpy().copy()
        ep_np = ep[:, 0].to(torch.float64).numpy().copy()
        centers_np = centers.detach().numpy()
        noise_seed = (base_seed * 0x2545F4914F6CDD1D + 1) % 2**64
        n_threads = torch.get_num_threads()
    else:
        noise = torch.empty(C, D, dtype=dt, device=dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=desc, leave=False)
    start = time.perf_counter()
    try:
        for t in range(n_steps):
            idx = batches.next() if batches is not None else None
            L, G = pot.value_and_grad(W, idx)
            trace[:, t] = L.to("cpu", torch.float64)
            if fused:
                G = G.contiguous()
                status = _core.sgld_step(W.numpy(), centers_np, G.numpy(), W_next.numpy(),
                                         nb_np, gm_np, ep_np, noise_seed, t, vir, n_threads)
                if status != 0:
                    raise MemoryError("SGLD: the update's workspace could not be allocated")
                drift, W_new = G, W_next  # nβ ∇L_B + γ (w - w*), written over G
                virial[:, t] = torch.from_numpy(vir / D)
            else:
                delta = W - centers
                drift = G.mul_(nb).addcmul_(gm, delta)  # nβ ∇L_B + γ (w - w*)
                virial[:, t] = torch.linalg.vecdot(delta, drift).to("cpu", torch.float64) / D
                torch.randn(C, D, generator=noise_gen, dtype=dt, device=dev, out=noise)
                W_new = torch.addcmul(W, half_ep, drift, value=-1.0)
                W_new.addcmul_(sq_ep, noise)
            if mala_every and t % mala_every == mala_every - 1:
                L2, G2 = pot.value_and_grad(W_new, idx)
                delta = W - centers
                delta2 = W_new - centers
                drift2 = nb * G2 + gm * delta2
                U = nb[:, 0] * L + 0.5 * gm[:, 0] * (delta * delta).sum(1)
                U2 = nb[:, 0] * L2 + 0.5 * gm[:, 0] * (delta2 * delta2).sum(1)
                fwd = ((W_new - W + half_ep * drift) ** 2).sum(1) / (2 * ep[:, 0])
                bwd = ((W - W_new + half_ep * drift2) ** 2).sum(1) / (2 * ep[:, 0])
                log_a = (U - U2 + fwd - bwd).to(torch.float64).cpu()
                a = torch.exp(torch.clamp(log_a, max=0.0))
                acc_sum += torch.nan_to_num(a, nan=0.0)
                n_checks += 1
            if fused:  # the old parameters' buffer takes the next step's output
                W, W_next = W_new, W
            else:
                W = W_new
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    acc = (acc_sum / n_checks).numpy() if n_checks else np.full(C, np.nan)
    return Run(trace.numpy(), virial.numpy(), acc, n_checks, W.detach(), seconds)


# --- diagnostics -----------------------------------------------------------------------------


def batch_means_se(x: np.ndarray, n_batches: int = 20) -> float:
    """Standard error of the mean of a correlated series by non-overlapping batch means."""
    m = len(x)
    k = min(n_batches, m)
    if k < 2:
        return float("nan")
    size = m // k
    means = x[: size * k].reshape(k, size).mean(1)
    return float(means.std(ddof=1) / math.sqrt(k))


@dataclass
class Summary:
    """lambda-hat for one group of chains that share a centre (one estimate)."""

    mean: float
    stderr: float
    per_chain: np.ndarray
    per_chain_stderr: np.ndarray
    acceptance: np.ndarray
    diverged: np.ndarray  # bool per chain
    flags: dict[str, bool]
    warnings: list[str]
    first_half: float
    second_half: float
    chi2_pvalue: float
    virial: np.ndarray  # per chain, mean over the kept draws


def summarize(
    trace: np.ndarray,
    init_loss: float,
    nbeta: float,
    n_burnin: int,
    acceptance: np.ndarray,
    n_params: int,
    *,
    virial: np.ndarray | None = None,
    acceptance_floor: float = 0.5,
    virial_tolerance: float = 0.1,
) -> Summary:
    """lambda-hat, between-chain stderr and diagnostics of one group of chains.

    Rules (documented in docs/llc.md):

    * diverged chain: a non-finite loss, or a draw with nbeta (L - L*) > 100 D + 1000; such
      chains are left out of the mean;
    * ``negative``: lambda-hat < 0, or ``below_init``: a chain whose mean trace is below the
      initial loss (w* is not a local minimum);
    * ``chains_disagree``: chi-square test of the per-chain values against their batch-means
      errors, p < 1e-3 (and the spread exceeds 5 % of |lambda-hat|);
    * ``not_converged``: first and second halves of the kept draws differ by > 3 standard
      errors and by > 5 % of |lambda-hat| (drift);
    * ``low_acceptance``: mean MALA acceptance below ``acceptance_floor``;
    * ``not_equilibrated``: the virial ratio v = E[(w - w*) . ∇U(w)] / D, U = nβ L + (γ/2)
      ||w - w*||², which is exactly 1 under the localized posterior (integration by parts),
      differs from 1 by more than ``virial_tolerance`` and 3 standard errors: v < 1 means the
      chains have not spread over the posterior yet (step too small, too few draws, weak
      localization), v > 1 the discretization inflation (for a quadratic v = 1/(1 - εκ/4),
      the same factor that inflates λ̂).
    """
    C, T = trace.shape
    draws = trace[:, n_burnin:]
    finite = np.isfinite(draws).all(1)
    rel = nbeta * (draws - init_loss)
    with np.errstate(invalid="ignore", over="ignore"):
        worst = np.nanmax(np.where(np.isfinite(rel), rel, np.inf), axis=1)
        exploding = worst > 100.0 * n_params + 1000.0
    diverged = ~finite | exploding
    with np.errstate(invalid="ignore", over="ignore"):
        per_chain = nbeta * (draws.mean(1) - init_loss)
    pc_se = np.array([nbeta * batch_means_se(r) if ok else np.nan
                      for r, ok in zip(draws, ~diverged)])
    ok = ~diverged
    msgs: list[str] = []
    flags = dict(diverged=bool(diverged.any()), negative=False, below_init=False,
                 chains_disagree=False, not_converged=False, low_acceptance=False,
                 not_equilibrated=False)
    vir = np.full(C, np.nan) if virial is None else virial[:, n_burnin:].mean(1)
    if diverged.any():
        msgs.append(
            f"{int(diverged.sum())} of {C} chains diverged (NaN/Inf or exploding loss): step "
            "size too large? They are left out of the estimate"
        )
    if ok.sum() == 0:
        return Summary(float("nan"), float("nan"), per_chain, pc_se, acceptance, diverged,
                       flags, msgs, float("nan"), float("nan"), float("nan"), vir)
    vals = per_chain[ok]
    mean = float(vals.mean())
    k = len(vals)
    if k >= 2:
        stderr = float(vals.std(ddof=1) / math.sqrt(k))
    else:
        stderr = float(pc_se[ok][0])
    if mean < 0:
        flags["negative"] = True
        msgs.append(
            f"lambda-hat = {mean:.4g} < 0: the loss went down while sampling, so w* is not a "
            "local minimum (train longer, or the step size / localization is off)"
        )
    elif (vals < 0).any():
        flags["below_init"] = True
        msgs.append(
            f"{int((vals < 0).sum())} of {k} chains sit below the initial loss on average: w* is "
            "not a local minimum"
        )
    # chains disagree beyond their own noise
    pval = float("nan")
    se_ok = pc_se[ok]
    if k >= 2 and np.all(np.isfinite(se_ok)) and np.all(se_ok > 0):
        from scipy import stats

        wts = 1.0 / se_ok**2
        pooled = float((wts * vals).sum() / wts.sum())
        chi2 = float((wts * (vals - pooled) ** 2).sum())
        pval = float(stats.chi2.sf(chi2, k - 1))
        if pval < 1e-3 and vals.std(ddof=1) > 0.05 * max(abs(mean), 1e-12):
            flags["chains_disagree"] = True
            msgs.append(
                f"chains disagree beyond their noise (chi-square p = {pval:.2g}; per-chain "
                f"values {np.round(vals, 3).tolist()}): they explore different regions, run "
                "more draws or use a stronger localization"
            )
    # convergence: first vs second half of the kept draws
    m = draws.shape[1]
    h = m // 2
    first = second = float("nan")
    if h >= 2:
        a = rel[ok, :h].mean(1)
        b = rel[ok, h: 2 * h].mean(1)
        first, second = float(a.mean()), float(b.mean())
        d = b - a
        if k >= 2:
            d_se = float(d.std(ddof=1) / math.sqrt(k))
        else:
            d_se = math.hypot(batch_means_se(rel[ok][0, :h]), batch_means_se(rel[ok][0, h:2 * h]))
        diff = second - first
        if abs(diff) > 3 * d_se and abs(diff) > 0.05 * max(abs(mean), 1e-12):
            flags["not_converged"] = True
            msgs.append(
                f"not converged: lambda-hat from the first half of the draws is {first:.4g}, "
                f"from the second half {second:.4g} (difference {diff:.3g} ± {d_se:.2g}); use "
                "more burn-in / draws or a larger step size"
            )
    acc_ok = acceptance[ok]
    if np.isfinite(acc_ok).any() and float(np.nanmean(acc_ok)) < acceptance_floor:
        flags["low_acceptance"] = True
        msgs.append(
            f"mean MALA acceptance {float(np.nanmean(acc_ok)):.2f} < {acceptance_floor}: the "
            "step size is too large for this posterior (discretization bias); try "
            "calibrate_llc or a smaller step_size"
        )
    v_ok = vir[ok]
    if np.isfinite(v_ok).all() and virial is not None:
        v_mean = float(v_ok.mean())
        if k >= 2:
            v_se = float(v_ok.std(ddof=1) / math.sqrt(k))
        else:
            v_se = batch_means_se(virial[ok][0, n_burnin:])
        if abs(v_mean - 1.0) > max(virial_tolerance, 3 * v_se):
            flags["not_equilibrated"] = True
            what = ("the chains have not spread over the local posterior yet (larger step, "
                    "more burn-in or a stronger localization)") if v_mean < 1 else \
                ("the step size inflates the posterior (discretization bias; smaller step)")
            msgs.append(f"virial ratio E[(w - w*)·∇U]/D = {v_mean:.3f}, not 1: {what}")
    return Summary(mean, stderr, per_chain, pc_se, acceptance, diverged, flags, msgs,
                   first, second, pval, vir)


def emit(msgs: list[str], prefix: str = "", stacklevel: int = 3) -> None:
    """Warn with :class:`LLCWarning`, one warning per message."""
    for m in msgs:
        warnings.warn(prefix + m, LLCWarning, stacklevel=stacklevel)
