"""Checkpoints: staging one (the changed state entries as new versions, a "latest" copy,
the change log and the checkpoint row), pruning the ones beyond `keep`, and reading the
state back at a kept checkpoint (spec/store.md, "Checkpoints", "Pruning", "Recovery").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from state_machine import CoreError, CoreStateMachine, describe_key, machine_from_entries
from store import codec
from store import keys as K
from store.errors import CorruptStore, StoreError
from store.records import Checkpoint, CheckpointInfo, Entry


@dataclass(frozen=True, slots=True)
class Restored:
    """The state at a checkpoint (or the empty state at height 0 when there is none)."""

    height: int
    checkpoint: CheckpointInfo | None
    entries: list[Entry]
    machine: CoreStateMachine


def load_checkpoint_heights(db: Any) -> list[int]:
    heights = []
    for key in db.iterator(prefix=K.CHECKPOINT, include_value=False):
        if len(key) != K.TABLE_KEY_LEN:
            raise CorruptStore(f"bad checkpoint key {key.hex()}")
        heights.append(K.table_id(key))
    return heights


def read_checkpoint(db: Any, height: int) -> CheckpointInfo | None:
    value = db.get(K.checkpoint_key(height))
    return None if value is None else codec.decode_checkpoint(height, value)


def stage_checkpoint(
    db: Any,
    batch: Any,
    checkpoint: Checkpoint,
    block_hash: bytes,
    latest: CheckpointInfo | None,
    interval: int,
) -> tuple[CheckpointInfo, int]:
    """Put the checkpoint's rows into `batch`; return its info and the bytes it writes.

    Cost: one read and up to three puts per changed key (O(changes), never O(state)).
    """
    height = checkpoint.height
    if height % interval:
        raise StoreError(
            f"height {height} is not a multiple of the checkpoint interval {interval}"
        )
    if latest is not None and height <= latest.height:
        raise StoreError(f"checkpoint {height} is not above checkpoint {latest.height}")
    count = 0 if latest is None else latest.entry_count
    written = 0
    nbytes = 0
    get = db.get
    put = batch.put
    delete = batch.delete
    previous = b""
    for key, value in checkpoint.changes:
        if key <= previous:
            raise StoreError("checkpoint changes must be sorted by key, one per key")
        previous = key
        latest_key = K.latest_key(key)
        old = get(latest_key)
        if old == value:
            continue  # touched but unchanged: nothing to write
        if value is None:
            delete(latest_key)
            put(K.version_key(key, height), codec.TOMBSTONE)
            count -= 1
        else:
            put(latest_key, value)
            put(K.version_key(key, height), codec.PRESENT + value)
            if old is None:
                count += 1
        put(K.change_log_key(height, key), b"")
        written += 1
        # latest (or its deletion), version and change-log rows: 3 keys, 2 values,
        # 2 prefixes and heights, 1 tag, 1 prefix.
        nbytes += 3 * len(key) + 2 * len(value or b"") + 20
    info = CheckpointInfo(height, block_hash, checkpoint.roots, count, written)
    meta = codec.encode_checkpoint(info)
    put(K.checkpoint_key(height), meta)
    return info, nbytes + K.TABLE_KEY_LEN + len(meta)


def prune(db: Any, heights: list[int], keep: int) -> list[int]:
    """Drop checkpoints beyond `keep` and the versions no kept checkpoint reads; return
    the kept heights.

    For each state key a dropped checkpoint changed, of its versions at or below the
    oldest kept checkpoint only the newest is still read (by that checkpoint), and not
    even that one if it is a tombstone. One atomic batch: a crash leaves it to redo,
    which gives the same result (it is idempotent). So the batch is not synced (an fsync
    each checkpoint): lost to a power cut, the next open prunes again, and LevelDB's log
    is one file, so the next synced batch makes it durable anyway.
    """
    if len(heights) <= keep:
        return heights
    dropped = heights[:-keep]
    oldest_kept = heights[-keep]
    touched: set[bytes] = set()
    with db.write_batch(transaction=True) as batch:
        for height in dropped:
            for key in db.iterator(prefix=K.change_log_prefix(height), include_value=False):
                touched.add(K.state_key_of_change_log(key))
                batch.delete(key)
            batch.delete(K.checkpoint_key(height))
        # One iterator, sought per key in key order: creating an iterator per key
        # costs ~10 us, more than the seek.
        versions_of = db.iterator(prefix=K.STATE_VERSION)
        for state_key in sorted(touched):
            start = K.version_prefix(state_key)
            versions_of.seek(start)
            newest: tuple[bytes, bytes] | None = None
            for version_key, value in versions_of:
                if len(version_key) != len(start) + 8 or not version_key.startswith(start):
                    break
                if K.tail_u64(version_key) > oldest_kept:
                    break
                if newest is not None:
                    batch.delete(newest[0])
                newest = (version_key, value)
            if newest is not None and newest[1] == codec.TOMBSTONE:
                batch.delete(newest[0])
        versions_of.close()
    return heights[-keep:]


SCAN_CHUNK = 1 << 16
"""Rows read between two calls of a scan's `scanned` callback."""


