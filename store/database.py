"""`Store`: one LevelDB database per node directory (spec/store.md).

Per block, one atomic batch: the block, its receipts, its history rows and the head
(`store.blocklog`). Every `checkpoint_interval` blocks, one atomic synced batch: the state
entries that changed since the previous checkpoint (as new versions, plus a "latest" copy),
the roots and the checkpoint's metadata; then, in a batch of its own, pruning of checkpoints
beyond `keep` (`store.checkpoints`). History queries are `store.history`, the checks of
`verify` are `store.audit`, the meta rows `store.meta`. This module opens the database
and keeps the head. (Pipelined, several blocks share one batch: `stage_blocks`, then `commit`.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from state_machine import CoreError, normalize_address
from store import audit, blocklog, checkpoints, codec, history, leveldb, meta, reopen, staging
from store import keys as K
from store.checkpoints import Restored
from store.errors import BlockConflict, CorruptStore, StoreError
from store.guard import guarded, guarded_iter, translate
from store.lock import DirectoryLock
from store.records import (
    BlockRecord,
    Checkpoint,
    CheckpointInfo,
    ComputeRoots,
    Entry,
    HistoryPage,
    StoredBlock,
)
from store.staging import StagedBatch

DB_DIR = "leveldb"
DEFAULT_CHECKPOINT_INTERVAL = meta.DEFAULT_CHECKPOINT_INTERVAL
DEFAULT_KEEP = 10

__all__ = [
    "DB_DIR", "DEFAULT_CHECKPOINT_INTERVAL", "DEFAULT_KEEP", "Restored", "StagedBatch", "Store",
]


class Store:
    """The node database. Not thread-safe: one executor owns it."""

    def __init__(
        self,
        directory: str,
        *,
        checkpoint_interval: int | None = None,
        keep: int = DEFAULT_KEEP,
        sync_blocks: bool = False,
        create: bool = True,
        read_only: bool = False,
        lock_fd: int | None = None,
    ) -> None:
        """Open (or create) the store in `directory`.

        `checkpoint_interval` is fixed when the store is created (default 100); None on a
        later open means "whatever is stored", and a different value is an error (the
        stored checkpoints would no longer sit at multiples of it). `keep` (>= 1) is a
        run-time setting: the newest `keep` checkpoints are kept. `sync_blocks` makes
        every block batch fsync; checkpoint batches always do. `create=False` refuses a
        directory that is not a store yet, before anything is created in it.

        `read_only=True` (implies `create=False`) opens for the read-only commands (`state`,
        `history`, `verify`, `prove`, `diff`) and never writes a row: nothing is pruned
        (every stored checkpoint is readable, `keep` is ignored), a missing head
        checkpoint is only reported (`needs_checkpoint()`), and `append_block`,
        `write_checkpoint` and `compact` raise StoreError. A directory that is not a store
        is refused with one line and left untouched (no lock file). LevelDB itself still
        rotates its own log and manifest files inside `leveldb/` on every open (it has no
        read-only mode); the stored data stays the same.

        `lock_fd`: the directory's lock file, already locked by the parent process that
        handed the store over (`detach`) to this one, the pipelined executor's writer.
        """
        if checkpoint_interval is not None:
            K.check_u64("checkpoint interval", checkpoint_interval, 1)
        if type(keep) is not int or keep < 1:
            raise StoreError(f"keep {keep!r} must be at least 1")
        self.directory = directory
        self.keep = keep
        self.sync_blocks = sync_blocks
        self.read_only = read_only
        create = create and not read_only
        db_path = os.path.join(directory, DB_DIR)
        if not create:
            meta.check_is_store(directory, db_path)
        elif not os.path.isdir(directory):
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{directory}: cannot create ({exc.strerror})") from None
        self._lock = DirectoryLock(directory, create_file=not read_only, inherited_fd=lock_fd)
        self._db: Any = None
        self._db_path = db_path
        try:
            self._open_db(create)
            self._open_checked(checkpoint_interval, create)
        except (leveldb.Error, RuntimeError, OSError) as exc:
            self._close(flush=False)
            raise translate(exc) from None
        except BaseException:
            self._close(flush=False)
            raise

    def _open_db(self, create: bool) -> None:
        try:
            self._db = leveldb.DB(self._db_path, create_if_missing=create, **leveldb.DB_OPTIONS)
        except leveldb.CorruptionError as exc:
            raise CorruptStore(f"{self.directory}: LevelDB corruption ({exc})") from None
        except leveldb.Error as exc:
            raise StoreError(f"{self.directory}: cannot open LevelDB ({exc})") from None

    def _open_checked(self, checkpoint_interval: int | None, create: bool) -> None:
        self.checkpoint_interval = meta.open_meta(
            self._db, self.directory, checkpoint_interval, create
        )
        self.head_height, self.head_hash, self._next_fill_seq = codec.decode_head(
            self._db.get(K.HEAD_KEY)
        )
        self.base = codec.decode_base(self._db.get(K.BASE_KEY))
        self.chain_id = codec.decode_chain_id(self._db.get(K.CHAIN_ID_KEY))
        if self.base is not None and self.base.height > self.head_height:
            raise CorruptStore(f"base {self.base.height} is above the head {self.head_height}")
        self._checkpoint_heights = checkpoints.load_checkpoint_heights(self._db)
        if self._checkpoint_heights and self._checkpoint_heights[-1] > self.head_height:
            raise CorruptStore(
                f"checkpoint {self._checkpoint_heights[-1]} is above the head {self.head_height}"
            )
        self._tip = (self.head_height, self.head_hash, self._next_fill_seq)  # staged head
        self._latest: CheckpointInfo | None = None
        self._last_batch: tuple[list[blocklog.Row], int] = ([], 0)  # rows, checkpoint bytes
        if self._checkpoint_heights:
            self._latest = self.checkpoint(self._checkpoint_heights[-1])
        if not self.read_only:
            self._prune()  # finishes a pruning that a crash or a smaller `keep` left to do

    # -- lifecycle ----------------------------------------------------------------------

    def detach(self) -> int:
        """Close LevelDB, keep the directory locked (for a writer process that opens the
        store with `lock_fd`); until `reattach`, reads and writes raise StoreError."""
        self._check_writable()
        if self._db is not None:
            self._db.close()
            self._db = None
        return self._lock.fd

    def reattach(self) -> None:
        """Reopen LevelDB after `detach`, re-reading what the writer process wrote."""
        if self._db is not None or not self._lock.held:
            raise StoreError(f"{self.directory}: not detached")
        try:
            self._open_db(create=False)
            self._open_checked(self.checkpoint_interval, create=False)
        except (leveldb.Error, RuntimeError, OSError) as exc:
            raise translate(exc) from None

    def close(self) -> None:
        """Close; a writable store first flushes LevelDB's memtable (`leveldb.flush_memtable`,
        O(memtable)): the next open then replays no log."""
        self._close(flush=not self.read_only)

    def _close(self, flush: bool) -> None:
        if self._db is not None:
            if flush:
                leveldb.flush_memtable(self._db)
            self._db.close()
            self._db = None
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @guarded
    def compact(self) -> None:
        """Compact the whole database (after a bulk import: reopening then replays no log)."""
        self._check_writable()
        self._db.compact_range()

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.directory}: opened read-only, nothing can be written")

    @property
    def lock_fd(self) -> int:
        """The descriptor holding the directory's lock (for a writer process to inherit)."""
        return self._lock.fd

    @property
    def closed(self) -> bool:
        return self._db is None

    # -- blocks -------------------------------------------------------------------------

    @guarded
    def block(self, height: int) -> StoredBlock | None:
        if not 1 <= height <= self.head_height or (
            self.base is not None and height <= self.base.height
        ):
            return None  # none stored (a store restored from a snapshot starts above its base)
        return blocklog.read_block(self._db, height)

    def block_hash(self, height: int) -> bytes | None:
        """The hash of block `height` (at the base of a restored store: the base's)."""
        if self.base is not None and height == self.base.height:
            return self.base.block_hash
        block = self.block(height)
        return None if block is None else block.block_hash

    @guarded
    def append_block(self, record: BlockRecord, checkpoint: Checkpoint | None = None) -> bool:
        """Store one applied block (and, at checkpoint heights, its checkpoint) atomically.

        Returns False and writes nothing when the block is already stored with the same
        hash (a replay); raises BlockConflict for a different block at a stored height or
        for a gap. Acknowledged (returned) means: in LevelDB's log, so it survives the
        process being killed; it survives power loss only if the batch was synced
        (`sync_blocks`, or a checkpoint in it).
        """
        self._check_writable()
        height = record.height
        K.check_u64("height", height, 1)
        if height <= self.head_height:
            stored = self.block_hash(height)
            if stored != record.block_hash:
                raise BlockConflict(
                    f"block {height} differs from the stored one (hash {stored!r:.20})"
                    if stored is None
                    else f"block {height} differs from the stored one "
                    f"({record.block_hash.hex()[:16]} vs {stored.hex()[:16]})"
                )
            if checkpoint is not None and self.needs_checkpoint():
                self.write_checkpoint(checkpoint)
            return False
        if height != self.head_height + 1:
            raise BlockConflict(f"block {height} leaves a gap: the head is {self.head_height}")
        K.check_u64("time", record.time)
        if checkpoint is not None and checkpoint.height != height:
            raise StoreError(f"checkpoint {checkpoint.height} given with block {height}")
        self._write_blocks((record,), checkpoint)
        return True

    @guarded
    def stage_blocks(
        self, records: Sequence[BlockRecord], checkpoint: Checkpoint | None = None
    ) -> StagedBatch:
        """ONE atomic batch of consecutive blocks above the last staged one (a kill leaves
        all or none), and the last one's checkpoint if given (then synced), built but not
        written (`commit`, in the order staged; a checkpoint only once the batches before
        it are committed: it reads their rows). BlockConflict for a gap. O(rows)."""
        self._check_writable()
        staged = staging.stage_batch(self._db, records, checkpoint, self._tip, self._latest,
                                     self.checkpoint_interval, self.sync_blocks)
        self._tip = staged.tip
        return staged

    @guarded
    def commit(self, staged: StagedBatch) -> None:
        """Write a staged batch (then prune after a checkpoint). LevelDB's write runs
        without the GIL: a thread may commit while the owner stages the next batch."""
        staged.batch.write()
        self.head_height, self.head_hash, self._next_fill_seq = staged.tip
        self._last_batch = (staged.rows, staged.checkpoint_bytes)
        if staged.checkpoint is not None:
            self._checkpoint_written(staged.checkpoint)

    @property
    def last_batch_bytes(self) -> int:
        """Key + value bytes of the last block/checkpoint batch (computed when asked)."""
        return staging.rows_bytes(self._last_batch[0]) + self._last_batch[1]

    def _write_blocks(self, records: Sequence[BlockRecord], checkpoint: Checkpoint | None) -> None:
        staged = self.stage_blocks(records, checkpoint)
        try:
            self.commit(staged)
        except BaseException:
            self._tip = (self.head_height, self.head_hash, self._next_fill_seq)
            raise

    @guarded
    def blocks_after(self, height: int) -> Iterator[StoredBlock]:
        """The stored blocks above `height` up to the head, in order, checking the chain."""
        return guarded_iter(self._blocks_after(height))

    def _blocks_after(self, height: int) -> Iterator[StoredBlock]:
        K.check_u64("height", height)
        prev_hash = codec.ZERO_HASH
        base = self.base
        if base is not None and height <= base.height:
            # A store restored from a snapshot holds no block at or below its base.
            height, prev_hash = base.height, base.block_hash
        elif height > 0:
            prev = self.block_hash(height)
            if prev is None:
                raise StoreError(f"no block {height}: the head is {self.head_height}")
            prev_hash = prev
        yield from blocklog.chained_blocks(self._db, height, prev_hash, self.head_height)

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint_heights(self) -> list[int]:
        """The kept checkpoint heights, oldest first."""
        return list(self._checkpoint_heights)

    def latest_checkpoint(self) -> CheckpointInfo | None:
        return self._latest

    @guarded
    def checkpoint(self, height: int) -> CheckpointInfo | None:
        return checkpoints.read_checkpoint(self._db, height)

    def needs_checkpoint(self) -> bool:
        """Whether the head is a checkpoint height without its checkpoint.

        Only when the caller writes checkpoints apart from their block (`write_checkpoint`)
        and was killed in between; after replaying to the head, write it then.
        """
        head = self.head_height
        return (
            head > 0
            and head % self.checkpoint_interval == 0
            and (not self._checkpoint_heights or self._checkpoint_heights[-1] != head)
        )

    @guarded
    def write_checkpoint(self, checkpoint: Checkpoint, chain_id: str | None = None) -> None:
        """Checkpoint the state at the head, in one synced batch (then prune).

        `chain_id` (network mode, with the genesis checkpoint 0) goes into the meta row
        `00 "chain_id"` in the same batch.
        """
        self._check_writable()
        if checkpoint.height != self.head_height:
            raise StoreError(
                f"checkpoint {checkpoint.height} is not at the head {self.head_height}"
            )
        with self._db.write_batch(transaction=True, sync=True) as batch:
            if chain_id is not None:
                batch.put(K.CHAIN_ID_KEY, codec.frame([chain_id.encode()]))
            info, info_bytes = checkpoints.stage_checkpoint(
                self._db, batch, checkpoint, self.head_hash, self._latest,
                self.checkpoint_interval,
            )
        if chain_id is not None:
            self.chain_id = chain_id
        self._last_batch = ([], info_bytes)
        self._checkpoint_written(info)

    def _checkpoint_written(self, info: CheckpointInfo) -> None:
        self._checkpoint_heights.append(info.height)
        self._latest = info
        self._prune()

    def _prune(self) -> None:
        """Drop checkpoints beyond `keep` (see `checkpoints.prune`)."""
        self._checkpoint_heights = checkpoints.prune(self._db, self._checkpoint_heights, self.keep)

    # -- state --------------------------------------------------------------------------

    @guarded
    def state_entries_at(
        self, height: int | None = None, scanned: reopen.Scanned | None = None
    ) -> tuple[CheckpointInfo | None, list[Entry]]:
        """The canonical entries of the state at a kept checkpoint (default the latest);
        `scanned` sees the latest's as they are read (`checkpoints.latest_entries`)."""
        latest = self._latest
        if height is None or (latest is not None and height == latest.height):
            entries = [] if latest is None else checkpoints.latest_entries(self._db, scanned)
            return latest, entries
        if height == 0:
            return None, []
        if height not in self._checkpoint_heights:
            kept = ", ".join(str(h) for h in self._checkpoint_heights) or "none"
            raise StoreError(f"height {height} is not a kept checkpoint (kept: {kept})")
        return self.checkpoint(height), checkpoints.versioned_entries(self._db, height)

    @guarded
    def restore(
        self, height: int | None = None, compute_roots: ComputeRoots | None = None
    ) -> Restored:
        """Rebuild the state at a kept checkpoint (default the latest); with `compute_roots`,
        raise StateDiverged, naming the namespace (and the key when the two stored copies
        disagree), if the roots recomputed over its entries differ from the stored ones."""
        return reopen.restore(self._db, self._latest, self.state_entries_at, height, compute_roots)

    # -- verification -------------------------------------------------------------------

    @guarded
    def verify(
        self, height: int | None = None, compute_roots: ComputeRoots | None = None
    ) -> CheckpointInfo | None:
        """Restore a kept checkpoint and check its roots (see `restore`)."""
        if compute_roots is None:
            raise StoreError("verify needs a root function")
        return self.restore(height, compute_roots).checkpoint

    @guarded
    def verify_all(self, compute_roots: ComputeRoots) -> None:
        """Check everything: every kept checkpoint's roots, the latest copy against the
        versions, the block chain, and every history row. Raises CorruptStore."""
        for height in self._checkpoint_heights:
            self.restore(height, compute_roots)
        if self._latest is not None:
            audit.check_latest_copy(self._db, self._latest)
        for _ in self.blocks_after(0):
            pass
        audit.verify_history(self._db, self.head_height, self._next_fill_seq)

    # -- history ------------------------------------------------------------------------

    @guarded
    def order_history(
        self, order_id: int, limit: int | None = None, after: str | None = None
    ) -> HistoryPage:
        """One order (as `orders`, one item) and its fills; paged like `user_history`."""
        return history.order_history(self._db, order_id, limit, after)

    @guarded
    def user_history(
        self, user: str, limit: int | None = None, after: str | None = None
    ) -> HistoryPage:
        """A user's fills (as maker or taker) and orders, each in execution order; with `limit`,
        at most `limit` of each and a cursor for the rest (None at the end)."""
        try:
            user_raw = codec.user_bytes(normalize_address(user))
        except CoreError as exc:
            raise StoreError(str(exc)) from None
        return history.user_history(self._db, user_raw, limit, after)
