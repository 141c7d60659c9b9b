"""fractaldiff.train: a thin PyTorch harness that records weight trajectories.

* :class:`Recorder` — drop into any training loop; snapshots to a
  :class:`~fractaldiff.SnapshotStore` on a fixed or log-spaced schedule, and/or feeds online
  accumulators.
* :func:`train` — a small deterministic SGD/Adam loop for the paper's experiments.
* :mod:`~fractaldiff.train.data` — two moons, 8x8 digits, MNIST from local IDX files (all
  offline); :func:`mlp` — ReLU + BatchNorm MLPs; :func:`cnn`; :func:`char_transformer` and
  :func:`stdlib_corpus` / :func:`train_lm` — a character-level language model on Python's own
  standard-library sources.
* :func:`train_ensemble` — N identical networks with different seeds as one vmapped computation.
* :func:`load_snapshot` — load a recorded snapshot into a model.
* :func:`sweep` — learning-rate x batch-size grids and seed ensembles in worker processes.
* :mod:`~fractaldiff.train.online` — multiple-tau MSD, running R(t), box ids (no torch).

torch is needed for everything but :mod:`fractaldiff.train.online` (and scikit-learn for the
moons and digits data sets); names are imported on first use, so
``from fractaldiff.train.online import MultipleTauMSD`` works without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recorder": "recorder",
    "NonFiniteLossError": "recorder",
    "log_schedule": "recorder",
    "train": "loop",
    "TrainHistory": "loop",
    "Dataset": "data",
    "two_moons": "data",
    "digits": "data",
    "mnist": "data",
    "load_idx": "data",
    "load_dataset": "data",
    "mlp": "models",
    "cnn": "models",
    "char_transformer": "models",
    "stdlib_corpus": "text",
    "train_lm": "text",
    "load_snapshot": "snapshots",
    "train_ensemble": "ensemble",
    "EnsembleResult": "ensemble",
    "sweep": "sweeps",
    "SweepResult": "sweeps",
    "MultipleTauMSD": "online",
    "RunningDisplacement": "online",
    "OnlineBoxIds": "online",
    "OnlineAccumulators": "online",
    "OnlineMSDResult": "online",
}

__all__ = sorted(_EXPORTS)

_NEEDS_TORCH = {"recorder", "loop", "models", "sweeps", "ensemble", "snapshots"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fractaldiff.train' has no attribute {name!r}")
    if module in _NEEDS_TORCH:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ImportError(
                f"fractaldiff.train.{name} needs PyTorch: pip install 'fractaldiff[torch]'"
            ) from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