def latest_entries(
    db: Any, scanned: Callable[[list[Entry]], None] | None = None
) -> list[Entry]:
    """The "latest" copy of the state: the state at the newest checkpoint.

    With `scanned`, it is called with the entries read so far after every SCAN_CHUNK rows
    (a `store.roots_feed.RootsFeed` hashes them meanwhile), and not after the last.
    (1,000,000 orders: ~1 s, of which LevelDB's iterator ~0.6. Neither C-level maps in
    place of the comprehension nor pausing the cyclic GC made it cheaper: the first
    collection after a pause traverses the million new tuples at once, 0.27 s.)"""
    items = db.iterator(prefix=K.STATE_LATEST)
    entries: list[Entry] = []
    while True:
        chunk = [(K.state_key_of_latest(key), value) for key, value in islice(items, SCAN_CHUNK)]
        entries += chunk
        if len(chunk) < SCAN_CHUNK:
            return entries
        if scanned is not None:
            scanned(entries)


def iter_latest_entries(db: Any) -> Iterator[Entry]:
    """The rows of `latest_entries`, one at a time (for readers that work in slices)."""
    for key, value in db.iterator(prefix=K.STATE_LATEST):
        yield K.state_key_of_latest(key), value


def versioned_entries(db: Any, height: int) -> list[Entry]:
    """The state at a kept checkpoint: per key, the newest version at or below it."""
    entries: list[Entry] = []
    current = b""
    chosen: bytes | None = None
    for key, value in db.iterator(prefix=K.STATE_VERSION):
        state_key = K.state_key_of_version(key)
        if state_key != current:
            if chosen is not None:
                entries.append((current, chosen))
            current = state_key
            chosen = None
        if K.tail_u64(key) <= height:
            if value == codec.TOMBSTONE:
                chosen = None
            elif value[:1] == codec.PRESENT:
                chosen = value[1:]
            else:
                raise CorruptStore(f"{describe_key(state_key)}: bad version tag")
    if chosen is not None:
        entries.append((current, chosen))
    return entries


def rebuild(info: CheckpointInfo, entries: list[Entry], check_canonical: bool) -> Restored:
    """The machine of a checkpoint's entries; CorruptStore if they cannot be its state."""
    if len(entries) != info.entry_count:
        raise CorruptStore(
            f"checkpoint {info.height}: {len(entries)} state entries, "
            f"{info.entry_count} recorded"
        )
    try:
        machine = machine_from_entries(entries, check_canonical=check_canonical)
    except CoreError as exc:
        raise CorruptStore(f"checkpoint {info.height}: {exc}") from None
    return Restored(info.height, info, entries, machine)
