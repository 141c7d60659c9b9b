"""Reading and writing weight trajectories: the crash-safe snapshot store and checkpoint folders.

``layout`` (where each tensor lives in the flat vector), ``format`` (the store's files, commit
record and manifest), ``recovery`` (the commit-log rules), ``writer`` (the append paths behind
one interface), ``store`` (:class:`SnapshotStore`) and ``checkpoints`` (folders of per-step
files). Nothing here analyses data; :mod:`fractaldiff.engine` reads these sources in column
blocks.
"""

from __future__ import annotations

from .checkpoints import CheckpointFolder, step_from_name
from .format import StoreCorruptedError, StoreLockedError, StoreRecoveryWarning
from .layout import LayoutEntry, ParameterLayout
from .store import PartsWriter, SnapshotStore, is_store, open_store

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
