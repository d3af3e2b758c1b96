"""`Store.restore`'s steps: scan a checkpoint's entries, rebuild its machine, check its roots.

With roots to check, the hash-only roots run beside the scan and the rebuild: a
`store.roots_feed.RootsFeed` ships each namespace to a worker process as soon as the scan
has read it, and the rebuild skips re-encoding each value (a value that hashes to the
stored root is the committed, canonical one). Only then are the roots compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from state_machine import CoreStateMachine
from store import audit, checkpoints
from store.checkpoints import Restored
from store.records import CheckpointInfo, ComputeRoots, Entry
from store.roots_feed import RootsFeed

Scanned = Callable[[list[Entry]], None]
EntriesAt = Callable[[int | None, Scanned | None], tuple[CheckpointInfo | None, list[Entry]]]
"""`Store.state_entries_at(height, scanned)`."""


def restore(
    db: Any,
    latest: CheckpointInfo | None,
    entries_at: EntriesAt,
    height: int | None,
    compute_roots: ComputeRoots | None,
) -> Restored:
    """The state at a kept checkpoint `height` (None: the latest), its roots checked by
    `compute_roots` if given (StateDiverged naming the namespace, see `audit.check_roots`)."""
    at_latest = latest is not None and height in (None, latest.height)
    expected = latest.entry_count if at_latest and latest is not None else 0
    feed = None if compute_roots is None else RootsFeed(compute_roots, expected)
    try:
        info, entries = entries_at(height, None if feed is None else feed.scanned)
        if info is None:
            return Restored(0, None, [], CoreStateMachine())
        pending = None if feed is None else feed.finish(entries)
    finally:
        if feed is not None:
            feed.cancel()  # a no-op once finished: the pending roots own the worker
    try:
        restored = checkpoints.rebuild(info, entries, check_canonical=pending is None)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    if pending is not None:
        latest_height = None if latest is None else latest.height
        audit.check_roots(db, info, entries, pending.result(), latest_height)
    return restored
