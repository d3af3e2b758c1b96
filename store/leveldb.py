"""The LevelDB binding, imported here and nowhere else.

plyvel 1.5.1 (its last release) ships wheels for CPython up to 3.12 only and does not build
without LevelDB's headers; plyvel-next, a maintained fork, ships them for 3.12 to 3.14 under
the module name `plyvel_next` with the same API. pyproject.toml picks one by environment
marker; this module imports whichever is installed (plyvel first). The store uses only:
`DB(path, create_if_missing=..., write_buffer_size=...)`, `get`, `put`, `delete`,
`iterator(prefix=, start=, stop=, include_key=, include_value=)` with `seek` and `close`,
`write_batch(transaction=True, sync=...)`, `compact_range()`, `close()`, and the
exceptions `Error` and `CorruptionError`
(tests/test_leveldb_binding.py pins that behaviour for each binding).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


def _import_binding() -> ModuleType:
    try:
        return importlib.import_module("plyvel")
    except ImportError:
        return importlib.import_module("plyvel_next")


binding: Any = _import_binding()
NAME: str = binding.__name__
DB: Any = binding.DB
Error: Any = binding.Error
CorruptionError: Any = binding.CorruptionError

# LevelDB's memtable (default 4 MB). History rows land all over the key space (per-user
# and per-order indexes), so each small level-0 table overlaps all of level 1 and
# compaction rewrote it again and again: 4.6 s of the compaction thread for 3,000
# simulated blocks at 4 MB, 0.7 s at 64 MB. The cost: the log to replay on a reopen
# after a crash or a close holds up to this much (~0.3 s for 20 MB).
WRITE_BUFFER_SIZE = 64 << 20
