"""`Store`: one LevelDB database per node directory (spec/store.md).

Per block, one atomic batch: the block, its receipts, its history rows and the head.
Every `checkpoint_interval` blocks, one atomic synced batch: the state entries that changed
since the previous checkpoint (as new versions, plus a "latest" copy), the roots and the
checkpoint's metadata; then, in a batch of its own, pruning of checkpoints beyond `keep`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import plyvel

from state_machine import (
    CoreError,
    CoreStateMachine,
    describe_key,
    describe_namespace,
    machine_from_entries,
    namespace_of,
    normalize_address,
)
from store import codec
from store import keys as K
from store.errors import BlockConflict, CorruptStore, InvalidCursor, StateDiverged, StoreError
from store.lock import DirectoryLock
from store.records import (
    BlockRecord,
    Checkpoint,
    CheckpointInfo,
    ComputeRoots,
    Entry,
    FillRecord,
    HistoryPage,
    OrderRecord,
    Roots,
    StoredBlock,
)

DB_DIR = "leveldb"
DEFAULT_CHECKPOINT_INTERVAL = 100
DEFAULT_KEEP = 10
_U64 = K.U64_MAX


@dataclass(frozen=True, slots=True)
class Restored:
    """The state at a checkpoint (or the empty state at height 0 when there is none)."""

    height: int
    checkpoint: CheckpointInfo | None
    entries: list[Entry]
    machine: CoreStateMachine


def _check_u64(what: str, value: int, low: int = 0) -> None:
    if type(value) is not int or not low <= value <= _U64:
        raise StoreError(f"{what} {value!r} out of range [{low}, 2^64-1]")


P = ParamSpec("P")
R = TypeVar("R")


def _translate(exc: Exception) -> StoreError:
    if isinstance(exc, plyvel.CorruptionError):
        return CorruptStore(f"LevelDB corruption: {exc}")
    return StoreError(f"LevelDB error: {exc}")


def _guarded(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Refuse a closed store and turn LevelDB's own errors into `StoreError`s."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._db is None:
            raise StoreError(f"{self.directory}: the store is closed")
        try:
            return method(self, *args, **kwargs)
        except (plyvel.Error, RuntimeError, OSError) as exc:
            raise _translate(exc) from None

    return wrapper


def _guarded_iter(items: Iterator[R]) -> Iterator[R]:
    try:
        yield from items
    except (plyvel.Error, RuntimeError, OSError) as exc:
        raise _translate(exc) from None


def encode_cursor(fill_after: int, order_after: int) -> str:
    return (fill_after.to_bytes(8, "big") + order_after.to_bytes(8, "big")).hex()


def decode_cursor(cursor: str | None) -> tuple[int, int]:
    if cursor is None:
        return 0, 0
    try:
        raw = bytes.fromhex(cursor)
    except ValueError:
        raw = b""
    if len(raw) != 16 or cursor != raw.hex():
        raise InvalidCursor(f"bad history cursor {cursor!r}")
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


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
    ) -> None:
        """Open (or create) the store in `directory`.

        `checkpoint_interval` is fixed when the store is created (default 100); None on a
        later open means "whatever is stored", and a different value is an error (the
        stored checkpoints would no longer sit at multiples of it). `keep` (>= 1) is a
        run-time setting: the newest `keep` checkpoints are kept. `sync_blocks` makes
        every block batch fsync; checkpoint batches always do.
        """
        if checkpoint_interval is not None:
            _check_u64("checkpoint interval", checkpoint_interval, 1)
        if type(keep) is not int or keep < 1:
            raise StoreError(f"keep {keep!r} must be at least 1")
        self.directory = directory
        self.keep = keep
        self.sync_blocks = sync_blocks
        if not os.path.isdir(directory):
            if not create:
                raise StoreError(f"{directory}: no such store")
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{directory}: cannot create ({exc.strerror})") from None
        self._lock = DirectoryLock(directory)
        self._db: Any = None
        try:
            db_path = os.path.join(directory, DB_DIR)
            if not create and not os.path.isdir(db_path):
                raise StoreError(f"{directory}: no such store")
            if not create and not os.path.exists(os.path.join(db_path, "CURRENT")):
                # LevelDB writes CURRENT last when it creates a database: a run killed
                # before that left a directory but no store.
                raise StoreError(f"{directory}: no store yet (its first run stopped early)")
            try:
                self._db = plyvel.DB(db_path, create_if_missing=create)
            except plyvel.CorruptionError as exc:
                raise CorruptStore(f"{directory}: LevelDB corruption ({exc})") from None
            except plyvel.Error as exc:
                raise StoreError(f"{directory}: cannot open LevelDB ({exc})") from None
            self._open_checked(checkpoint_interval, create)
        except (plyvel.Error, RuntimeError, OSError) as exc:
            self.close()
            raise _translate(exc) from None
        except BaseException:
            self.close()
            raise

    def _open_checked(self, checkpoint_interval: int | None, create: bool) -> None:
        self.checkpoint_interval = self._open_meta(checkpoint_interval, create)
        self.head_height, self.head_hash, self._next_fill_seq = codec.decode_head(
            self._db.get(K.HEAD_KEY)
        )
        self.base = codec.decode_base(self._db.get(K.BASE_KEY))
        self.chain_id = codec.decode_chain_id(self._db.get(K.CHAIN_ID_KEY))
        if self.base is not None and self.base.height > self.head_height:
            raise CorruptStore(f"base {self.base.height} is above the head {self.head_height}")
        self._checkpoint_heights = self._load_checkpoint_heights()
        if self._checkpoint_heights and self._checkpoint_heights[-1] > self.head_height:
            raise CorruptStore(
                f"checkpoint {self._checkpoint_heights[-1]} is above the head {self.head_height}"
            )
        self._latest: CheckpointInfo | None = None
        self.last_batch_bytes = 0  # key + value bytes of the last block/checkpoint batch
        self._checkpoint_bytes = 0
        if self._checkpoint_heights:
            self._latest = self.checkpoint(self._checkpoint_heights[-1])
        self._prune()  # finishes a pruning that a crash or a smaller `keep` left to do

    # -- lifecycle ----------------------------------------------------------------------

    def _open_meta(self, interval: int | None, create: bool) -> int:
        db = self._db
        stored_format = db.get(K.FORMAT_KEY)
        if stored_format is None:
            if next(db.iterator(include_value=False), None) is not None:
                raise CorruptStore(f"{self.directory}: not a coreledger store (no format key)")
            if not create:
                # A first run killed between LevelDB's creation and this batch: writing
                # the default interval here would refuse the operator's own on resume.
                raise StoreError(f"{self.directory}: no store yet (its first run stopped early)")
            interval = DEFAULT_CHECKPOINT_INTERVAL if interval is None else interval
            with db.write_batch(transaction=True, sync=True) as batch:
                batch.put(K.INTERVAL_KEY, codec.frame([interval]))
                batch.put(K.HEAD_KEY, codec.encode_head(0, codec.ZERO_HASH, 1))
                batch.put(K.FORMAT_KEY, codec.frame([K.FORMAT_VERSION]))
            return interval
        (version,) = codec.unframe("format version", stored_format, 1)
        if version != K.FORMAT_VERSION:
            raise StoreError(
                f"{self.directory}: store format {version!r}, this version reads {K.FORMAT_VERSION}"
            )
        (stored,) = codec.unframe("checkpoint interval", db.get(K.INTERVAL_KEY), 1)
        stored_interval = codec.uint("checkpoint interval", stored, 1)
        if interval is not None and interval != stored_interval:
            raise StoreError(
                f"{self.directory}: created with checkpoint interval {stored_interval}, "
                f"not {interval}"
            )
        return stored_interval

    def _load_checkpoint_heights(self) -> list[int]:
        heights = []
        for key in self._db.iterator(prefix=K.CHECKPOINT, include_value=False):
            if len(key) != 9:
                raise CorruptStore(f"bad checkpoint key {key.hex()}")
            heights.append(int.from_bytes(key[1:], "big"))
        return heights

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_guarded
    def compact(self) -> None:
        """Compact the whole database (after a bulk import: reopening then replays no log)."""
        self._db.compact_range()

    @property
    def closed(self) -> bool:
        return self._db is None

    # -- blocks -------------------------------------------------------------------------

    @_guarded
    def block(self, height: int) -> StoredBlock | None:
        if not 1 <= height <= self.head_height or (
            self.base is not None and height <= self.base.height
        ):
            return None  # none stored (a store restored from a snapshot starts above its base)
        return codec.decode_block(height, self._db.get(K.block_key(height)))

    def block_hash(self, height: int) -> bytes | None:
        """The hash of block `height` (at the base of a restored store: the base's)."""
        if self.base is not None and height == self.base.height:
            return self.base.block_hash
        block = self.block(height)
        return None if block is None else block.block_hash

    @_guarded
    def append_block(self, record: BlockRecord, checkpoint: Checkpoint | None = None) -> bool:
        """Store one applied block (and, at checkpoint heights, its checkpoint) atomically.

        Returns False and writes nothing when the block is already stored with the same
        hash (a replay); raises BlockConflict for a different block at a stored height or
        for a gap. Acknowledged (returned) means: in LevelDB's log, so it survives the
        process being killed; it survives power loss only if the batch was synced
        (`sync_blocks`, or a checkpoint in it).
        """
        height = record.height
        _check_u64("height", height, 1)
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
        _check_u64("time", record.time)
        if checkpoint is not None and checkpoint.height != height:
            raise StoreError(f"checkpoint {checkpoint.height} given with block {height}")
        db = self._db
        seq = self._next_fill_seq
        sync = self.sync_blocks or checkpoint is not None
        # Every row of the block first, then one C-level loop of puts: the per-put Python
        # overhead (a closure call, key helpers, address decoding per row) was a third of
        # the cost of persisting a busy block. Addresses are decoded once per block.
        user_raw: dict[str, bytes] = {}
        for placed in record.placed:
            if placed.user not in user_raw:
                user_raw[placed.user] = codec.user_bytes(placed.user)
        for fill in record.fills:
            for user in (fill.maker, fill.taker):
                if user not in user_raw:
                    user_raw[user] = codec.user_bytes(user)
        rows: list[tuple[bytes, bytes]] = [
            (
                K.block_key(height),
                codec.encode_block(
                    record.time,
                    record.block_hash,
                    self.head_hash,
                    record.block_bytes,
                    record.receipts,
                    record.auth,
                ),
            )
        ]
        add = rows.append
        order_prefix, user_order_prefix = K.ORDER, K.USER_ORDER
        for placed in record.placed:
            order_id = placed.order_id
            _check_u64("order id", order_id, 1)
            id_bytes = order_id.to_bytes(8, "big")
            add((order_prefix + id_bytes, codec.encode_order(placed, height)))
            add((user_order_prefix + user_raw[placed.user] + id_bytes, b""))
        fill_prefix, order_fill_prefix, user_fill_prefix = K.FILL, K.ORDER_FILL, K.USER_FILL
        for fill in record.fills:
            seq_bytes = seq.to_bytes(8, "big")
            size = fill.size.to_bytes(8, "big")
            add((fill_prefix + seq_bytes, codec.encode_fill(fill, height)))
            add((order_fill_prefix + fill.maker_order_id.to_bytes(8, "big") + seq_bytes, size))
            add((order_fill_prefix + fill.taker_order_id.to_bytes(8, "big") + seq_bytes, size))
            add((user_fill_prefix + user_raw[fill.maker] + seq_bytes, b""))
            add((user_fill_prefix + user_raw[fill.taker] + seq_bytes, b""))
            seq += 1
        for cancellation in record.cancellations:
            add((K.cancel_key(cancellation.order_id), codec.encode_cancel(cancellation, height)))
        add((K.HEAD_KEY, codec.encode_head(height, record.block_hash, seq)))
        written = sum(len(key) + len(value) for key, value in rows)
        with db.write_batch(transaction=True, sync=sync) as batch:
            batch_put = batch.put
            for key, value in rows:
                batch_put(key, value)
            info = None
            if checkpoint is not None:
                info = self._stage_checkpoint(batch, checkpoint, record.block_hash)
        self.head_height = height
        self.head_hash = record.block_hash
        self._next_fill_seq = seq
        self.last_batch_bytes = written + (0 if info is None else self._checkpoint_bytes)
        if info is not None:
            self._checkpoint_written(info)
        return True

    @_guarded
    def blocks_after(self, height: int) -> Iterator[StoredBlock]:
        """The stored blocks above `height` up to the head, in order, checking the chain."""
        return _guarded_iter(self._blocks_after(height))

    def _blocks_after(self, height: int) -> Iterator[StoredBlock]:
        _check_u64("height", height)
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
        expected = height + 1
        head = self.head_height
        if expected > head:
            return
        for key, value in self._db.iterator(start=K.block_key(expected), stop=b"\x02"):
            block_height = int.from_bytes(key[1:], "big")
            if block_height != expected or len(key) != 9:
                raise CorruptStore(f"block {expected} is missing (found {key.hex()})")
            block = codec.decode_block(block_height, value)
            if block.prev_hash != prev_hash:
                raise CorruptStore(f"block {block_height} does not chain to block {height}")
            yield block
            prev_hash = block.block_hash
            height = block_height
            expected += 1
            if block_height == head:
                return
        raise CorruptStore(f"block {expected} is missing: the head is {head}")

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint_heights(self) -> list[int]:
        """The kept checkpoint heights, oldest first."""
        return list(self._checkpoint_heights)

    def latest_checkpoint(self) -> CheckpointInfo | None:
        return self._latest

    @_guarded
    def checkpoint(self, height: int) -> CheckpointInfo | None:
        value = self._db.get(K.checkpoint_key(height))
        return None if value is None else codec.decode_checkpoint(height, value)

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

    @_guarded
    def write_checkpoint(self, checkpoint: Checkpoint, chain_id: str | None = None) -> None:
        """Checkpoint the state at the head, in one synced batch (then prune).

        `chain_id` (network mode, with the genesis checkpoint 0) goes into the meta row
        `00 "chain_id"` in the same batch.
        """
        if checkpoint.height != self.head_height:
            raise StoreError(
                f"checkpoint {checkpoint.height} is not at the head {self.head_height}"
            )
        with self._db.write_batch(transaction=True, sync=True) as batch:
            if chain_id is not None:
                batch.put(K.CHAIN_ID_KEY, codec.frame([chain_id.encode()]))
            info = self._stage_checkpoint(batch, checkpoint, self.head_hash)
        if chain_id is not None:
            self.chain_id = chain_id
        self.last_batch_bytes = self._checkpoint_bytes
        self._checkpoint_written(info)

    def _stage_checkpoint(
        self, batch: Any, checkpoint: Checkpoint, block_hash: bytes
    ) -> CheckpointInfo:
        height = checkpoint.height
        if height % self.checkpoint_interval:
            raise StoreError(
                f"height {height} is not a multiple of the checkpoint interval "
                f"{self.checkpoint_interval}"
            )
        latest = self._latest
        if latest is not None and height <= latest.height:
            raise StoreError(f"checkpoint {height} is not above checkpoint {latest.height}")
        count = 0 if latest is None else latest.entry_count
        written = 0
        nbytes = 0
        get = self._db.get
        put = batch.put
        delete = batch.delete
        suffix = height.to_bytes(8, "big")
        log_prefix = K.CHECKPOINT_CHANGES + suffix
        previous = b""
        for key, value in checkpoint.changes:
            if key <= previous:
                raise StoreError("checkpoint changes must be sorted by key, one per key")
            previous = key
            latest_key = K.STATE_LATEST + key
            old = get(latest_key)
            if old == value:
                continue  # touched but unchanged: nothing to write
            if value is None:
                delete(latest_key)
                put(K.STATE_VERSION + key + suffix, codec.TOMBSTONE)
                count -= 1
            else:
                put(latest_key, value)
                put(K.STATE_VERSION + key + suffix, codec.PRESENT + value)
                if old is None:
                    count += 1
            put(log_prefix + key, b"")
            written += 1
            # latest (or its deletion), version and change-log rows: 3 keys, 2 values,
            # 2 prefixes and heights, 1 tag, 1 prefix.
            nbytes += 3 * len(key) + 2 * len(value or b"") + 20
        info = CheckpointInfo(height, block_hash, checkpoint.roots, count, written)
        meta = codec.encode_checkpoint(info)
        put(K.checkpoint_key(height), meta)
        self._checkpoint_bytes = nbytes + 9 + len(meta)
        return info

    def _checkpoint_written(self, info: CheckpointInfo) -> None:
        self._checkpoint_heights.append(info.height)
        self._latest = info
        self._prune()

    def _prune(self) -> None:
        """Drop checkpoints beyond `keep` and the versions no kept checkpoint reads.

        For each state key a dropped checkpoint changed, of its versions at or below the
        oldest kept checkpoint only the newest is still read (by that checkpoint), and not
        even that one if it is a tombstone. One atomic batch: a crash leaves it to redo,
        which gives the same result (it is idempotent).
        """
        heights = self._checkpoint_heights
        if len(heights) <= self.keep:
            return
        dropped = heights[: -self.keep]
        oldest_kept = heights[-self.keep]
        db = self._db
        touched: set[bytes] = set()
        with db.write_batch(transaction=True, sync=True) as batch:
            for height in dropped:
                prefix = K.CHECKPOINT_CHANGES + height.to_bytes(8, "big")
                for key in db.iterator(prefix=prefix, include_value=False):
                    touched.add(key[9:])
                    batch.delete(key)
                batch.delete(K.checkpoint_key(height))
            # One iterator, sought per key in key order: creating an iterator per key
            # costs ~10 us, more than the seek.
            versions_of = db.iterator(prefix=K.STATE_VERSION)
            for state_key in sorted(touched):
                start = K.STATE_VERSION + state_key
                versions_of.seek(start)
                newest: tuple[bytes, bytes] | None = None
                for version_key, value in versions_of:
                    if len(version_key) != len(start) + 8 or not version_key.startswith(start):
                        break
                    if int.from_bytes(version_key[-8:], "big") > oldest_kept:
                        break
                    if newest is not None:
                        batch.delete(newest[0])
                    newest = (version_key, value)
                if newest is not None and newest[1] == codec.TOMBSTONE:
                    batch.delete(newest[0])
            versions_of.close()
        self._checkpoint_heights = heights[-self.keep :]

    # -- state --------------------------------------------------------------------------

    def _latest_entries(self) -> list[Entry]:
        return [(key[1:], value) for key, value in self._db.iterator(prefix=K.STATE_LATEST)]

    def _versioned_entries(self, height: int) -> list[Entry]:
        """The state at a kept checkpoint: per key, the newest version at or below it."""
        entries: list[Entry] = []
        current = b""
        chosen: bytes | None = None
        for key, value in self._db.iterator(prefix=K.STATE_VERSION):
            state_key = key[1:-8]
            if state_key != current:
                if chosen is not None:
                    entries.append((current, chosen))
                current = state_key
                chosen = None
            if int.from_bytes(key[-8:], "big") <= height:
                if value == codec.TOMBSTONE:
                    chosen = None
                elif value[:1] == codec.PRESENT:
                    chosen = value[1:]
                else:
                    raise CorruptStore(f"{describe_key(state_key)}: bad version tag")
        if chosen is not None:
            entries.append((current, chosen))
        return entries

    @_guarded
    def state_entries_at(
        self, height: int | None = None
    ) -> tuple[CheckpointInfo | None, list[Entry]]:
        """The canonical entries of the state at a kept checkpoint (default the latest)."""
        latest = self._latest
        if height is None or (latest is not None and height == latest.height):
            return latest, ([] if latest is None else self._latest_entries())
        if height == 0:
            return None, []
        if height not in self._checkpoint_heights:
            kept = ", ".join(str(h) for h in self._checkpoint_heights) or "none"
            raise StoreError(f"height {height} is not a kept checkpoint (kept: {kept})")
        return self.checkpoint(height), self._versioned_entries(height)

    @_guarded
    def restore(
        self, height: int | None = None, compute_roots: ComputeRoots | None = None
    ) -> Restored:
        """Rebuild the state at a kept checkpoint (default the latest).

        With `compute_roots`, recompute the roots over the restored entries and raise
        StateDiverged, naming the namespace (and the key when the two stored copies
        disagree), if they differ from the stored ones.
        """
        info, entries = self.state_entries_at(height)
        if info is None:
            return Restored(0, None, [], CoreStateMachine())
        if len(entries) != info.entry_count:
            raise CorruptStore(
                f"checkpoint {info.height}: {len(entries)} state entries, "
                f"{info.entry_count} recorded"
            )
        try:
            # With roots to check, a value that hashes to the stored root is the committed,
            # canonical one: re-encoding a million values to prove it again is wasted.
            machine = machine_from_entries(entries, check_canonical=compute_roots is None)
        except CoreError as exc:
            raise CorruptStore(f"checkpoint {info.height}: {exc}") from None
        if compute_roots is not None:
            self._check_roots(info, entries, compute_roots(entries))
        return Restored(info.height, info, entries, machine)

    def _check_roots(self, info: CheckpointInfo, entries: list[Entry], roots: Roots) -> None:
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
        key = self._first_copy_difference(info.height, entries, set(diverged))
        if key is not None:
            message += f"; key {describe_key(key)} differs between the stored copies"
        raise StateDiverged(message)

    def _first_copy_difference(
        self, height: int, entries: list[Entry], namespaces: set[bytes]
    ) -> bytes | None:
        """The first key, in the diverged namespaces, where the other stored copy differs."""
        if self._latest is None or height != self._latest.height:
            return None  # an older checkpoint has one copy only: its versions
        other = self._versioned_entries(height)
        mine = dict(entries)
        theirs = dict(other)
        for key in sorted(set(mine) | set(theirs)):
            if namespaces and namespace_of(key) not in namespaces:
                continue
            if mine.get(key) != theirs.get(key):
                return key
        return None

    # -- verification -------------------------------------------------------------------

    @_guarded
    def verify(
        self, height: int | None = None, compute_roots: ComputeRoots | None = None
    ) -> CheckpointInfo | None:
        """Restore a kept checkpoint and check its roots (see `restore`)."""
        if compute_roots is None:
            raise StoreError("verify needs a root function")
        return self.restore(height, compute_roots).checkpoint

    @_guarded
    def verify_all(self, compute_roots: ComputeRoots) -> None:
        """Check everything: every kept checkpoint's roots, the latest copy against the
        versions, the block chain, and every history row. Raises CorruptStore."""
        for height in self._checkpoint_heights:
            self.restore(height, compute_roots)
        latest = self._latest
        if latest is not None:
            versioned = self._versioned_entries(latest.height)
            copy = self._latest_entries()
            if versioned != copy:
                mine = dict(copy)
                theirs = dict(versioned)
                key = next(
                    k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)
                )
                raise StateDiverged(
                    f"checkpoint {latest.height}: key {describe_key(key)} differs between "
                    "the stored copies"
                )
        for _ in self.blocks_after(0):
            pass
        self._verify_history()

    def _verify_history(self) -> None:
        db = self._db
        fills = 0
        for key, value in db.iterator(prefix=K.FILL):
            seq = int.from_bytes(key[1:], "big")
            fills += 1
            if seq != fills:
                raise CorruptStore(f"history fill {fills} is missing")
            fill, height = codec.decode_fill(seq, value)
            if height > self.head_height:
                raise CorruptStore(f"history fill {seq}: height {height} above the head")
            for order_id in (fill.maker_order_id, fill.taker_order_id):
                index = db.get(K.order_fill_key(order_id, seq))
                if index is None or codec.decode_fill_size(order_id, index) != fill.size:
                    raise CorruptStore(f"history of order {order_id}: bad fill index entry")
        if fills + 1 != self._next_fill_seq:
            raise CorruptStore(f"history: {fills} fills, head says {self._next_fill_seq - 1}")
        for key, value in db.iterator(prefix=K.ORDER):
            self._order_record(int.from_bytes(key[1:], "big"), value)
        # Index rows carry no value: any value at all is corruption.
        for prefix in (K.USER_FILL, K.USER_ORDER, K.CHECKPOINT_CHANGES):
            for key, value in db.iterator(prefix=prefix):
                if value:
                    raise CorruptStore(f"index row {key.hex()}: unexpected value")
        for key in db.iterator(prefix=K.USER_FILL, include_value=False):
            fill, _ = codec.decode_fill(int.from_bytes(key[21:], "big"), db.get(K.FILL + key[21:]))
            if key[1:21].hex() not in (fill.maker[2:], fill.taker[2:]):
                raise CorruptStore(f"index row {key.hex()}: not that user's fill")
        for key in db.iterator(prefix=K.USER_ORDER, include_value=False):
            order_id = int.from_bytes(key[21:], "big")
            placed, _ = codec.decode_order(order_id, db.get(K.ORDER + key[21:]))
            if placed.user[2:] != key[1:21].hex():
                raise CorruptStore(f"index row {key.hex()}: not that user's order")

    # -- history ------------------------------------------------------------------------

    def _order_record(self, order_id: int, value: bytes | None) -> OrderRecord:
        placed, height = codec.decode_order(order_id, value)
        db = self._db
        filled = 0
        prefix = K.ORDER_FILL + order_id.to_bytes(8, "big")
        for index in db.iterator(prefix=prefix, include_key=False):
            filled += codec.decode_fill_size(order_id, index)
        cancel = db.get(K.cancel_key(order_id))
        reason = None
        if cancel is not None:
            reason, left, _ = codec.decode_cancel(order_id, cancel)
            status = "canceled"
            if filled + left != placed.size:
                raise CorruptStore(f"history of order {order_id}: fills and remainder disagree")
        elif filled == placed.size:
            status = "filled"
        elif filled < placed.size:
            status = "resting"
        else:
            raise CorruptStore(f"history of order {order_id}: filled more than its size")
        return OrderRecord(placed, height, filled, status, reason)

    def _fill_records(self, seqs: Sequence[int]) -> list[FillRecord]:
        get = self._db.get
        records = []
        for seq in seqs:
            fill, height = codec.decode_fill(seq, get(K.fill_key(seq)))
            records.append(FillRecord(seq, height, fill))
        return records

    @staticmethod
    def _page_size(limit: int | None) -> int | None:
        if limit is None:
            return None
        if type(limit) is not int or limit < 1:
            raise StoreError(f"limit {limit!r} must be at least 1")
        return limit + 1  # one more than asked tells whether anything is left

    def _scan_ids(self, prefix: bytes, after: int, take: int | None) -> list[int]:
        ids: list[int] = []
        start = prefix + (after + 1).to_bytes(8, "big") if after < _U64 else None
        if start is None:
            return ids
        stop = prefix + b"\xff" * 9
        for key in self._db.iterator(start=start, stop=stop, include_value=False):
            ids.append(int.from_bytes(key[-8:], "big"))
            if take is not None and len(ids) == take:
                break
        return ids

    @staticmethod
    def _next_cursor(
        limit: int | None, fills: list[int], orders: list[int], fill_after: int, order_after: int
    ) -> tuple[str | None, list[int], list[int]]:
        if limit is None:
            return None, fills, orders
        more = len(fills) > limit or len(orders) > limit
        fills = fills[:limit]
        orders = orders[:limit]
        if not more:
            return None, fills, orders
        return (
            encode_cursor(
                fills[-1] if fills else fill_after, orders[-1] if orders else order_after
            ),
            fills,
            orders,
        )

    @_guarded
    def order_history(
        self, order_id: int, limit: int | None = None, after: str | None = None
    ) -> HistoryPage:
        """One order (as `orders`, one item) and its fills; paged like `user_history`."""
        _check_u64("order id", order_id, 1)
        fill_after, order_after = decode_cursor(after)
        take = self._page_size(limit)
        value = self._db.get(K.order_key(order_id))
        if value is None:
            return HistoryPage([], [], None)
        fill_seqs = self._scan_ids(K.ORDER_FILL + order_id.to_bytes(8, "big"), fill_after, take)
        order_ids = [order_id] if order_after < order_id else []
        cursor, fill_seqs, order_ids = self._next_cursor(
            limit, fill_seqs, order_ids, fill_after, order_after
        )
        orders = [self._order_record(order_id, value)] if order_ids else []
        return HistoryPage(self._fill_records(fill_seqs), orders, cursor)

    @_guarded
    def user_history(
        self, user: str, limit: int | None = None, after: str | None = None
    ) -> HistoryPage:
        """A user's fills (as maker or taker) and orders, each in execution order.

        With `limit`, at most `limit` of each and a cursor for the rest (None at the end).
        """
        try:
            user_raw = codec.user_bytes(normalize_address(user))
        except CoreError as exc:
            raise StoreError(str(exc)) from None
        fill_after, order_after = decode_cursor(after)
        take = self._page_size(limit)
        fill_seqs = self._scan_ids(K.USER_FILL + user_raw, fill_after, take)
        order_ids = self._scan_ids(K.USER_ORDER + user_raw, order_after, take)
        cursor, fill_seqs, order_ids = self._next_cursor(
            limit, fill_seqs, order_ids, fill_after, order_after
        )
        get = self._db.get
        orders = [
            self._order_record(order_id, get(K.order_key(order_id))) for order_id in order_ids
        ]
        return HistoryPage(self._fill_records(fill_seqs), orders, cursor)
