"""The meta rows every store has (format version, checkpoint interval, first head), and
the check that a directory holds a store at all (spec/store.md, "Layout")."""

from __future__ import annotations

import os
from typing import Any

from store import codec
from store import keys as K
from store.errors import CorruptStore, StoreError

DEFAULT_CHECKPOINT_INTERVAL = 100


def check_is_store(directory: str, db_path: str) -> None:
    """Refuse, touching nothing, a directory that holds no store."""
    if not os.path.isdir(directory) or not os.path.isdir(db_path):
        raise StoreError(f"{directory}: no such store")
    if not os.path.exists(os.path.join(db_path, "CURRENT")):
        # LevelDB writes CURRENT last when it creates a database: a run killed
        # before that left a directory but no store.
        raise StoreError(f"{directory}: no store yet (its first run stopped early)")


def open_meta(db: Any, directory: str, interval: int | None, create: bool) -> int:
    """Check (or, creating, write) the format and checkpoint interval rows; return the
    interval."""
    stored_format = db.get(K.FORMAT_KEY)
    if stored_format is None:
        if next(db.iterator(include_value=False), None) is not None:
            raise CorruptStore(f"{directory}: not a coreledger store (no format key)")
        if not create:
            # A first run killed between LevelDB's creation and this batch: writing
            # the default interval here would refuse the operator's own on resume.
            raise StoreError(f"{directory}: no store yet (its first run stopped early)")
        interval = DEFAULT_CHECKPOINT_INTERVAL if interval is None else interval
        with db.write_batch(transaction=True, sync=True) as batch:
            batch.put(K.INTERVAL_KEY, codec.frame([interval]))
            batch.put(K.HEAD_KEY, codec.encode_head(0, codec.ZERO_HASH, 1))
            batch.put(K.FORMAT_KEY, codec.frame([K.FORMAT_VERSION]))
        return interval
    (version,) = codec.unframe("format version", stored_format, 1)
    if version != K.FORMAT_VERSION:
        raise StoreError(
            f"{directory}: store format {version!r}, this version reads {K.FORMAT_VERSION}"
        )
    (stored,) = codec.unframe("checkpoint interval", db.get(K.INTERVAL_KEY), 1)
    stored_interval = codec.uint("checkpoint interval", stored, 1)
    if interval is not None and interval != stored_interval:
        raise StoreError(
            f"{directory}: created with checkpoint interval {stored_interval}, "
            f"not {interval}"
        )
    return stored_interval
