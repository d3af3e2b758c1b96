"""The four snapshot calls of the ABCI application, in process: requests built from the
generated classes, as CometBFT sends them on the snapshot connection, between a serving
app and an empty one that restores and then finalizes blocks like the server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from block_exec.abci.app import Application
from block_exec.abci.ledger import Ledger
from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.executor import Executor
from block_exec.signed import address_of, sign_tx
from block_exec.statesync import StateSync, Trusted
from block_exec.types import Limit
from state_machine import Side, Tif
from store.snapshot_format import MIN_CHUNK_LIMIT

CHAIN = "snapshot-chain"
BRIDGE_KEY, ALICE_KEY, BOB_KEY = (bytes([i]) * 32 for i in (1, 2, 3))
BRIDGE, ALICE, BOB = (address_of(k) for k in (BRIDGE_KEY, ALICE_KEY, BOB_KEY))
GENESIS = {"bridge": BRIDGE, "balances": [{"user": ALICE, "asset": 0, "amount": 10**9},
                                          {"user": BOB, "asset": 1, "amount": 10**6}]}


def run(app: Application, kind: str, request: Message) -> Any:
    return asyncio.run(app.handle(kind, request))


def node(directory: Path) -> tuple[Application, StateSync]:
    def reopen(*, trusted: Trusted | None = None) -> Executor:
        return Executor.open(str(directory), checkpoint_interval=1, trusted=trusted)

    executor = reopen()
    sync = StateSync(executor, reopen, interval=3, chunk_limit=MIN_CHUNK_LIMIT, chain_id=CHAIN)
    return Application(Ledger(executor), None, CHAIN, sync), sync


def block(app: Application, calls: StateSync, height: int) -> bytes:
    """Finalize and commit block `height` (orders from both users), then let the
    background work run; return the app hash."""
    per_user = 6
    txs = []
    for i in range(per_user):
        nonce = (height - 1) * per_user + i
        txs.append(sign_tx(ALICE_KEY, CHAIN, nonce,
                           Limit(ALICE, 1, Side.BUY, 100 + height + i, 7, Tif.GTC)))
        txs.append(sign_tx(BOB_KEY, CHAIN, nonce,
                           Limit(BOB, 1, Side.SELL, 300 + height + i, 5, Tif.GTC)))
    request = abci.RequestFinalizeBlock(height=height, txs=txs, hash=bytes([height]) * 32)
    request.time.seconds = 1_700_000_000 + height
    response = run(app, "finalize_block", request)
    assert all(result.code == 0 for result in response.tx_results)
    run(app, "commit", abci.RequestCommit())
    while calls.work():
        pass
    app_hash: bytes = response.app_hash
    return app_hash


def test_a_node_restores_through_the_abci_calls_and_goes_on_like_the_server(
    tmp_path: Path,
) -> None:
    server, server_calls = node(tmp_path / "server")
    run(server, "init_chain", abci.RequestInitChain(
        chain_id=CHAIN, app_state_bytes=json.dumps(GENESIS).encode()))
    hashes = {height: block(server, server_calls, height) for height in range(1, 7)}
    listed = run(server, "list_snapshots", abci.RequestListSnapshots()).snapshots
    assert [(s.height, s.format) for s in listed] == [(6, 1), (3, 1)]
    offered = listed[0]
    assert offered.chunks > 1

    joiner, joiner_calls = node(tmp_path / "joiner")  # no InitChain: state sync instead
    wrong = run(joiner, "offer_snapshot", abci.RequestOfferSnapshot(
        snapshot=offered, app_hash=hashes[5]))
    assert wrong.result == abci.ResponseOfferSnapshot.REJECT
    accepted = run(joiner, "offer_snapshot", abci.RequestOfferSnapshot(
        snapshot=offered, app_hash=hashes[6]))
    assert accepted.result == abci.ResponseOfferSnapshot.ACCEPT
    for index in range(offered.chunks):
        chunk = run(server, "load_snapshot_chunk", abci.RequestLoadSnapshotChunk(
            height=6, format=1, chunk=index)).chunk
        assert chunk
        if index == 1:  # a peer's corrupted copy first
            bad = bytes([chunk[0] ^ 1]) + chunk[1:]
            answer = run(joiner, "apply_snapshot_chunk", abci.RequestApplySnapshotChunk(
                index=1, chunk=bad, sender="peer-bad"))
            assert answer.result == abci.ResponseApplySnapshotChunk.RETRY
            assert list(answer.refetch_chunks) == [1]
            assert list(answer.reject_senders) == ["peer-bad"]
        answer = run(joiner, "apply_snapshot_chunk", abci.RequestApplySnapshotChunk(
            index=index, chunk=chunk, sender="peer-good"))
        assert answer.result == abci.ResponseApplySnapshotChunk.ACCEPT

    info = run(joiner, "info", abci.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (6, hashes[6])
    assert joiner.executor.chain_id == CHAIN  # written into the restored store
    for height in (7, 8, 9):  # FinalizeBlock h+1 on: the same app hashes as the server
        assert block(joiner, joiner_calls, height) == block(server, server_calls, height)
    states = [json.loads(run(app, "query", abci.RequestQuery(path="/state", data=b"{}")).value)
              for app in (server, joiner)]
    assert states[0] == states[1] and states[0]["books"]
    # It serves snapshots too, its restored height's byte for byte like the server's.
    assert [s.height for s in joiner_calls.list_snapshots()] == [9, 6]
    assert joiner_calls.list_snapshots() == server_calls.list_snapshots()
    refused = run(server, "offer_snapshot", abci.RequestOfferSnapshot(
        snapshot=offered, app_hash=hashes[6]))
    assert refused.result == abci.ResponseOfferSnapshot.ABORT  # a node with a state
    for calls in (server_calls, joiner_calls):
        calls.close()
        calls.executor.close()
    # The restored store names its chain: a reopen reads it back, and the node refuses to
    # serve it as another chain's.
    with Executor.open(str(tmp_path / "joiner"), read_only=True) as reopened:
        assert reopened.chain_id == CHAIN and reopened.height == 9
    refused_start = subprocess.run(
        [sys.executable, "-m", "block_exec.cli", "node", "--db", str(tmp_path / "joiner"),
         "--abci", f"unix://{tmp_path / 'abci.sock'}", "--chain-id", "another-chain"],
        capture_output=True, text=True, timeout=60)
    assert refused_start.returncode == 1
    assert f"the store is of chain {CHAIN!r}" in refused_start.stderr


def test_a_node_without_a_chain_id_declines_state_sync(tmp_path: Path) -> None:
    """A snapshot does not hold the chain id: a node that knows none (no --chain-id)
    ABORTs state sync rather than restore a state it could apply no signed tx to."""
    executor = Executor.open(str(tmp_path / "joiner"))
    sync = StateSync(executor, lambda **_: executor)
    app = Application(Ledger(executor), None, None, sync)
    answer = run(app, "offer_snapshot", abci.RequestOfferSnapshot(
        snapshot=abci.Snapshot(height=3, format=1, chunks=1, hash=b"h" * 32, metadata=b""),
        app_hash=b"a" * 32))
    assert answer.result == abci.ResponseOfferSnapshot.ABORT
    assert executor.height == 0
    executor.close()
