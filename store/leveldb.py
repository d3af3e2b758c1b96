"""The LevelDB binding, imported here and nowhere else.

plyvel 1.5.1 (its last release) ships wheels for CPython up to 3.12 only and does not build
without LevelDB's headers; plyvel-next, a maintained fork, ships them for 3.12 to 3.14 under
the module name `plyvel_next` with the same API. pyproject.toml picks one by environment
marker; this module imports whichever is installed (plyvel first). The store uses only:
`DB(path, create_if_missing=..., write_buffer_size=..., compression=None)`, `get`, `put`, `delete`,
`iterator(prefix=, start=, stop=, include_key=, include_value=)` with `seek` and `close`,
`write_batch(transaction=True, sync=...)`, `compact_range(start=, stop=)`, `close()`, and
the exceptions `Error` and `CorruptionError`
(tests/test_leveldb_binding.py pins that behaviour for each binding).
"""

from __future__ import annotations

import contextlib
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

# No Snappy compression of table blocks. Every flush and compaction compressed each block
# again (and every read decompressed it): for 3,000 simulated blocks the pipelined writer's
# instructions fell 11% without it (6.93G -> 6.16G for 1,500 blocks, callgrind, all threads)
# and the CPU of its clean close (the memtable flush) from 1.0-1.2 s to 0.25 s; a reopen of
# 300,000 orders: close 1.0 -> 0.65 s, scan 0.55-0.62 -> 0.37-0.49 s, raw scan 0.35-0.41 ->
# 0.12-0.26 s. The cost is disk: 14 MB -> 48 MB for those 3,000 blocks (history rows are
# CBOR and 20-byte addresses, which Snappy shrinks about 3.4 times). Existing stores
# read fine: LevelDB marks the compression of each block, and compaction rewrites them.
COMPRESSION = None

# What the store opens its database with (`store.database`).
DB_OPTIONS: dict[str, Any] = {"write_buffer_size": WRITE_BUFFER_SIZE, "compression": COMPRESSION}

# A key above every key the store writes (table prefixes are 0x00-0x25): a range of it
# alone overlaps no table file.
_PAST_EVERY_KEY = b"\xff"


def flush_memtable(db: Any) -> None:
    """Write LevelDB's memtable to a table file and start an empty log: O(memtable).

    LevelDB's CompactRange always flushes the memtable first, then compacts the table
    files overlapping the range; a range past every key overlaps none, so this flushes
    only. A clean close calls it: the next open then has no log to replay (the log of a
    64 MB write buffer took 3.8 s to replay at a reopen of 1,000,000 orders). A process
    killed before it leaves the log for the next open to replay, as before.
    """
    with contextlib.suppress(Error, RuntimeError):  # only a speed-up: the log has it all
        db.compact_range(start=_PAST_EVERY_KEY, stop=_PAST_EVERY_KEY)
