"""Function-space clusters of trained networks (solutions grouped by what they compute)."""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ClusterResult", "ClusterWarning", "cluster_solutions", "pairwise_function_distance",
           "stack_members"]


class ClusterWarning(UserWarning):
    """A cluster statistic that cannot be estimated as asked (e.g. one member: no spread)."""


@dataclass
class ClusterResult:
    """What :func:`cluster_solutions` returns.

    Clusters are numbered by size, largest first (cluster 0 is the paper's C1).

    Attributes
    ----------
    labels : numpy.ndarray of int64, shape (N,)
        Cluster of each member, by the probe-set map (:meth:`assign`: nearest representative).
    sizes : numpy.ndarray of int64, shape (K,)
    masses : numpy.ndarray of float64, shape (K,)
        ``sizes / N``: the raw SGD frequencies.
    representatives : numpy.ndarray of int64, shape (K,)
        Member index of each cluster's medoid (the member with the smallest summed distance to
        the rest of its agglomerative cluster).
    representative_signatures : numpy.ndarray
        Probe-set signatures of the representatives (labels ``(K, P)`` for
        ``metric="disagreement"``, outputs ``(K, P * n_out)`` for ``"euclidean"``).
    ground_distance : numpy.ndarray of float64, shape (K, K)
        Function distance between representatives (the Wasserstein ground metric of
        :func:`compare_posterior`).
    metric : str
    threshold : float or None
    n_clusters_requested : int or None
    mean_loss, mean_accuracy : numpy.ndarray of float64, shape (K,)
        Mean final training loss / accuracy of the members (NaN when not known).
    llc, llc_stderr : numpy.ndarray of float64, shape (K,)
        Per-cluster λ̂: the mean over the members where it was estimated, and its standard
        error (between-member spread / sqrt(k); with a single member its chain stderr, and a
        :class:`ClusterWarning`). NaN when not estimated.
    member_llc, member_llc_stderr : numpy.ndarray of float64, shape (N,)
        λ̂ of each member (NaN where not estimated).
    signatures : numpy.ndarray
        Every member's probe signature (kept for re-assignment and bootstraps).
    merged : int
        Members of clusters smaller than the minimum size, assigned to their nearest cluster.
    notes : list of str
        Warnings raised while clustering.
    """

    labels: np.ndarray
    sizes: np.ndarray
    masses: np.ndarray
    representatives: np.ndarray
    representative_signatures: np.ndarray
    ground_distance: np.ndarray
    metric: str
    threshold: float | None
    n_clusters_requested: int | None
    mean_loss: np.ndarray
    mean_accuracy: np.ndarray
    llc: np.ndarray
    llc_stderr: np.ndarray
    member_llc: np.ndarray
    member_llc_stderr: np.ndarray
    signatures: np.ndarray
    merged: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_clusters(self) -> int:
        """K."""
        return int(len(self.sizes))

    def assign(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map probe signatures to clusters: the nearest representative.

        Parameters
        ----------
        signatures : numpy.ndarray
            As :func:`probe_signatures` makes them for this metric, ``(M, ...)``.

        Returns
        -------
        labels : numpy.ndarray of int64, shape (M,)
        distance : numpy.ndarray of float64, shape (M,)
            Distance to that representative (compare with ``threshold`` to spot functions
            unlike every cluster).
        """
        d = pairwise_function_distance(signatures, self.representative_signatures, self.metric)
        lab = d.argmin(1)
        return lab.astype(np.int64), d[np.arange(len(lab)), lab]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-member signatures)."""
        return {
            "n_clusters": self.n_clusters, "metric": self.metric,
            "threshold": self.threshold, "sizes": self.sizes.tolist(),
            "masses": self.masses.tolist(), "representatives": self.representatives.tolist(),
            "mean_loss": _nan_list(self.mean_loss), "mean_accuracy": _nan_list(self.mean_accuracy),
            "llc": _nan_list(self.llc), "llc_stderr": _nan_list(self.llc_stderr),
            "ground_distance": self.ground_distance.tolist(), "merged": self.merged,
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """Plain-text table, one row per cluster."""
        rows = [f"{'cluster':>7} {'size':>5} {'mass':>6} {'rep':>5} {'loss':>8} {'acc':>6} "
                f"{'llc':>8} {'± se':>7}"]
        for k in range(self.n_clusters):
            rows.append(f"{'C' + str(k + 1):>7} {self.sizes[k]:>5d} {self.masses[k]:>6.3f} "
                        f"{self.representatives[k]:>5d} {self.mean_loss[k]:>8.4f} "
                        f"{self.mean_accuracy[k]:>6.3f} {self.llc[k]:>8.3f} "
                        f"{self.llc_stderr[k]:>7.3f}")
        return "\n".join(rows)


def _nan_list(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


# --- members and signatures ------------------------------------------------------------------


def stack_members(models_or_params: Any) -> tuple[nn.Module, dict, dict]:
    """(template, stacked params, stacked buffers) from an ensemble result, a list of modules
    or a tuple ``(template, params[, buffers])``."""
    from torch.func import stack_module_state

    obj = models_or_params
    if hasattr(obj, "params") and hasattr(obj, "model") and hasattr(obj, "buffers"):
        return obj.model, obj.params, obj.buffers
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(m, nn.Module) for m in obj):
        from ..train.ensemble import check_same_architecture

        if len(obj) < 2:
            raise ValueError(f"need at least 2 solutions to cluster, got {len(obj)}")
        check_same_architecture(list(obj))
        p, b = stack_module_state(list(obj))
        p = {k: v.detach() for k, v in p.items()}
        import copy

        return copy.deepcopy(obj[0]), p, {k: v.detach() for k, v in b.items()}
    if isinstance(obj, tuple) and len(obj) in (2, 3) and isinstance(obj[0], nn.Module):
        template, p = obj[0], dict(obj[1])
        b = dict(obj[2]) if len(obj) == 3 else {}
        names = [n for n, _ in template.named_parameters()]
        if sorted(p) != sorted(names):
            raise ValueError(f"params names {sorted(p)} do not match the template's {names}")
        ns = {int(v.shape[0]) for v in list(p.values()) + list(b.values())}
        if len(ns) != 1:
            raise ValueError(f"stacked params/buffers disagree on the number of members: {ns}")
        for n_, q in template.named_parameters():
            if tuple(p[n_].shape[1:]) != tuple(q.shape):
                raise ValueError(f"ensemble members differ in architecture: params[{n_!r}] has "
                                 f"member shape {tuple(p[n_].shape[1:])}, the template "
                                 f"{tuple(q.shape)}")
        return template, p, b
    raise TypeError(
        "models_or_params must be a train_ensemble result, a list of nn.Modules of one "
        "architecture, a tuple (template, stacked_params[, stacked_buffers]) or an array of "
        f"precomputed probe outputs (N, P[, n_out]); got {type(obj).__name__}")


def _in_features(template: nn.Module) -> int | None:
    for m in template.modules():
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None
    return None


def member_outputs(template: nn.Module, params: dict, buffers: dict, probe_inputs: Any,
                   *, chunk: int = 4096) -> np.ndarray:
    """Outputs of every stacked member on the probe set, ``(N, P, n_out)`` float32 (eval mode)."""
    from ..train.ensemble import stacked_forward

    x = probe_inputs.detach().cpu().numpy() if isinstance(probe_inputs, torch.Tensor) \
        else np.asarray(probe_inputs, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"probe_inputs must be (P, features...) with P >= 1, got shape "
                         f"{x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("probe_inputs contains NaN or Inf")
    want = _in_features(template)
    if want is not None and x.ndim == 2 and x.shape[1] != want:
        raise ValueError(f"probe_inputs has {x.shape[1]} features per row but the models take "
                         f"{want} inputs")
    try:
        out = stacked_forward(template, params, buffers, x, chunk=chunk)
    except RuntimeError as exc:
        raise ValueError(f"the models could not be evaluated on probe_inputs of shape "
                         f"{x.shape} (wrong input dimension?): {exc}") from None
    out = out.detach().cpu().float().numpy()
    return out.reshape(out.shape[0], out.shape[1], -1)


def probe_signatures(outputs: np.ndarray, metric: str) -> np.ndarray:
    """Signatures of functions from their probe outputs ``(N, P, n_out)``.

    ``"disagreement"``: predicted labels (argmax over outputs; a single output is thresholded
    at 0) ``(N, P)`` int; ``"euclidean"``: the outputs flattened ``(N, P * n_out)`` float64.
    """
    outputs = np.asarray(outputs)
    if outputs.ndim == 2:
        outputs = outputs[:, :, None]
    if metric == "disagreement":
        if outputs.shape[2] == 1:
            return (outputs[:, :, 0] > 0).astype(np.int64)
        return outputs.argmax(2).astype(np.int64)
    if metric == "euclidean":
        return outputs.reshape(outputs.shape[0], -1).astype(np.float64)
    raise ValueError(f"metric must be 'disagreement' or 'euclidean', got {metric!r}")


def pairwise_function_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances between signatures: ``(len(a), len(b))`` float64.

    ``"disagreement"``: fraction of probe points where the predicted labels differ (in [0, 1]);
    ``"euclidean"``: root-mean-square difference of the outputs over the probe entries.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"signatures of shapes {a.shape} and {b.shape} do not match")
    if metric == "disagreement":
        p = a.shape[1]
        classes = np.union1d(np.unique(a), np.unique(b))
        same = np.zeros((len(a), len(b)))
        for c in classes:
            same += (a == c).astype(np.float32) @ (b == c).astype(np.float32).T
        return 1.0 - same / p
    if metric == "euclidean":
        a2 = (a * a).sum(1)[:, None]
        b2 = (b * b).sum(1)[None, :]
        d2 = np.maximum(a2 + b2 - 2.0 * a @ b.T, 0.0)
        return np.sqrt(d2 / a.shape[1])
    raise ValueError(f"metric must be 'disagreement' or 'euclidean', got {metric!r}")


# --- clustering ------------------------------------------------------------------------------


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or \
            not math.isfinite(float(threshold)) or float(threshold) < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return float(threshold)


def cluster_solutions(
    models_or_params: Any,
    probe_inputs: Any = None,
    *,
    metric: str = "disagreement",
    threshold: float | None = 0.05,
    n_clusters: int | None = None,
    linkage: str = "average",
    min_cluster_fraction: float = 0.01,
    data: Any = None,
    loss: Any = "cross_entropy",
    llc: Any = "auto",
    llc_members: int = 4,
    llc_kwargs: dict | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ClusterResult:
    """Group trained networks by the function they compute on a fixed probe set.

    Metric. Each solution is represented by its predictions on ``probe_inputs`` (Mingard et
    al.'s "function" of a network). Predictions are invariant to every weight-space symmetry
    (hidden-unit permutations, ReLU rescalings, BatchNorm scale), so two members that differ
    only by a symmetry are the same point. The default ``"disagreement"`` distance is the
    fraction of probe points where the predicted classes differ (a Hamming distance on label
    vectors, in [0, 1]: interpretable, and insensitive to the logit scale, which keeps growing
    under cross-entropy on separable data). ``"euclidean"`` (root-mean-square output
    difference) is for regression.

    Clustering. Agglomerative, ``linkage="average"`` (UPGMA) on that distance, cut at
    ``threshold`` (default 0.05: two groups merge while their members disagree on fewer than
    5 % of the probe points on average), or into ``n_clusters`` clusters. Average linkage
    avoids single linkage's chaining through intermediate functions and complete linkage's
    sensitivity to one outlier. Clusters with fewer than ``min_cluster_fraction * N`` members
    (default 1 %) are not kept as clusters of their own. Each kept cluster is represented by
    its medoid, and the final labels are the **probe-set map**: every function goes to the
    nearest representative (the same map :func:`compare_posterior` applies to posterior
    samples, so SGD and Bayes masses are counted the same way).

    Parameters
    ----------
    models_or_params : EnsembleResult, list of nn.Module, tuple or array
        A :func:`fractaldiff.train.train_ensemble` result; a list of modules of one
        architecture; ``(template_module, stacked_params[, stacked_buffers])``; or
        precomputed probe outputs ``(N, P[, n_out])`` (then ``probe_inputs`` is not needed and
        no λ̂ is estimated).
    probe_inputs : array_like, shape (P, features...)
        Fixed inputs on which functions are compared (e.g. a grid over and around the data).
    metric : {"disagreement", "euclidean"}
    threshold : float, optional
        Cut height of the dendrogram, in the metric's units. Ignored when ``n_clusters`` is
        given.
    n_clusters : int, optional
        Cut into this many clusters instead (before merging small ones).
    linkage : {"average", "complete", "single", "weighted"}
    min_cluster_fraction : float, default 0.01
    data : Dataset or tuple, optional
        Training data for the per-member loss/accuracy (when the input is not an ensemble
        result, which carries them) and for λ̂. Default: the ensemble's own data.
    loss : {"cross_entropy", "mse"} or callable
        For λ̂ (passed to :func:`fractaldiff.bayes.estimate_llc`).
    llc : "auto", None or array_like of shape (N,)
        ``"auto"``: :func:`estimate_llc` at up to ``llc_members`` members per cluster (the
        medoid first, then members drawn with ``seed``); an array: λ̂ per member (NaN where
        unknown); None: no λ̂.
    llc_members : int, default 4
        Members per cluster at which λ̂ is estimated (``"all"`` -> every member).
    llc_kwargs : dict, optional
        Passed to :func:`estimate_llc` (e.g. ``n_chains``, ``n_draws``, ``step_size``).
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    ClusterResult

    Raises
    ------
    ValueError
        Fewer than 2 solutions, members of differing architectures, probe inputs of the wrong
        dimension, a bad threshold or number of clusters.

    Warns
    -----
    ClusterWarning
        A cluster whose λ̂ rests on one member (no between-member spread: its stderr is that
        member's chain stderr).
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    threshold = _check_threshold(threshold)
    if n_clusters is not None and (isinstance(n_clusters, bool) or
                                   not isinstance(n_clusters, numbers.Integral) or
                                   n_clusters < 1):
        raise ValueError(f"n_clusters must be an int >= 1, got {n_clusters!r}")
    if n_clusters is None and threshold is None:
        raise ValueError("give threshold= or n_clusters=")
    if linkage not in ("average", "complete", "single", "weighted"):
        raise ValueError(f"linkage must be 'average', 'complete', 'single' or 'weighted', got "
                         f"{linkage!r}")
    if not 0.0 <= float(min_cluster_fraction) < 1.0:
        raise ValueError(f"min_cluster_fraction must lie in [0, 1), got {min_cluster_fraction}")

    template = params = buffers = None
    ens = None
    if isinstance(models_or_params, (np.ndarray, torch.Tensor)) and probe_inputs is None:
        outputs = np.asarray(models_or_params.detach().cpu() if isinstance(
            models_or_params, torch.Tensor) else models_or_params, dtype=np.float64)
        if outputs.ndim not in (2, 3):
            raise ValueError(f"precomputed outputs must be (N, P) or (N, P, n_out), got "
                             f"{outputs.shape}")
        if llc == "auto":
            llc = None
    else:
        if probe_inputs is None:
            raise ValueError("probe_inputs is required (fixed inputs on which the functions "
                             "are compared)")
        template, params, buffers = stack_members(models_or_params)
        if hasattr(models_or_params, "train_loss"):
            ens = models_or_params
        outputs = member_outputs(template, params, buffers, probe_inputs)
    n = outputs.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 solutions to cluster, got {n}")
    sig = probe_signatures(outputs, metric)
    dist = pairwise_function_distance(sig, sig, metric)
    np.fill_diagonal(dist, 0.0)
    dist = 0.5 * (dist + dist.T)
    Z = hierarchy.linkage(squareform(dist, checks=False), method=linkage)
    if n_clusters is not None:
        raw = hierarchy.fcluster(Z, t=int(n_clusters), criterion="maxclust")
    else:
        raw = hierarchy.fcluster(Z, t=threshold, criterion="distance")
    ids, counts = np.unique(raw, return_counts=True)
    min_size = max(1, int(math.ceil(float(min_cluster_fraction) * n)))
    keep = ids[counts >= min_size]
    if len(keep) == 0:
        keep = ids[[int(np.argmax(counts))]]
    medoids = []
    for c in keep:
        mem = np.flatnonzero(raw == c)
        medoids.append(int(mem[np.argmin(dist[np.ix_(mem, mem)].sum(1))]))
    medoids_arr = np.asarray(medoids, dtype=np.int64)
    dm = dist[:, medoids_arr]
    labels = dm.argmin(1)
    sizes = np.bincount(labels, minlength=len(medoids_arr))
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    remap = np.full(len(medoids_arr), -1)
    remap[order] = np.arange(len(order))
    labels = remap[labels].astype(np.int64)
    medoids_arr = medoids_arr[order]
    sizes = np.bincount(labels, minlength=len(order)).astype(np.int64)
    merged = int(n - np.isin(raw, keep).sum())
    K = len(sizes)
    notes: list[str] = []

    # per-member loss / accuracy
    m_loss = np.full(n, np.nan)
    m_acc = np.full(n, np.nan)
    if ens is not None:
        m_loss = np.asarray(ens.train_loss, dtype=float)
        m_acc = np.asarray(ens.train_accuracy, dtype=float)
    if data is None and ens is not None:
        data = ens.data
    if ens is None and data is not None and template is not None:
        m_loss, m_acc = _member_metrics(template, params, buffers, data, loss)

    # per-member λ̂
    member_llc = np.full(n, np.nan)
    member_se = np.full(n, np.nan)
    if isinstance(llc, str):
        if llc != "auto":
            raise ValueError(f"llc must be 'auto', None or an array of per-member values, got "
                             f"{llc!r}")
        if template is not None and data is not None:
            member_llc, member_se = _estimate_member_llc(
                template, params, buffers, data, labels, medoids_arr, loss, llc_members,
                llc_kwargs or {}, seed, progress)
    elif llc is not None:
        arr = np.asarray(llc, dtype=float)
        if arr.shape != (n,):
            raise ValueError(f"llc must hold one value per member ({n}), got shape {arr.shape}")
        member_llc = arr.copy()
    c_llc = np.full(K, np.nan)
    c_se = np.full(K, np.nan)
    for k in range(K):
        vals_idx = np.flatnonzero((labels == k) & np.isfinite(member_llc))
        if len(vals_idx) >= 2:
            v = member_llc[vals_idx]
            c_llc[k] = v.mean()
            c_se[k] = v.std(ddof=1) / math.sqrt(len(v))
        elif len(vals_idx) == 1:
            c_llc[k] = member_llc[vals_idx[0]]
            c_se[k] = member_se[vals_idx[0]]
            msg = (f"cluster C{k + 1} ({sizes[k]} member{'s' if sizes[k] > 1 else ''}) has λ̂ "
                   f"from one member only: no between-member spread; its stderr is that "
                   f"member's chain stderr")
            notes.append(msg)
            warnings.warn(msg, ClusterWarning, stacklevel=2)
    mean_loss = np.array([np.nanmean(m_loss[labels == k]) if np.isfinite(m_loss[labels == k])
                          .any() else np.nan for k in range(K)])
    mean_acc = np.array([np.nanmean(m_acc[labels == k]) if np.isfinite(m_acc[labels == k])
                         .any() else np.nan for k in range(K)])
    return ClusterResult(
        labels=labels, sizes=sizes, masses=sizes / n, representatives=medoids_arr,
        representative_signatures=sig[medoids_arr], ground_distance=dist[np.ix_(medoids_arr,
                                                                                 medoids_arr)],
        metric=metric, threshold=threshold, n_clusters_requested=n_clusters,
        mean_loss=mean_loss, mean_accuracy=mean_acc, llc=c_llc, llc_stderr=c_se,
        member_llc=member_llc, member_llc_stderr=member_se, signatures=sig, merged=merged,
        notes=notes)


def _member_metrics(template: nn.Module, params: dict, buffers: dict, data: Any,
                    loss: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _train_xy(data)
    out = torch.as_tensor(member_outputs(template, params, buffers, x))
    yt = torch.as_tensor(y)
    if loss == "cross_entropy" and not torch.is_floating_point(yt):
        lv = torch.stack([nn.functional.cross_entropy(o, yt) for o in out]).double().numpy()
        acc = (out.argmax(-1) == yt).double().mean(1).numpy()
        return lv, acc
    if loss == "mse":
        yt = yt.float().reshape(out.shape[1], -1)
        return (0.5 * ((out - yt) ** 2).sum(-1).mean(1)).double().numpy(), \
            np.full(out.shape[0], np.nan)
    return np.full(out.shape[0], np.nan), np.full(out.shape[0], np.nan)


def _train_xy(data: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(data, "x_train"):
        return np.asarray(data.x_train, dtype=np.float32), np.asarray(data.y_train)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        x, y = data[0], data[1]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        return x.astype(np.float32), y
    raise TypeError(f"data must be a fractaldiff.train.Dataset or a tuple (x, y[, x_test, "
                    f"y_test]), got {type(data).__name__}")


def flat_members(params: dict) -> torch.Tensor:
    """Stacked parameters flattened per member, ``(N, D)`` (``named_parameters()`` order)."""
    n = next(iter(params.values())).shape[0]
    return torch.cat([v.detach().reshape(n, -1) for v in params.values()], dim=1)


def members_potential(template: nn.Module, params: dict, buffers: dict, x: torch.Tensor,
                      y: torch.Tensor, loss: Any, chain_member: np.ndarray,
                      l2: float = 0.0, chunk: int = 4096) -> Any:
    """A batched-SGLD potential (``fractaldiff.bayes`` engine) for chains started at members.

    Chain ``c`` evaluates the template with flat parameters ``W[c]`` and the buffers of member
    ``chain_member[c]`` (eval mode: BatchNorm uses that member's running statistics). The
    mean loss is ``L_n(w) + l2/2 * ||w||^2`` (``l2 = 1 / (nβ σ²)`` puts a Gaussian prior
    N(0, σ² I) into the SGLD drift ``nβ ∇``).
    """
    from torch.func import functional_call, vmap

    from ._engine import Potential, resolve_loss, value_and_grad_sum

    loss_f = resolve_loss(loss, "compare_posterior")
    names = list(params)
    shapes = [tuple(v.shape[1:]) for v in params.values()]
    sizes = [int(np.prod(s)) if s else 1 for s in shapes]
    cm = torch.as_tensor(np.asarray(chain_member, dtype=np.int64))
    bufs = {k: v[cm].detach() for k, v in buffers.items()}
    template.eval()

    def f(w: torch.Tensor, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        p = {k: t.view(s) for k, t, s in zip(names, torch.split(w, sizes), shapes)}
        val = loss_f(functional_call(template, (p, b), (xb,)), yb)
        if l2:
            val = val + 0.5 * l2 * (w * w).sum()
        return val

    vb = vmap(f, in_dims=(0, 0, 0, 0))
    vf = vmap(f, in_dims=(0, 0, None, None))
    n = int(x.shape[0])

    def value_and_grad(W: torch.Tensor, idx: torch.Tensor | None):
        if idx is None:
            return value_and_grad_sum(lambda w: vf(w, bufs, x, y), W)
        return value_and_grad_sum(lambda w: vb(w, bufs, x[idx], y[idx]), W)

    def full_loss(W: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            for a in range(0, n, chunk):
                b = min(n, a + chunk)
                total += vf(W, bufs, x[a:b], y[a:b]).double() * (b - a)
        return (total / n).to(W.dtype)

    D = sum(sizes)
    return Potential(D, n, torch.float32, torch.device("cpu"), value_and_grad, full_loss)


def xy_tensors(data: Any, loss: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Training inputs and targets as tensors (float32 x; int64 labels or float targets)."""
    x, y = _train_xy(data)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    if loss == "cross_entropy":
        yt = yt.to(torch.int64)
    elif loss == "mse":
        yt = yt.to(torch.float32)
        if yt.ndim == 1:
            yt = yt[:, None]
    return xt, yt


#: λ̂ settings used at members unless ``llc_kwargs`` overrides them (quick; see docs/posterior.md)
LLC_MEMBER_DEFAULTS = dict(n_chains=2, n_draws=300, n_burnin=100, step_size=1e-4,
                           localization=1.0, batch_size=64, nbeta=None, mala_every=0)


def _estimate_member_llc(template: nn.Module, params: dict, buffers: dict, data: Any,
                         labels: np.ndarray, medoids: np.ndarray, loss: Any,
                         llc_members: Any, llc_kwargs: dict, seed: int,
                         progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """λ̂ at chosen members, all in one batched localized-SGLD run of the estimate_llc engine
    (same estimator as :func:`fractaldiff.bayes.estimate_llc`: nβ = n / log n by default)."""
    from ._engine import default_nbeta, run_sgld, summarize

    n_members = len(labels)
    rng = np.random.default_rng(seed)
    if llc_members != "all" and (isinstance(llc_members, bool) or
                                 not isinstance(llc_members, numbers.Integral) or
                                 llc_members < 1):
        raise ValueError(f"llc_members must be an int >= 1 or 'all', got {llc_members!r}")
    chosen: list[int] = []
    for k, med in enumerate(medoids):
        mem = np.flatnonzero(labels == k)
        rest = rng.permutation(mem[mem != med])
        take = len(mem) if llc_members == "all" else int(llc_members)
        chosen += [int(med)] + [int(v) for v in rest[: max(0, take - 1)]]
    unknown = set(llc_kwargs) - set(LLC_MEMBER_DEFAULTS)
    if unknown:
        raise ValueError(f"llc_kwargs: unknown settings {sorted(unknown)}; known: "
                         f"{sorted(LLC_MEMBER_DEFAULTS)}")
    kw = dict(LLC_MEMBER_DEFAULTS)
    kw.update(llc_kwargs)
    x, y = xy_tensors(data, loss)
    n = int(x.shape[0])
    nb = float(kw["nbeta"]) if kw["nbeta"] is not None else default_nbeta(n)
    nc = int(kw["n_chains"])
    chain_member = np.repeat(np.asarray(chosen), nc)
    pot = members_potential(template, params, buffers, x, y, loss, chain_member)
    W = flat_members(params)[torch.as_tensor(chain_member)].float().contiguous()
    init = pot.full_loss(W).double().numpy()[::nc]  # per-chain buffers: all chains
    C = W.shape[0]
    batch = min(int(kw["batch_size"]), n) if kw["batch_size"] else None
    run = run_sgld(pot, W, nbeta=torch.full((C,), nb, dtype=torch.float64),
                   gamma=torch.full((C,), float(kw["localization"]), dtype=torch.float64),
                   eps=torch.full((C,), float(kw["step_size"]), dtype=torch.float64),
                   n_steps=int(kw["n_draws"]), batch_size=batch, seed=seed,
                   mala_every=int(kw["mala_every"]), progress=progress, desc="LLC at members")
    vals = np.full(n_members, np.nan)
    ses = np.full(n_members, np.nan)
    for j, i in enumerate(chosen):
        g = slice(j * nc, (j + 1) * nc)
        s = summarize(run.trace[g], float(init[j]), nb, int(kw["n_burnin"]),
                      run.acceptance[g], pot.n_params)
        vals[i] = s.mean
        ses[i] = s.stderr
    return vals, ses
