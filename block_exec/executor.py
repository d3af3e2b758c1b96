"""`Executor`: the object a node embeds. It applies blocks in sequence, keeps the state
root, and, when opened on a directory, persists blocks, history and checkpoints in LevelDB
and recovers from it (spec/store.md, "Recovery").

The state root is kept incrementally: the core records what each block changed, and the
changed entries are folded into a `NamespacedCommitment` at every checkpoint height (or
when `state_root` is asked for), so a commit costs O(changes * log(state)), never O(state).
The same changed entries, accumulated since the previous checkpoint, are what the store
writes at the next one.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from types import TracebackType

from block_exec.apply import apply_block
from block_exec.authorized import apply_authorized_block, decode_auth, encode_auth
from block_exec.block_record import block_record
from block_exec.decode import decode_cbor_block
from block_exec.errors import BlockSequenceError
from block_exec.genesis import Genesis, GenesisError, genesis_balances_state
from block_exec.pipeline import StoreWriter, WriterFailed, history_sidecar
from block_exec.receipts_json import block_receipts_line
from block_exec.signed import TxAuth
from block_exec.types import Block, BlockResult
from block_exec.validate import checked_block_bytes, validate_block
from merkle import NamespacedCommitment
from state_machine import (
    CoreStateMachine,
    changed_entries,
    namespace_of,
    state_entries,
)
from store import (
    Checkpoint,
    Restored,
    Roots,
    Store,
    StoreError,
)
from store.roots import CommitmentRoots, commitment_of, roots_of
from store.snapshots import chain_position

DEFAULT_CHECKPOINT_INTERVAL = 100


class ExecutorBroken(StoreError):
    """A store write failed after a block was applied in memory: reopen the executor."""


class Executor:
    """Holds the core and the chain position: `height` (0 before any block), the last
    block's `last_time` and `last_block_hash` (None before any block).

    `Executor()` runs in memory; `Executor.open(directory)` runs on a LevelDB store.
    Either way a block's result carries the state root at checkpoint heights
    (height % checkpoint_interval == 0), and `state_root` gives it at any height.
    """

    def __init__(
        self,
        state: CoreStateMachine | None = None,
        *,
        checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
    ) -> None:
        if checkpoint_interval < 1:
            raise ValueError("checkpoint_interval must be at least 1")
        self.state = CoreStateMachine() if state is None else state
        self.checkpoint_interval = checkpoint_interval
        self.height = 0
        self.last_time = 0
        self.last_block_hash: bytes | None = None
        self.store: Store | None = None
        self.commitment = commitment_of(state_entries(self.state))
        self.state.drain_changes()
        # Changed entries not yet written by a store checkpoint (None = removed); kept
        # only when there is a store to write them.
        self._unsaved: dict[bytes, bytes | None] = {}
        self._keeps_unsaved = False
        self._broken: str | None = None  # why this executor refuses further blocks
        self.chain_id: str | None = None  # network mode: set by init_chain
        # A checkpoint height at the head whose checkpoint a read-only open did not write.
        self.missing_checkpoint: int | None = None
        # Pipelined (`open(pipelined=True)`): the writer process storing the blocks, and
        # whether the store is handed over to it (then `store` is detached).
        self._pipelined = False
        self._writer: StoreWriter | None = None

    # -- opening on a store --------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str,
        *,
        checkpoint_interval: int | None = None,
        keep: int = 10,
        sync_blocks: bool = False,
        create: bool = True,
        read_only: bool = False,
        trusted: tuple[Restored, NamespacedCommitment] | None = None,
        pipelined: bool = False,
    ) -> Executor:
        """Open (or create) the store in `directory` and recover.

        `pipelined=True` (`run`): blocks are stored by a writer process on the other core
        (`block_exec.pipeline`): `apply_block` returns once the block is handed over,
        `durable_height` says how far the store has got, `wait_durable`/`flush`/`close`
        wait for it. Without it (a node's Commit), `apply_block` returns once stored.

        `trusted` (state sync): the state of the store's latest checkpoint and its
        commitment, just rebuilt and checked against the trusted root by the caller;
        recovery then adopts them instead of rebuilding and re-hashing the same state
        (used only if its height and root are the latest checkpoint's).

        Recovery restores the latest checkpoint, recomputes its root and refuses to start
        (StateDiverged, naming the namespace) if it differs from the stored one, then
        replays the logged blocks after it. `checkpoint_interval` is fixed when the store
        is created; None means "as stored" (100 for a new store).

        `read_only=True` (the read-only commands): the same recovery in memory, but the
        store is opened with `Store(read_only=True)` and nothing is ever written. A head
        checkpoint that a writer has not written yet is not written here: the executor's
        `missing_checkpoint` names its height (None when there is none) for the caller to
        report; `apply_block` raises StoreError. A directory that is not a store raises
        StoreError (one line) and is left untouched.
        """
        store = Store(directory, checkpoint_interval=checkpoint_interval, keep=keep,
                      sync_blocks=sync_blocks, create=create, read_only=read_only)
        writer = None
        try:
            if pipelined and not read_only:
                # Spawned now: it imports while this process recovers.
                writer = cls._spawn_writer(store)
            # The trees the roots are checked with are the ones kept (built once, by a
            # worker for the most part: `store.roots.CommitmentRoots`).
            compute_roots = CommitmentRoots()
            latest = store.latest_checkpoint()
            if (
                trusted is not None
                and latest is not None
                and trusted[0].height == latest.height
                and trusted[1].root() == latest.roots.root
            ):
                restored = trusted[0]
                compute_roots.commitment = trusted[1]
            else:
                restored = store.restore(compute_roots=compute_roots)
            executor = cls(CoreStateMachine(), checkpoint_interval=store.checkpoint_interval)
            executor.state = restored.machine
            built = compute_roots.commitment
            executor.commitment = commitment_of(restored.entries) if built is None else built
            executor.height = restored.height
            executor.chain_id = store.chain_id
            executor._keeps_unsaved = True
            if restored.height:
                # Its block row, or the base of a store restored from a snapshot.
                executor.last_time, executor.last_block_hash = chain_position(
                    store, restored.height
                )
            for stored in store.blocks_after(restored.height):
                where = f"stored block {stored.height}"
                block = decode_cbor_block(stored.block_bytes, where)
                # A network block replays with the auth it was applied with.
                auth = decode_auth(stored.auth, where) if stored.auth else None
                result = executor._apply(block, auth)
                if result.block_hash != stored.block_hash:
                    raise BlockSequenceError(
                        f"stored block {stored.height}: hash does not match its bytes"
                    )
            if store.needs_checkpoint() and read_only:
                executor.missing_checkpoint = store.head_height  # only a writer writes it
            elif store.needs_checkpoint():
                # Recovery step 4 (spec/store.md): the head is a checkpoint height whose
                # checkpoint a writer that stores them apart from their block never wrote.
                executor._fold_changes()
                store.write_checkpoint(
                    Checkpoint(
                        executor.height,
                        sorted(executor._unsaved.items()),
                        roots_of(executor.commitment),
                    )
                )
                executor._unsaved = {}
            executor.store = store
            if writer is not None:
                # Open returns a ready executor: a writer that cannot start fails here,
                # and its start-up is not paid by the first blocks.
                writer.wait_ready()
            executor._pipelined = writer is not None
            executor._writer = writer
            writer = None
            return executor
        except BaseException:
            if writer is not None:
                writer.abort()
            store.close()
            raise

    @staticmethod
    def _spawn_writer(store: Store) -> StoreWriter:
        return StoreWriter(
            store.directory, store.lock_fd, checkpoint_interval=store.checkpoint_interval,
            keep=store.keep, sync_blocks=store.sync_blocks, durable=store.head_height,
        )

    def close(self) -> None:
        """Close the store; pipelined, first wait until every applied block is stored
        (ExecutorBroken if the writer cannot store them: the store then holds a prefix)."""
        try:
            self._stop_writer(reattach=False)
        finally:
            if self.store is not None:
                self.store.close()

    # -- the pipelined store -------------------------------------------------------------

    @property
    def durable_height(self) -> int:
        """The height up to which every applied block is stored (never waits, never
        raises). Synchronous stores: `height` (a block is stored before apply returns)."""
        writer = self._writer
        if writer is None or not writer.started:
            return self.height
        try:
            return writer.poll()
        except WriterFailed:
            return writer.durable

    def wait_durable(self, height: int | None = None) -> None:
        """Until every block up to `height` (default: all applied) is stored; raises
        ExecutorBroken if the writer failed (the store then holds a prefix of them)."""
        writer = self._writer
        if writer is None or not writer.started:
            return
        try:
            writer.wait(self.height if height is None else height)
        except WriterFailed as exc:
            self._broken = str(exc)
            raise ExecutorBroken(str(exc)) from None

    def flush(self) -> None:
        """Wait until every applied block is stored and take the store back from the
        writer, so `store` can be read again; the next block starts a new writer."""
        self._stop_writer(reattach=True)

    def _stop_writer(self, reattach: bool) -> None:
        writer = self._writer
        if writer is None or (reattach and not writer.started):
            return  # (an idle writer, not handed the store yet, stays for the next block)
        self._writer = None
        if self._broken is not None:
            writer.abort()
            return
        try:
            writer.close()
        except WriterFailed as exc:
            self._broken = str(exc)
            raise ExecutorBroken(str(exc)) from None
        finally:
            writer.abort()  # a no-op once closed; never leaves a process behind
        if reattach and writer.started and self.store is not None:
            self.store.reattach()

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- applying blocks -----------------------------------------------------------------

    def validate(self, block: Block) -> None:
        """Raise a BlockError if `block` would be refused as the next block."""
        validate_block(block, self.height, self.last_time)

    def apply_block(self, block: Block, auth: Sequence[TxAuth] | None = None) -> BlockResult:
        """Apply the next block; raise a BlockError (nothing changed) if it is refused.

        `auth` (network mode, one TxAuth per tx) makes each tx first pass authorization
        and its nonce (spec/signed.md); without it the block applies as a block file.
        With a store, the block, its receipts and its history are written in one batch
        before this returns (and, at a checkpoint height, the checkpoint with them);
        pipelined, they are handed to the writer, stored once `durable_height` reaches
        the block (`result.receipts_line` is the line the store keeps).
        """
        if self._broken is not None:
            raise ExecutorBroken(self._broken)
        if self.store is not None and self.store.read_only:
            raise StoreError(f"{self.store.directory}: opened read-only, no block can be applied")
        if auth is None and self.chain_id is not None:
            auth = ()  # a network chain applies no unsigned tx: an empty block only
        result = self._apply(block, auth)
        if self.store is not None:
            try:
                self._persist(block, result, auth)
            except BaseException as exc:
                # The state in memory is now a block ahead of the store: applying more
                # would acknowledge blocks a restart cannot rebuild. Reopening recovers
                # the store's state (this block was not acknowledged).
                self._broken = (
                    f"block {block.height} was applied but not stored ({exc}); "
                    "reopen the executor to recover from the store"
                )
                raise
        return result

    def _apply(self, block: Block, auth: Sequence[TxAuth] | None = None) -> BlockResult:
        # The one error precedence (schema, then sequence) that `validate` uses too.
        block_bytes = checked_block_bytes(block, self.height, self.last_time)
        if auth is None:
            result = apply_block(self.state, block, block_bytes=block_bytes)
        else:
            result = apply_authorized_block(self.state, block, auth, block_bytes=block_bytes)
        self.height = block.height
        self.last_time = block.time
        self.last_block_hash = result.block_hash
        if block.height % self.checkpoint_interval == 0:
            result.state_root = self.state_root
        return result

    def _persist(
        self, block: Block, result: BlockResult, auth: Sequence[TxAuth] | None = None
    ) -> None:
        assert self.store is not None
        root_hex = None if result.state_root is None else result.state_root.hex()
        result.receipts_line = block_receipts_line(block.height, root_hex, result.results)
        if self._pipelined:
            self._hand_over(block, result, auth)
            return
        record = block_record(block, result, b"" if auth is None else encode_auth(auth))
        checkpoint = None
        if result.state_root is not None:
            checkpoint = Checkpoint(
                block.height, sorted(self._unsaved.items()), roots_of(self.commitment)
            )
        self.store.append_block(record, checkpoint)
        if checkpoint is not None:
            self._unsaved = {}

    def _hand_over(
        self, block: Block, result: BlockResult, auth: Sequence[TxAuth] | None
    ) -> None:
        """Send the block to the writer: bytes it already has (block, receipts line, auth)
        and its history events packed as integers (`pipeline.history_sidecar`). Cost:
        O(orders + fills + cancellations), at a checkpoint O(changes) to pickle them (not
        sorted: the writer sorts them); the rows and their CBOR are the writer's work."""
        assert self.store is not None and result.receipts_line is not None
        writer = self._writer
        if writer is None:
            writer = self._writer = self._spawn_writer(self.store)
        if not writer.started:
            self.store.detach()
            writer.start()
        history, users = history_sidecar(block, result)
        checkpoint = b""
        if result.state_root is not None:
            roots = roots_of(self.commitment)
            # The changes as they are (a dict): the writer sorts them, off this process.
            checkpoint = pickle.dumps((self._unsaved, roots.root, roots.namespaces), protocol=5)
            self._unsaved = {}
        writer.send_block(block.height, block.time, result.block_hash, (
            result.block_bytes,
            result.receipts_line.encode(),
            b"" if auth is None else encode_auth(auth),
            history,
            users,
            checkpoint,
        ))

    # -- network mode ------------------------------------------------------------------------

    @property
    def bridge(self) -> str | None:
        """The genesis bridge (the only signer of deposits); None outside network mode."""
        return self.state.bridge

    def nonce(self, address: str) -> int:
        """The address's current nonce: the one its next signed tx must carry."""
        return self.state.nonces.get(address)

    def init_chain(self, genesis: Genesis, chain_id: str) -> bytes:
        """Create the genesis state (its balances and bridge) and return its root.

        Only before the first block. Called again with the same genesis and chain id (as
        CometBFT does after a restart at height 0), it changes nothing and returns the
        same root; with another, it raises GenesisError.
        """
        machine = genesis_balances_state(genesis)
        machine.bridge = genesis.bridge
        if self.chain_id is not None or self.state.bridge is not None:
            root = NamespacedCommitment(
                (namespace_of(key), key, value) for key, value in state_entries(machine)
            ).root()
            if self.chain_id != chain_id or self.height != 0 or root != self.state_root:
                raise GenesisError(
                    f"init_chain: this store already holds chain {self.chain_id!r} at height "
                    f"{self.height}; it cannot start chain {chain_id!r} with another genesis"
                )
            return root
        if self.height != 0 or state_entries(self.state) != state_entries(CoreStateMachine()):
            raise GenesisError(f"init_chain: the state is not empty (height {self.height})")
        machine.drain_changes()
        entries = state_entries(machine)
        commitment = commitment_of(entries)
        if self.store is not None:
            # The genesis state is checkpoint 0: a restart restores it without InitChain.
            self.store.write_checkpoint(
                Checkpoint(0, entries, roots_of(commitment)), chain_id=chain_id
            )
        self.state = machine
        self.commitment = commitment
        self._unsaved = {}
        self.chain_id = chain_id
        return commitment.root()

    # -- the state root --------------------------------------------------------------------

    def _fold_changes(self) -> None:
        """Fold what the core changed since the last fold into the commitment."""
        changes = changed_entries(self.state, self.state.drain_changes())
        self.commitment.update((namespace_of(key), key, value) for key, value in changes)
        if self._keeps_unsaved:
            self._unsaved.update(changes)

    @property
    def state_root(self) -> bytes:
        """The root of the current state (computed incrementally from what changed)."""
        self._fold_changes()
        return self.commitment.root()

    def roots(self) -> Roots:
        """The state root and the root of every namespace under it."""
        self._fold_changes()
        return roots_of(self.commitment)
