"""Audit: checks of stored data against itself, naming what diverged — a checkpoint's roots
against its entries, the "latest" copy against the versions, and every history row
against its indexes (spec/store.md, "Verification").
"""

from __future__ import annotations

from typing import Any

from state_machine import describe_key, describe_namespace, namespace_of
from store import codec
from store import keys as K
from store.checkpoints import latest_entries, versioned_entries
from store.errors import CorruptStore, StateDiverged
from store.history import order_record
from store.records import CheckpointInfo, Entry, Roots


def check_roots(
    db: Any, info: CheckpointInfo, entries: list[Entry], roots: Roots, latest_height: int | None
) -> None:
    """Raise StateDiverged, naming the namespaces (and the key when the two stored copies
    disagree), if `roots` recomputed over `entries` differ from the stored ones."""
    stored = info.roots
    if roots.root == stored.root and roots.namespaces == stored.namespaces:
        return
    stored_ns = dict(stored.namespaces)
    computed_ns = dict(roots.namespaces)
    diverged = sorted(
        namespace
        for namespace in set(stored_ns) | set(computed_ns)
        if stored_ns.get(namespace) != computed_ns.get(namespace)
    )
    where = (
        ", ".join(describe_namespace(namespace) for namespace in diverged)
        if diverged
        else "the root over the namespaces"
    )
    message = (
        f"checkpoint {info.height}: state root mismatch in {where} "
        f"(stored {stored.root.hex()[:16]}, recomputed {roots.root.hex()[:16]})"
    )
    if info.height == latest_height:  # an older checkpoint has one copy only: its versions
        key = _first_copy_difference(db, info.height, entries, set(diverged))
        if key is not None:
            message += f"; key {describe_key(key)} differs between the stored copies"
    raise StateDiverged(message)


def _first_copy_difference(
    db: Any, height: int, entries: list[Entry], namespaces: set[bytes]
) -> bytes | None:
    """The first key, in the diverged namespaces, where the other stored copy differs."""
    mine = dict(entries)
    theirs = dict(versioned_entries(db, height))
    for key in sorted(set(mine) | set(theirs)):
        if namespaces and namespace_of(key) not in namespaces:
            continue
        if mine.get(key) != theirs.get(key):
            return key
    return None


def check_latest_copy(db: Any, latest: CheckpointInfo) -> None:
    """The "latest" copy must equal the versions at the newest checkpoint."""
    versioned = versioned_entries(db, latest.height)
    copy = latest_entries(db)
    if versioned == copy:
        return
    mine = dict(copy)
    theirs = dict(versioned)
    key = next(k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))
    raise StateDiverged(
        f"checkpoint {latest.height}: key {describe_key(key)} differs between the stored copies"
    )


def verify_history(db: Any, head_height: int, next_fill_seq: int) -> None:
    """Every fill numbered without a gap, indexed under both orders and both users; every
    order decodable with a consistent status; index rows empty. O(history)."""
    fills = 0
    for key, value in db.iterator(prefix=K.FILL):
        seq = K.table_id(key)
        fills += 1
        if seq != fills:
            raise CorruptStore(f"history fill {fills} is missing")
        fill, height = codec.decode_fill(seq, value)
        if height > head_height:
            raise CorruptStore(f"history fill {seq}: height {height} above the head")
        for order_id in (fill.maker_order_id, fill.taker_order_id):
            index = db.get(K.order_fill_key(order_id, seq))
            if index is None or codec.decode_fill_size(order_id, index) != fill.size:
                raise CorruptStore(f"history of order {order_id}: bad fill index entry")
    if fills + 1 != next_fill_seq:
        raise CorruptStore(f"history: {fills} fills, head says {next_fill_seq - 1}")
    for key, value in db.iterator(prefix=K.ORDER):
        order_record(db, K.table_id(key), value)
    # Index rows carry no value: any value at all is corruption.
    for prefix in (K.USER_FILL, K.USER_ORDER, K.CHECKPOINT_CHANGES):
        for key, value in db.iterator(prefix=prefix):
            if value:
                raise CorruptStore(f"index row {key.hex()}: unexpected value")
            if prefix != K.CHECKPOINT_CHANGES and len(key) != K.USER_INDEX_LEN:
                raise CorruptStore(f"index row {key.hex()}: bad key length")
    for key in db.iterator(prefix=K.USER_FILL, include_value=False):
        seq = K.id_of_index_key(key)
        fill, _ = codec.decode_fill(seq, db.get(K.fill_key(seq)))
        if K.user_of_index_key(key).hex() not in (fill.maker[2:], fill.taker[2:]):
            raise CorruptStore(f"index row {key.hex()}: not that user's fill")
    for key in db.iterator(prefix=K.USER_ORDER, include_value=False):
        order_id = K.id_of_index_key(key)
        placed, _ = codec.decode_order(order_id, db.get(K.order_key(order_id)))
        if placed.user[2:] != K.user_of_index_key(key).hex():
            raise CorruptStore(f"index row {key.hex()}: not that user's order")
