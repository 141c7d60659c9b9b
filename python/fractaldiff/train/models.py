"""Fully connected ReLU + BatchNorm networks, as in the paper's MNIST and moons experiments."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["char_transformer", "cnn", "mlp"]


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

    return _seeded(build, seed)


def _seeded(build, seed):
    if seed is None:
        return build()
    state = torch.random.get_rng_state()  # leave the global RNG as it was
    try:
        torch.manual_seed(int(seed))
        return build()
    finally:
        torch.random.set_rng_state(state)


def cnn(
    image_shape: tuple[int, int] = (8, 8),
    out_features: int = 10,
    *,
    channels: tuple[int, int] = (8, 16),
    seed: int | None = None,
) -> nn.Sequential:
    """A small convolutional classifier for flattened grey images (e.g. 8x8 digits).

    ``unflatten -> conv3x3(1, c1) -> ReLU -> conv3x3(c1, c2) -> ReLU -> maxpool2 -> flatten ->
    Linear``; inputs are ``(batch, H*W)`` rows as in :func:`~fractaldiff.train.digits`.
    Modules: ``unflatten, conv1, relu1, conv2, relu2, pool, flatten, out``.

    Parameters
    ----------
    image_shape : (int, int), default (8, 8)
        Image height and width H, W (inputs have H*W features).
    out_features : int, default 10
        Number of classes.
    channels : (int, int), default (8, 16)
        Output channels c1, c2 of the two convolutions.
    seed : int, optional
        Initialize the weights from this seed; the global torch RNG state is restored
        afterwards.

    Returns
    -------
    torch.nn.Sequential
    """
    h, w = (int(v) for v in image_shape)
    c1, c2 = (int(v) for v in channels)
    for name, v in (("image height", h), ("image width", w), ("channels[0]", c1),
                    ("channels[1]", c2), ("out_features", out_features)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")

    def build() -> nn.Sequential:
        return nn.Sequential(OrderedDict([
            ("unflatten", nn.Unflatten(1, (1, h, w))),
            ("conv1", nn.Conv2d(1, c1, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("out", nn.Linear(c2 * (h // 2) * (w // 2), int(out_features))),
        ]))

    return _seeded(build, seed)


class _Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a GELU MLP.

    Written with plain tensor ops (no fused kernels), so that it works under
    ``torch.func.vmap`` / ``functional_call`` (the SGLD chains of the LLC estimator).
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(d, dim=-1)
        hd = d // self.n_heads
        q = q.reshape(b, t, self.n_heads, hd).transpose(1, 2)
        k = k.reshape(b, t, self.n_heads, hd).transpose(1, 2)
        v = v.reshape(b, t, self.n_heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (hd ** -0.5) + mask
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        h = h + self.proj(y)
        return h + self.fc_out(nn.functional.gelu(self.fc(self.ln2(h))))


class CharTransformer(nn.Module):
    """A small causal (GPT-style) character language model: ``forward(x) -> logits``.

    ``x``: token ids ``(batch, seq)`` (integer, or float holding integers); logits
    ``(batch, seq, vocab_size)``. Learned token and position embeddings, ``n_layers`` pre-norm
    blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm and an
    untied output layer.
    """

    def __init__(self, vocab_size: int, *, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2, max_len: int = 128) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.max_len = int(max_len)
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        seq = x.shape[1]
        if seq > self.max_len:
            raise ValueError(f"sequence length {seq} > max_len {self.max_len}")
        h = self.tok(x) + self.pos(torch.arange(seq, device=x.device))
        mask = torch.triu(torch.full((seq, seq), float("-inf"), device=x.device), diagonal=1)
        for blk in self.blocks:
            h = blk(h, mask)
        return self.out(self.norm(h))


def char_transformer(vocab_size: int = 97, *, d_model: int = 64, n_heads: int = 4,
                     n_layers: int = 2, max_len: int = 128,
                     seed: int | None = None) -> CharTransformer:
    """A :class:`CharTransformer` initialized from ``seed`` (global RNG restored).

    Parameters
    ----------
    vocab_size : int, default 97
        Number of token ids.
    d_model : int, default 64
        Embedding width (a multiple of ``n_heads``).
    n_heads : int, default 4
        Attention heads per block.
    n_layers : int, default 2
        Transformer blocks.
    max_len : int, default 128
        Longest sequence (size of the position embedding).
    seed : int, optional
        Initialize the weights from this seed; the global torch RNG state is restored
        afterwards.

    Returns
    -------
    CharTransformer
    """
    return _seeded(lambda: CharTransformer(vocab_size, d_model=d_model, n_heads=n_heads,
                                           n_layers=n_layers, max_len=max_len), seed)
