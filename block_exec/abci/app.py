"""The coreledger ABCI 2.0 application (contract: "Network mode").

One `Application` owns the ledger; the server calls `handle` for every request of every
connection on one asyncio loop, so requests never interleave inside a handler. The only
handler that waits is Query: between FinalizeBlock and Commit the state in memory is a
block ahead of what is committed, and a query answers for committed state only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from block_exec.abci.ledger import Ledger
from block_exec.abci.metrics import Metrics
from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.abci.query import answer_query
from block_exec.abci.results import CODESPACE, exec_tx_result, refused_tx_result
from block_exec.abci.snapshots import SnapshotCalls
from block_exec.errors import BlockError
from block_exec.genesis import parse_app_state
from block_exec.signed import NOT_AUTHORIZED, TxAuth, TxRefused, check_signed_tx, is_authorized
from block_exec.statesync import StateSync
from block_exec.types import Block, Tx
from store import StoreError

log = logging.getLogger("coreledger.app")

APP_VERSION = 1

CHECK_CODES = {"malformed": 10, "bad_signature": 11, "wrong_chain": 12, NOT_AUTHORIZED: 6,
               "bad_nonce": 7, "not_initialised": 13}
"""CheckTx codes of a refused tx (0 = accepted into the mempool)."""


def _time_ms(timestamp: Any) -> int:
    """A protobuf Timestamp as milliseconds since the epoch, floor."""
    return int(timestamp.seconds) * 1000 + int(timestamp.nanos) // 1_000_000


class Application:
    def __init__(
        self,
        ledger: Ledger,
        metrics: Metrics | None = None,
        chain_id: str | None = None,
        sync: StateSync | None = None,
        on_restored: Callable[[], None] | None = None,
    ) -> None:
        """`on_restored` is called once state sync has restored a snapshot (the node
        freezes the restored heap there)."""
        self.ledger = ledger
        self.sync = sync
        self.on_restored = on_restored
        # set after each Commit: the snapshot work runs when the node is idle
        self.committed_once = asyncio.Event()
        self.metrics = metrics
        # The chain id to use when the store does not hold one (`node --chain-id`).
        self.chain_id_hint = chain_id
        self._committed = asyncio.Event()
        self._committed.set()
        # next nonce per address counting the txs accepted into the mempool since Commit
        self._mempool_nonces: dict[str, int] = {}
        # the last FinalizeBlock answered: (height, block hash, response), for a repeat
        self._last_finalize: tuple[int, bytes, abci.ResponseFinalizeBlock] | None = None
        self._handlers: dict[str, Callable[[Any], Message]] = {
            "echo": self.echo,
            "flush": lambda _: abci.ResponseFlush(),
            "info": self.info,
            "init_chain": self.init_chain,
            "check_tx": self.check_tx,
            "prepare_proposal": self.prepare_proposal,
            "process_proposal": self.process_proposal,
            "finalize_block": self.finalize_block,
            "commit": self.commit,
            "extend_vote": lambda _: abci.ResponseExtendVote(),
            "verify_vote_extension": lambda _: abci.ResponseVerifyVoteExtension(
                status=abci.ResponseVerifyVoteExtension.ACCEPT
            ),
            # Without a StateSync (an in-memory node): no snapshots, every offer declined.
            "list_snapshots": lambda _: abci.ResponseListSnapshots(),
            "offer_snapshot": lambda _: abci.ResponseOfferSnapshot(
                result=abci.ResponseOfferSnapshot.REJECT
            ),
            "load_snapshot_chunk": lambda _: abci.ResponseLoadSnapshotChunk(),
            "apply_snapshot_chunk": lambda _: abci.ResponseApplySnapshotChunk(
                result=abci.ResponseApplySnapshotChunk.ABORT
            ),
        }
        if sync is not None:
            calls = SnapshotCalls(sync, self._restored)
            self._handlers.update(
                list_snapshots=calls.list_snapshots,
                load_snapshot_chunk=calls.load_snapshot_chunk,
                offer_snapshot=calls.offer_snapshot,
                apply_snapshot_chunk=calls.apply_snapshot_chunk,
            )

    def _restored(self) -> None:
        """State sync restored a snapshot: serve from the restored executor from now on."""
        assert self.sync is not None
        self.ledger = Ledger(self.sync.executor)
        self._mempool_nonces.clear()
        self._last_finalize = None
        log.info("state sync: restored height %d", self.ledger.committed_height)
        if self.on_restored is not None:
            self.on_restored()

    @property
    def executor(self) -> Any:
        return self.ledger.executor

    async def handle(self, kind: str, request: Message) -> Message:
        if kind == "query":
            await self._committed.wait()
            assert isinstance(request, abci.RequestQuery)
            return self.query(request)
        handler = self._handlers.get(kind)
        if handler is None:
            raise ValueError(f"unknown request {kind!r}")
        return handler(request)

    # -- connection and chain ------------------------------------------------------------

    def echo(self, request: abci.RequestEcho) -> abci.ResponseEcho:
        return abci.ResponseEcho(message=request.message)

    def info(self, request: abci.RequestInfo) -> abci.ResponseInfo:
        height = self.ledger.committed_height
        return abci.ResponseInfo(
            data="coreledger",
            version="0.1.0",
            app_version=APP_VERSION,
            last_block_height=height,
            last_block_app_hash=self.executor.state_root if height else b"",
        )

    def init_chain(self, request: abci.RequestInitChain) -> abci.ResponseInitChain:
        hint = self.chain_id_hint
        if hint is not None and hint != request.chain_id:
            raise ValueError(f"InitChain for chain {request.chain_id!r}, but --chain-id {hint!r}")
        genesis = parse_app_state(request.app_state_bytes or b"")
        root: bytes = self.executor.init_chain(genesis, request.chain_id)
        log.info("init_chain %s: genesis root %s", request.chain_id, root.hex())
        return abci.ResponseInitChain(app_hash=root)

    # -- mempool ---------------------------------------------------------------------------

    def _check(self, raw: bytes) -> tuple[Tx, TxAuth]:
        chain_id = self.executor.chain_id or self.chain_id_hint
        if chain_id is None:
            raise TxRefused("not_initialised", "the chain has not been initialised (no InitChain)")
        signed, auth = check_signed_tx(raw, chain_id)
        return signed.tx, auth

    def check_tx(self, request: abci.RequestCheckTx) -> abci.ResponseCheckTx:
        started = time.perf_counter()
        try:
            tx, auth = self._check(request.tx)
            if not is_authorized(tx, auth.signer, self.executor.bridge):
                raise TxRefused(
                    NOT_AUTHORIZED, f"signer {auth.signer} may not sign this {_op(tx)}"
                )
            expected = self._mempool_nonces.get(auth.signer)
            if expected is None:
                expected = self.executor.nonce(auth.signer)
            if auth.nonce != expected:
                raise TxRefused(
                    "bad_nonce", f"nonce {auth.nonce} of {auth.signer}: expected {expected}"
                )
        except TxRefused as exc:
            if self.metrics is not None:
                self.metrics.check_tx(exc.reason, time.perf_counter() - started)
            return abci.ResponseCheckTx(
                code=CHECK_CODES.get(exc.reason, 10), codespace=CODESPACE, log=str(exc)
            )
        self._mempool_nonces[auth.signer] = expected + 1
        if self.metrics is not None:
            self.metrics.check_tx("accepted", time.perf_counter() - started)
        return abci.ResponseCheckTx(code=0)

    # -- proposals -------------------------------------------------------------------------

    def prepare_proposal(
        self, request: abci.RequestPrepareProposal
    ) -> abci.ResponsePrepareProposal:
        """The mempool's txs in order, those that are valid signed txs of this chain, up
        to `max_tx_bytes` in total."""
        budget = request.max_tx_bytes
        kept: list[bytes] = []
        for raw in request.txs:
            if len(raw) > budget:
                break
            try:
                self._check(raw)
            except TxRefused:
                continue
            kept.append(raw)
            budget -= len(raw)
        return abci.ResponsePrepareProposal(txs=kept)

    def process_proposal(
        self, request: abci.RequestProcessProposal
    ) -> abci.ResponseProcessProposal:
        for index, raw in enumerate(request.txs):
            try:
                self._check(raw)
            except TxRefused as exc:
                log.warning("process_proposal %d: tx %d refused: %s", request.height, index, exc)
                return abci.ResponseProcessProposal(
                    status=abci.ResponseProcessProposal.REJECT
                )
        return abci.ResponseProcessProposal(status=abci.ResponseProcessProposal.ACCEPT)

    # -- blocks ----------------------------------------------------------------------------

    def finalize_block(
        self, request: abci.RequestFinalizeBlock
    ) -> abci.ResponseFinalizeBlock:
        last = self._last_finalize
        if last is not None and last[0] == request.height and last[1] == request.hash:
            return last[2]  # the same block again: the same answer
        started = time.perf_counter()
        txs: list[Tx] = []
        auth: list[TxAuth] = []
        positions: list[int | str] = []  # per request tx: its index in the block, or why not
        for raw in request.txs:
            try:
                tx, tx_auth = self._check(raw)
            except TxRefused as exc:
                positions.append(str(exc))
                continue
            positions.append(len(txs))
            txs.append(tx)
            auth.append(tx_auth)
        block = Block(request.height, _time_ms(request.time), tuple(txs))
        pending = self.ledger.finalize(block, auth)
        self._committed.clear()
        receipts = pending.result.results
        results = [
            refused_tx_result(p) if isinstance(p, str) else exec_tx_result(receipts[p])
            for p in positions
        ]
        response = abci.ResponseFinalizeBlock(tx_results=results, app_hash=pending.app_hash)
        self._last_finalize = (request.height, request.hash, response)
        if self.metrics is not None:
            self.metrics.block_applied(pending.result, time.perf_counter() - started)
        return response

    def commit(self, request: abci.RequestCommit) -> abci.ResponseCommit:
        started = time.perf_counter()
        height = self.ledger.commit()
        self._mempool_nonces.clear()  # the rechecks that follow count from the new state
        self._committed.set()
        if self.sync is not None:
            try:
                self.sync.after_commit()
            except StoreError as exc:  # snapshots are a service; Commit must not fail
                log.error("snapshots not refreshed: %s", " ".join(str(exc).split()))
            self.committed_once.set()
        if self.metrics is not None:
            self.metrics.committed(height, time.perf_counter() - started)
        return abci.ResponseCommit(retain_height=0)

    # -- queries ---------------------------------------------------------------------------

    def query(self, request: abci.RequestQuery) -> abci.ResponseQuery:
        height = self.ledger.committed_height
        try:
            value = answer_query(self.executor, request.path, bytes(request.data))
        except (BlockError, ValueError) as exc:
            return abci.ResponseQuery(
                code=1, codespace=CODESPACE, log=" ".join(str(exc).split()), height=height
            )
        return abci.ResponseQuery(code=0, value=value, height=height)


def _op(tx: Tx) -> str:
    return type(tx).__name__.lower()
