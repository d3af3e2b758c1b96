"""LevelDB persistence of a node: blocks, history, versioned state checkpoints (spec/store.md).

Imports `state_machine` (and `merkle` for the default root function) only, never `block_exec`.
"""

from store.database import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_KEEP,
    Restored,
    Store,
)
from store.errors import (
    BlockConflict,
    CorruptStore,
    InvalidCursor,
    StateDiverged,
    StoreError,
    StoreLocked,
)
from store.records import (
    BlockRecord,
    Canceled,
    Change,
    Checkpoint,
    CheckpointInfo,
    ComputeRoots,
    Entry,
    FillRecord,
    HistoryPage,
    OrderPlaced,
    OrderRecord,
    PackedHistory,
    Roots,
    StoreBase,
    StoredBlock,
)

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_KEEP",
    "BlockConflict",
    "BlockRecord",
    "Canceled",
    "Change",
    "Checkpoint",
    "CheckpointInfo",
    "ComputeRoots",
    "CorruptStore",
    "Entry",
    "FillRecord",
    "HistoryPage",
    "InvalidCursor",
    "OrderPlaced",
    "OrderRecord",
    "PackedHistory",
    "Restored",
    "Roots",
    "StateDiverged",
    "Store",
    "StoreBase",
    "StoreError",
    "StoreLocked",
    "StoredBlock",
]
