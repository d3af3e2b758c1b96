"""Restoring a format-1 snapshot: check every chunk before using it, the root at the end.

`Restorer` follows CometBFT's OfferSnapshot / ApplySnapshotChunk protocol (spec/store.md,
"State sync"): the only trusted input is the app hash of the snapshot height (verified
by CometBFT's light client). The offered metadata is checked against the snapshot's
`hash` and its root against the app hash; each chunk against its hash in the metadata
(a bad chunk: refetch it from another peer and reject its sender); after the last chunk
the state rebuilt from all entries must hash to the app hash, or the snapshot is
rejected. Nothing is written before that: the verified entries are held in memory, and
`install_snapshot` writes them into an empty store in one atomic synced batch. A failed
or abandoned attempt therefore leaves nothing in the store, whatever the moment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from merkle import NamespacedCommitment
from state_machine import CoreError, CoreStateMachine, machine_from_entries
from store import codec
from store import keys as K
from store.database import Restored, Store
from store.errors import StoreError
from store.records import CheckpointInfo, Entry, Roots
from store.roots import commitment_of, roots_of
from store.snapshot_format import (
    FORMAT,
    MAX_CHUNK_LIMIT,
    Snapshot,
    SnapshotFormatError,
    SnapshotMetadata,
    chunk_hash,
    decode_chunk,
    entry_size,
)

MAX_CHUNK_BYTES = MAX_CHUNK_LIMIT


class OfferVerdict(enum.Enum):
    """OfferSnapshot results (CometBFT's names)."""

    ACCEPT = "accept"
    ABORT = "abort"  # no state sync at all (this node already has a state)
    REJECT = "reject"  # this snapshot: try another
    REJECT_FORMAT = "reject_format"  # every snapshot of this format


class ChunkVerdict(enum.Enum):
    """ApplySnapshotChunk results (CometBFT's names)."""

    ACCEPT = "accept"
    ABORT = "abort"  # stop state sync (the restored state could not be stored)
    RETRY = "retry"  # apply this chunk again (with `refetch`: fetched anew)
    REJECT_SNAPSHOT = "reject_snapshot"  # this snapshot is bad: try another


class SnapshotRefused(StoreError):
    """An offered snapshot this node will not restore; `verdict` says how to answer."""

    def __init__(self, verdict: OfferVerdict, message: str) -> None:
        super().__init__(message)
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    verdict: ChunkVerdict
    reason: str = ""  # one line for the log when the verdict is not ACCEPT
    refetch: tuple[int, ...] = ()
    reject_senders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RestoredSnapshot:
    """A fully verified snapshot: its entries hash to the trusted app hash."""

    metadata: SnapshotMetadata
    entries: list[Entry]
    machine: CoreStateMachine
    commitment: NamespacedCommitment
    roots: Roots

    def as_restored(self) -> tuple[Restored, NamespacedCommitment]:
        """What `Executor.open(..., trusted=...)` adopts once this is installed."""
        metadata = self.metadata
        info = CheckpointInfo(metadata.height, metadata.block_hash, self.roots,
                              len(self.entries), len(self.entries))
        return Restored(metadata.height, info, self.entries, self.machine), self.commitment


@dataclass(slots=True)
class Restorer:
    """One restore attempt of an offered snapshot. Raises SnapshotRefused on offer."""

    snapshot: Snapshot
    app_hash: bytes
    metadata: SnapshotMetadata = field(init=False)
    restored: RestoredSnapshot | None = field(init=False, default=None)
    _entries: list[Entry] = field(init=False, default_factory=list)
    _next: int = field(init=False, default=0)
    _last_payload: int = field(init=False, default=0)
    _senders: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        offer = self.snapshot
        if offer.format != FORMAT:
            raise SnapshotRefused(OfferVerdict.REJECT_FORMAT, f"snapshot format {offer.format}")
        try:
            metadata = SnapshotMetadata.decode(offer.metadata)
        except SnapshotFormatError as exc:
            raise SnapshotRefused(OfferVerdict.REJECT, f"bad snapshot metadata: {exc}") from None
        if metadata.hash != offer.hash:
            raise SnapshotRefused(OfferVerdict.REJECT, "snapshot hash is not its metadata's")
        if metadata.height != offer.height or metadata.height < 1:
            raise SnapshotRefused(OfferVerdict.REJECT, "snapshot height disagrees with metadata")
        if len(metadata.chunk_hashes) != offer.chunks:
            raise SnapshotRefused(OfferVerdict.REJECT, "snapshot chunk count disagrees")
        if metadata.root != self.app_hash:
            raise SnapshotRefused(
                OfferVerdict.REJECT,
                f"snapshot root {metadata.root.hex()[:16]} is not the app hash "
                f"{self.app_hash.hex()[:16]} of height {metadata.height}",
            )
        self.metadata = metadata

    @property
    def done(self) -> bool:
        return self.restored is not None

    def _reject(self, reason: str, sender: str) -> ChunkOutcome:
        senders = tuple(dict.fromkeys([*self._senders, sender]))
        return ChunkOutcome(ChunkVerdict.REJECT_SNAPSHOT, reason, reject_senders=senders)

    def apply(self, index: int, chunk: bytes, sender: str = "") -> ChunkOutcome:
        """ApplySnapshotChunk. O(chunk) plus, for the last chunk, O(state) to rebuild
        and hash the whole state."""
        hashes = self.metadata.chunk_hashes
        if self.restored is not None or index < self._next:
            return ChunkOutcome(ChunkVerdict.ACCEPT)  # applied already
        if index != self._next:
            return ChunkOutcome(
                ChunkVerdict.RETRY, f"chunk {index} before chunk {self._next}",
                refetch=(self._next,),
            )
        if len(chunk) > MAX_CHUNK_BYTES or chunk_hash(chunk) != hashes[index]:
            return ChunkOutcome(
                ChunkVerdict.RETRY,
                f"chunk {index} from {sender or 'unknown peer'} does not match its hash",
                refetch=(index,),
                reject_senders=(sender,) if sender else (),
            )
        # From here on the bytes are the ones the metadata commits to: a defect is the
        # snapshot's, not the sender's.
        after = self._entries[-1][0] if self._entries else None
        try:
            entries = decode_chunk(chunk, after)
        except SnapshotFormatError as exc:
            return self._reject(f"chunk {index}: {exc}", sender)
        problem = self._cut_problem(index, chunk, entries)
        if problem:
            return self._reject(f"chunk {index}: {problem}", sender)
        self._entries.extend(entries)
        self._senders.append(sender)
        self._next += 1
        if self._next < len(hashes):
            return ChunkOutcome(ChunkVerdict.ACCEPT)
        return self._finish(sender)

    def _cut_problem(self, index: int, chunk: bytes, entries: list[Entry]) -> str:
        """The greedy cut of spec/store.md, so that every server's bytes are the same."""
        limit = self.metadata.chunk_limit
        size = len(chunk)
        if len(entries) > 1 and size > limit:
            return f"{size} bytes of entries, above the chunk limit {limit}"
        if index > 0 and self._last_payload + entry_size(*entries[0]) <= limit:
            return "its first entry fits in the previous chunk (not the greedy cut)"
        self._last_payload = size
        return ""

    def _finish(self, sender: str) -> ChunkOutcome:
        metadata = self.metadata
        entries = self._entries
        if len(entries) != metadata.entry_count:
            return self._reject(
                f"{len(entries)} entries, the metadata says {metadata.entry_count}", sender
            )
        try:
            # A value that hashes to the trusted root is the committed (canonical) one.
            machine = machine_from_entries(entries, check_canonical=False)
        except CoreError as exc:
            return self._reject(f"restored state is inconsistent: {exc}", sender)
        commitment = commitment_of(entries)
        roots = roots_of(commitment)
        if roots.root != self.app_hash:
            return self._reject(
                f"restored state root {roots.root.hex()[:16]} is not the app hash "
                f"{self.app_hash.hex()[:16]}",
                sender,
            )
        self.restored = RestoredSnapshot(metadata, entries, machine, commitment, roots)
        self._entries = []
        return ChunkOutcome(ChunkVerdict.ACCEPT)


def install_snapshot(store: Store, restored: RestoredSnapshot, chain_id: str | None = None
                     ) -> None:
    """Make an empty store start at the snapshot: its checkpoint, head and base (and the
    `chain_id` meta row, when given: the store then names its chain like one made by
    InitChain), in one synced atomic batch (spec/store.md, "A store that starts at a
    snapshot").

    The store must be empty (no block, no checkpoint). Close it afterwards and reopen it
    (e.g. `Executor.open`): recovery then starts from this checkpoint like any other.
    """
    if store.head_height != 0 or store.checkpoint_heights() or store.base is not None:
        raise StoreError(
            f"{store.directory}: state sync needs an empty store (head {store.head_height})"
        )
    metadata = restored.metadata
    height = metadata.height
    entries = restored.entries
    info = CheckpointInfo(height, metadata.block_hash, restored.roots, len(entries),
                          len(entries))
    present = codec.PRESENT
    version_key, latest_key, change_log_key = K.version_key, K.latest_key, K.change_log_key
    with store._db.write_batch(transaction=True, sync=True) as batch:
        put = batch.put
        for key, value in entries:
            put(version_key(key, height), present + value)
            put(latest_key(key), value)
            put(change_log_key(height, key), b"")
        put(K.checkpoint_key(height), codec.encode_checkpoint(info))
        put(K.BASE_KEY, codec.encode_base(height, metadata.time, metadata.block_hash))
        put(K.HEAD_KEY, codec.encode_head(height, metadata.block_hash, 1))
        if chain_id is not None:
            put(K.CHAIN_ID_KEY, codec.frame([chain_id.encode()]))
