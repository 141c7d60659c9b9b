"""Reading and writing weight trajectories: the crash-safe snapshot store and checkpoint folders.

Nothing here analyses data; :mod:`fractaldiff.engine` reads these sources in column blocks.
"""

from __future__ import annotations

from .checkpoints import CheckpointFolder, step_from_name
from .store import (
    LayoutEntry,
    ParameterLayout,
    PartsWriter,
    SnapshotStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreRecoveryWarning,
    is_store,
    open_store,
)

__all__ = [
    "CheckpointFolder",
    "LayoutEntry",
    "ParameterLayout",
    "PartsWriter",
    "SnapshotStore",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreRecoveryWarning",
    "is_store",
    "open_store",
    "step_from_name",
]
