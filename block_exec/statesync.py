"""The node side of CometBFT state sync, free of any wire format (spec/store.md, "State sync").

`StateSync` holds a node's `Executor` and answers the four snapshot calls with plain
values; the ABCI application translates requests and responses (protobuf) and calls it
from its one state-owning task. How an ABCI app wires it:

```python
def reopen(*, trusted=None):
    return Executor.open(db, ..., trusted=trusted)
sync = StateSync.for_node(executor, reopen)
# ListSnapshots      -> sync.list_snapshots()                 : list[Snapshot]
# LoadSnapshotChunk  -> sync.load_snapshot_chunk(h, format, i)  : bytes
# OfferSnapshot      -> sync.offer_snapshot(Snapshot(...), app_hash) : OfferVerdict
# ApplySnapshotChunk -> sync.apply_snapshot_chunk(i, chunk, sender)  : ChunkOutcome
#                       (after the last chunk `sync.executor` is the restored executor:
#                        use it from then on, e.g. for Info)
# after every Commit -> sync.after_commit()                     : O(kept checkpoints)
# when idle          -> sync.work()                             : one slice, ~2 ms budget
#                       (e.g. `asyncio.create_task(run_in_background(sync))`)
# on shutdown        -> sync.close() before the executor is closed
```

Snapshots never hold up FinalizeBlock or Commit: `after_commit` is O(kept checkpoints)
and all reading, cutting, hashing and file writing happens in `work` slices.

Test-only fault switch (read by `for_node`, never set it on a real node):
`CORELEDGER_TEST_CORRUPT_CHUNKS=1` (or `=DIR`: only the node whose store is DIR, so one
variable set for a whole test network picks one node) makes this node serve every
snapshot chunk with one byte flipped, so a network test can check that a joining node
detects it (RETRY, rejects this sender) and still restores from the others.
`CORELEDGER_TEST_SNAPSHOT_CHUNK_LIMIT=N` cuts chunks at N bytes instead of 4 MiB (to get
many chunks from a small test state); every server of one network must use the same
value, or their snapshots differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable
from typing import Protocol

from block_exec.executor import Executor
from merkle import NamespacedCommitment
from store import Restored, StoreError
from store.snapshot_format import DEFAULT_CHUNK_LIMIT, Snapshot
from store.snapshot_restore import (
    ChunkOutcome,
    ChunkVerdict,
    OfferVerdict,
    Restorer,
    SnapshotRefused,
    install_snapshot,
)
from store.snapshots import (
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_SNAPSHOT_KEEP,
    DEFAULT_WORK_BUDGET_NS,
    SnapshotService,
)

CORRUPT_CHUNKS_ENV = "CORELEDGER_TEST_CORRUPT_CHUNKS"
CHUNK_LIMIT_ENV = "CORELEDGER_TEST_SNAPSHOT_CHUNK_LIMIT"

Log = Callable[[str], None]


Trusted = tuple[Restored, NamespacedCommitment]
"""A restored state and its commitment, for `Executor.open(..., trusted=...)`."""


class Reopen(Protocol):
    def __call__(self, *, trusted: Trusted | None = None) -> Executor: ...


def _no_log(_: str) -> None:
    return None


class StateSync:
    """Serves a node's snapshots and restores one into it (one owner, not thread-safe)."""

    def __init__(
        self,
        executor: Executor,
        reopen: Reopen,
        *,
        interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        keep: int = DEFAULT_SNAPSHOT_KEEP,
        chunk_limit: int = DEFAULT_CHUNK_LIMIT,
        corrupt_chunks: bool = False,
        chain_id: str | None = None,
        log: Log = _no_log,
    ) -> None:
        """`reopen(trusted=...)` opens the node's executor on its directory again (same
        options, passing `trusted` on to `Executor.open`): it is called once a restored
        snapshot has been written into the store. `chain_id` (the node's `--chain-id`)
        is written into a restored store, which then names its chain like one made by
        InitChain (a snapshot does not hold it)."""
        self.executor = executor
        self.chain_id = chain_id
        self.reopen = reopen
        self.interval = interval
        self.keep = keep
        self.chunk_limit = chunk_limit
        self.corrupt_chunks = corrupt_chunks
        self.log = log
        self.service = self._service()
        self._restorer: Restorer | None = None

    @classmethod
    def for_node(
        cls,
        executor: Executor,
        reopen: Reopen,
        *,
        interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        chain_id: str | None = None,
        log: Log = _no_log,
    ) -> StateSync:
        """As the node runs it: defaults, plus the test-only switches of the environment."""
        target = os.environ.get(CORRUPT_CHUNKS_ENV, "")
        store = executor.store
        corrupt = target == "1" or bool(
            target and store is not None
            and os.path.realpath(target) == os.path.realpath(store.directory)
        )
        limit_text = os.environ.get(CHUNK_LIMIT_ENV, "")
        limit = int(limit_text) if limit_text.isdigit() else DEFAULT_CHUNK_LIMIT
        if corrupt:
            log(f"TEST FAULT {CORRUPT_CHUNKS_ENV}={target}: serving corrupted snapshot chunks")
        return cls(executor, reopen, interval=interval, chunk_limit=limit,
                   corrupt_chunks=corrupt, chain_id=chain_id, log=log)

    def _service(self) -> SnapshotService | None:
        store = self.executor.store
        if store is None:
            return None
        return SnapshotService(store, interval=self.interval, keep=self.keep,
                               chunk_limit=self.chunk_limit)

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
            self.service = None

    # -- serving ------------------------------------------------------------------------

    def list_snapshots(self) -> list[Snapshot]:
        return [] if self.service is None else self.service.list()

    def load_snapshot_chunk(self, height: int, format: int, index: int) -> bytes:
        if self.service is None:
            return b""
        chunk = self.service.load_chunk(height, format, index)
        if self.corrupt_chunks and chunk:
            flipped = bytearray(chunk)
            flipped[len(flipped) // 2] ^= 0x01
            return bytes(flipped)
        return chunk

    def after_commit(self) -> None:
        """After every Commit: notice new and pruned checkpoints. O(kept checkpoints)."""
        if self.service is not None:
            self.service.refresh()

    def work(self, budget_ns: int = DEFAULT_WORK_BUDGET_NS) -> bool:
        """One background slice of about `budget_ns` (2 ms) of wall time (the snapshot's
        bytes do not depend on it). Returns whether more is left.
        A store problem is logged (one line) and that snapshot is skipped."""
        if self.service is None:
            return False
        try:
            return self.service.work(budget_ns)
        except StoreError as exc:
            self.log(f"snapshot not taken: {exc}")
            return self.service.pending

    # -- restoring ----------------------------------------------------------------------

    def offer_snapshot(self, snapshot: Snapshot, app_hash: bytes) -> OfferVerdict:
        store = self.executor.store
        if store is None or store.head_height != 0 or self.executor.height != 0:
            self.log("snapshot offer refused: this node already has a state")
            return OfferVerdict.ABORT
        try:
            self._restorer = Restorer(snapshot, app_hash)
        except SnapshotRefused as exc:
            self._restorer = None
            self.log(f"snapshot at height {snapshot.height} refused: {exc}")
            return exc.verdict
        self.log(f"restoring the snapshot at height {snapshot.height} ({snapshot.chunks} chunks)")
        return OfferVerdict.ACCEPT

    def apply_snapshot_chunk(self, index: int, chunk: bytes, sender: str) -> ChunkOutcome:
        restorer = self._restorer
        if restorer is None:
            return ChunkOutcome(ChunkVerdict.ABORT, "no snapshot was accepted")
        outcome = restorer.apply(index, chunk, sender)
        if outcome.verdict is not ChunkVerdict.ACCEPT:
            self.log(f"snapshot chunk {index}: {outcome.verdict.value}: {outcome.reason}")
            if outcome.verdict is ChunkVerdict.REJECT_SNAPSHOT:
                self._restorer = None
            return outcome
        restored = restorer.restored
        if restored is None:
            return outcome
        self._restorer = None
        self.close()
        store = self.executor.store
        assert store is not None  # offer_snapshot checked it
        try:
            install_snapshot(store, restored, self.chain_id)
        except StoreError as exc:
            self.log(f"restored snapshot not stored: {exc}")
            self.service = self._service()
            return ChunkOutcome(ChunkVerdict.ABORT, str(exc))
        self.executor.close()
        self.executor = self.reopen(trusted=restored.as_restored())
        self.service = self._service()
        if self.executor.chain_id != self.chain_id:  # read back from the store's meta row
            reason = (f"the restored store names chain {self.executor.chain_id!r}, "
                      f"not {self.chain_id!r}")
            self.log(f"restored snapshot refused: {reason}")
            return ChunkOutcome(ChunkVerdict.ABORT, reason)
        self.log(
            f"restored height {self.executor.height}, root {self.executor.state_root.hex()}"
        )
        return outcome


def freeze_heap() -> tuple[int, float]:
    """After a node opened or restored a large store: collect once, then move every
    object alive (the machine's orders, levels, the commitment) into the collector's
    permanent generation (`gc.freeze`), so later collections never scan them again. A
    full collection over a 1,000,000-order state costs hundreds of ms and would land in
    the middle of some FinalizeBlock or snapshot slice. Returns the number of objects
    frozen and the seconds the collection took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), time.perf_counter() - started


async def run_in_background(sync: StateSync, idle: asyncio.Event | None = None) -> None:
    """Drive `sync.work` forever from an asyncio loop: one slice, then yield to the loop
    (so a request that arrived waits for at most one slice); sleep while nothing is
    pending until `idle` is set (set it after each Commit) or for a second."""
    while True:
        if sync.work():
            await asyncio.sleep(0)
            continue
        if idle is None:
            await asyncio.sleep(1.0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), timeout=1.0)
        idle.clear()
