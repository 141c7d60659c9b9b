"""The lazy pyplot import and small helpers shared by every ``plot()`` method."""

from __future__ import annotations

from typing import Any

__all__ = ["axes", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use, with an install hint when it is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib, an optional extra: pip install 'fractaldiff[plot]' "
            "(from a checkout: pip install '.[plot]')"
        ) from exc
    return plt


def axes(ax: Any = None) -> Any:
    """The given matplotlib axes, or new ones on a new figure."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots()
    return ax
