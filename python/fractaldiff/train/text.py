"""A character-level corpus from Python's own standard-library sources, and a language-model loop.

Nothing is downloaded: the text is the ``.py`` files directly under
``sysconfig.get_paths()["stdlib"]``, taken in sorted file-name order until ``n_chars`` characters
are collected. Characters are mapped to a fixed 97-symbol vocabulary (newline, the 95 printable
ASCII characters, and one "other" symbol), so token ids do not depend on the text. The corpus
is deterministic for a given Python installation (different Python versions ship different
sources, hence slightly different text).
"""

from __future__ import annotations

import math
import os
import sysconfig
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["VOCAB", "TextCorpus", "decode", "encode", "stdlib_corpus", "train_lm"]

#: The fixed vocabulary: "\n", " ".."~", and index 96 for any other character.
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
_OTHER = len(VOCAB)
_LOOKUP = np.full(128, _OTHER, dtype=np.int64)
for _i, _ch in enumerate(VOCAB):
    _LOOKUP[ord(_ch)] = _i


def encode(text: str) -> np.ndarray:
    """Token ids (int64) of ``text`` in :data:`VOCAB` (other characters -> 96)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    out = np.full(codes.shape, _OTHER, dtype=np.int64)
    ascii_ = codes < 128
    out[ascii_] = _LOOKUP[codes[ascii_]]
    return out


def decode(ids: Any) -> str:
    """Text of token ids (96 -> "?")."""
    return "".join(VOCAB[i] if i < _OTHER else "?" for i in np.asarray(ids).ravel())


@dataclass(frozen=True)
class TextCorpus:
    """Next-character prediction windows.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray of int64, shape (n, seq_len)
        Input characters.
    y_train, y_test : numpy.ndarray of int64, shape (n, seq_len)
        The next character at every position.
    vocab_size : int
    files : list of str
        The source files used, in order.
    n_chars : int
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    vocab_size: int
    files: list = field(default_factory=list)
    n_chars: int = 0

    @property
    def n_train(self) -> int:
        """Number of training windows."""
        return int(self.x_train.shape[0])


def stdlib_corpus(n_chars: int = 200_000, *, seq_len: int = 64, test_fraction: float = 0.1,
                  stdlib: str | os.PathLike | None = None) -> TextCorpus:
    """Character windows cut from the Python standard library's own source files.

    Parameters
    ----------
    n_chars : int, default 200000
        Characters to read (from the sorted list of top-level ``.py`` files).
    seq_len : int, default 64
        Window length; windows do not overlap.
    test_fraction : float, default 0.1
        The last windows (in text order) form the test set.
    stdlib : path, optional
        Folder to read instead of ``sysconfig.get_paths()["stdlib"]``.

    Returns
    -------
    TextCorpus
    """
    if isinstance(n_chars, bool) or not isinstance(n_chars, int) or n_chars < 4 * (seq_len + 1):
        raise ValueError(f"n_chars must be an int >= 4 * (seq_len + 1), got {n_chars!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2, got {seq_len!r}")
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    folder = os.fspath(stdlib) if stdlib is not None else sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(folder):
        raise ValueError(f"stdlib folder {folder!r} does not exist")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    parts: list[str] = []
    used: list[str] = []
    total = 0
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        parts.append(text)
        used.append(name)
        total += len(text)
        if total >= n_chars:
            break
    text = "".join(parts)[:n_chars]
    if len(text) < 4 * (seq_len + 1):
        raise ValueError(f"only {len(text)} characters of Python source found under {folder!r}")
    ids = encode(text)
    n_win = (len(ids) - 1) // seq_len
    xs = np.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n_win)])
    ys = np.stack([ids[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n_win)])
    n_test = max(1, int(round(n_win * float(test_fraction))))
    return TextCorpus(xs[:-n_test], ys[:-n_test], xs[-n_test:], ys[-n_test:],
                      vocab_size=len(VOCAB) + 1, files=used, n_chars=len(text))


@dataclass
class LMHistory:
    """Losses of :func:`train_lm` (nats per character)."""

    loss: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    test_loss: float | None = None
    test_accuracy: float | None = None
    stopped: str | None = None


def _lm_eval(model: Any, x: Any, y: Any, chunk: int = 256) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            logits = model(x[i:i + chunk])
            yy = y[i:i + chunk]
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yy.reshape(-1),
                                           reduction="sum"))
            correct += int((logits.argmax(-1) == yy).sum())
            count += yy.numel()
    model.train(was)
    return total / count, correct / count


def train_lm(model: Any, corpus: TextCorpus, *, optimizer: str = "adam", lr: float,
             batch_size: int, steps: int, seed: int = 0, recorder: Any = None,
             progress: bool = False) -> LMHistory:
    """Train a next-character model (``model(x) -> logits (batch, seq, vocab)``), CPU.

    Batches are drawn without replacement, reshuffled every epoch by a generator seeded with
    ``seed``; the mean cross-entropy per character is minimized with plain SGD or Adam. With a
    :class:`~fractaldiff.train.Recorder`, ``recorder.step`` is called after every step.

    Parameters
    ----------
    model : torch.nn.Module
        Maps token ids ``(batch, seq)`` to logits ``(batch, seq, vocab)``; trained in place.
    corpus : TextCorpus
        Training windows (``x_train``, ``y_train``) and the test windows evaluated at the end.
    optimizer : {"sgd", "adam"}, default "adam"
        Plain SGD or Adam.
    lr : float
        Learning rate.
    batch_size : int
        Windows per step (1..number of training windows).
    steps : int
        Optimizer steps; training stops early at a non-finite loss.
    seed : int, default 0
        Seed of the batch order.
    recorder : Recorder, optional
        Its ``step`` is called after every step and ``flush`` at the end.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    LMHistory
        Training losses per step, ``steps``, ``seconds``, the test loss and accuracy, and
        ``stopped`` (why training stopped early, or None).
    """
    import torch
    import torch.nn.functional as F

    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    x = torch.as_tensor(corpus.x_train)
    y = torch.as_tensor(corpus.y_train)
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n}, got {batch_size!r}")
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    gen = torch.Generator().manual_seed(int(seed))
    hist = LMHistory()
    t0 = time.perf_counter()
    model.train()
    order = torch.randperm(n, generator=gen)
    pos = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"LM {optimizer}", unit="step", leave=False)
    while hist.steps < steps:
        if pos + batch_size > n:
            order = torch.randperm(n, generator=gen)
            pos = 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        logits = model(x[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.steps += 1
        value = float(loss.detach())
        hist.loss.append(value)
        if bar is not None:
            bar.update(1)
        if recorder is not None:
            recorder.step(loss=value, lr=lr, batch_size=batch_size)
        if not math.isfinite(value):
            hist.stopped = f"non-finite loss at step {hist.steps}"
            break
    if bar is not None:
        bar.close()
    if recorder is not None:
        recorder.flush()
    hist.test_loss, hist.test_accuracy = _lm_eval(model, torch.as_tensor(corpus.x_test),
                                                  torch.as_tensor(corpus.y_test))
    hist.seconds = time.perf_counter() - t0
    return hist
