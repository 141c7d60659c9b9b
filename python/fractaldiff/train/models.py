"""Fully connected ReLU + BatchNorm networks, as in the paper's MNIST and moons experiments."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["mlp"]


def mlp(
    in_features: int,
    out_features: int,
    *,
    width: int = 64,
    depth: int = 2,
    batch_norm: bool = True,
    seed: int | None = None,
) -> nn.Sequential:
    """A multilayer perceptron: ``depth`` blocks of Linear -> BatchNorm1d -> ReLU, then Linear.

    Modules are named ``fc1, bn1, relu1, ..., fc{depth}, bn{depth}, relu{depth}, out``, so the
    recorded parameters are ``fc1.weight, fc1.bias, bn1.weight, bn1.bias, ..., out.weight,
    out.bias`` (BatchNorm's running statistics are buffers, not recorded).

    Parameters
    ----------
    in_features, out_features : int
        Input size (e.g. 64 for digits, 784 for MNIST, 2 for moons) and number of classes.
    width : int, default 64
        Hidden units per layer.
    depth : int, default 2
        Hidden layers (0 gives a linear model).
    batch_norm : bool, default True
        Insert BatchNorm1d after each hidden Linear.
    seed : int, optional
        Initialize the weights (PyTorch's default initialization) from this seed; the global
        torch RNG state is restored afterwards.

    Returns
    -------
    torch.nn.Sequential
    """
    for name, v, lo in (("in_features", in_features, 1), ("out_features", out_features, 1),
                        ("width", width, 1), ("depth", depth, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")

    def build() -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        prev = in_features
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(prev, width)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(width)
            layers[f"relu{i}"] = nn.ReLU()
            prev = width
        layers["out"] = nn.Linear(prev, out_features)
        return nn.Sequential(layers)

    if seed is None:
        return build()
    state = torch.random.get_rng_state()  # leave the global RNG as it was
    try:
        torch.manual_seed(int(seed))
        return build()
    finally:
        torch.random.set_rng_state(state)
