"""`block_exec.statesync.StateSync`, the node side of state sync, driven as CometBFT drives
it (ListSnapshots on servers, OfferSnapshot and ApplySnapshotChunk on the joiner, chunks
fetched from servers, one of them faulty), in process on real stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from block_exec import Block, Executor, block_from_obj
from block_exec.simulate import MarketConfig, SimulatedMarket
from block_exec.statesync import (
    CHUNK_LIMIT_ENV,
    CORRUPT_CHUNKS_ENV,
    StateSync,
    Trusted,
    run_in_background,
)
from store.snapshot_format import MIN_CHUNK_LIMIT, Snapshot
from store.snapshot_restore import ChunkVerdict, OfferVerdict

CONFIG = MarketConfig(assets=(1, 2), start_mids=(1000, 300), makers=3, takers=5,
                      maker_quotes_per_block=12, maker_cancels_per_block=4,
                      taker_orders_per_block=3)


def _blocks(count: int) -> tuple[list[Block], dict[int, bytes]]:
    market = SimulatedMarket(CONFIG)
    reference = Executor(checkpoint_interval=1)
    blocks, roots = [], {}
    for height in range(1, count + 1):
        block = block_from_obj(market.block(height, reference.state), "sim")
        reference.apply_block(block)
        blocks.append(block)
        roots[height] = reference.state_root
    return blocks, roots


def _node(directory: str, *, corrupt: bool = False) -> StateSync:
    def reopen(*, trusted: Trusted | None = None) -> Executor:
        return Executor.open(directory, trusted=trusted, checkpoint_interval=5, keep=3)

    return StateSync(reopen(), reopen, interval=5, chunk_limit=MIN_CHUNK_LIMIT,
                     corrupt_chunks=corrupt)


def test_a_joiner_restores_from_good_servers_and_rejects_the_corrupt_one(tmp_path: Path) -> None:
    blocks, roots = _blocks(30)
    servers = [_node(str(tmp_path / name), corrupt=name == "evil") for name in ("evil", "good")]
    for server in servers:
        for block in blocks[:12]:
            server.executor.apply_block(block)
            server.after_commit()
            server.work()
        while server.work():
            pass
    listed = [server.list_snapshots() for server in servers]
    assert listed[0] == listed[1]  # byte-identical snapshots: CometBFT pools them
    snapshot = listed[0][0]
    assert (snapshot.height, snapshot.format) == (10, 1)
    assert snapshot.chunks > 2

    logs: list[str] = []
    joiner_dir = str(tmp_path / "joiner")
    joiner = _node(joiner_dir)
    joiner.log = logs.append
    assert joiner.offer_snapshot(snapshot, roots[10]) is OfferVerdict.ACCEPT
    evil, good = servers
    outcome = joiner.apply_snapshot_chunk(0, evil.load_snapshot_chunk(10, 1, 0), "evil-id")
    assert outcome.verdict is ChunkVerdict.RETRY
    assert outcome.refetch == (0,) and outcome.reject_senders == ("evil-id",)
    assert any("evil-id" in line for line in logs)
    for index in range(snapshot.chunks):
        chunk = good.load_snapshot_chunk(10, 1, index)
        outcome = joiner.apply_snapshot_chunk(index, chunk, "good-id")
        assert outcome.verdict is ChunkVerdict.ACCEPT, outcome.reason
    restored = joiner.executor
    assert (restored.height, restored.state_root) == (10, roots[10])
    # It goes on like the servers, and serves snapshots of its own.
    for block in blocks[10:20]:
        restored.apply_block(block)
        joiner.after_commit()
    while joiner.work():
        pass
    assert restored.state_root == roots[20]
    assert [s.height for s in joiner.list_snapshots()] == [20, 15]
    # A node with a state refuses state sync altogether.
    assert good.offer_snapshot(snapshot, roots[10]) is OfferVerdict.ABORT
    assert joiner.offer_snapshot(snapshot, roots[10]) is OfferVerdict.ABORT
    for node in (*servers, joiner):
        node.close()
        node.executor.close()


def test_bad_offers_and_a_rejected_snapshot_leave_the_joiner_empty(tmp_path: Path) -> None:
    blocks, roots = _blocks(10)
    server = _node(str(tmp_path / "server"))
    for block in blocks:
        server.executor.apply_block(block)
    server.after_commit()
    while server.work():
        pass
    snapshot = server.list_snapshots()[0]
    joiner = _node(str(tmp_path / "joiner"))
    assert joiner.offer_snapshot(snapshot, roots[9]) is OfferVerdict.REJECT  # wrong app hash
    other = Snapshot(snapshot.height, 2, snapshot.chunks, snapshot.hash, snapshot.metadata)
    assert joiner.offer_snapshot(other, roots[10]) is OfferVerdict.REJECT_FORMAT
    outcome = joiner.apply_snapshot_chunk(0, b"", "x")
    assert outcome.verdict is ChunkVerdict.ABORT  # nothing accepted
    assert joiner.executor.height == 0
    assert joiner.executor.store is not None and joiner.executor.store.head_height == 0
    for node in (server, joiner):
        node.close()
        node.executor.close()


def test_for_node_reads_the_test_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CORRUPT_CHUNKS_ENV, "1")
    monkeypatch.setenv(CHUNK_LIMIT_ENV, "2048")
    directory = str(tmp_path / "node")
    lines: list[str] = []
    sync = StateSync.for_node(Executor.open(directory), lambda **_: Executor.open(directory),
                              log=lines.append)
    assert sync.corrupt_chunks and sync.chunk_limit == 2048
    assert any("TEST FAULT" in line for line in lines)
    sync.close()
    sync.executor.close()
    monkeypatch.delenv(CORRUPT_CHUNKS_ENV)
    monkeypatch.delenv(CHUNK_LIMIT_ENV)
    sync = StateSync.for_node(Executor.open(directory), lambda **_: Executor.open(directory))
    assert not sync.corrupt_chunks and sync.chunk_limit == 4 * 1024 * 1024
    sync.close()
    sync.executor.close()
    for value, corrupt in ((directory, True), (str(tmp_path / "other"), False)):
        monkeypatch.setenv(CORRUPT_CHUNKS_ENV, value)  # one node of a network, by its store
        sync = StateSync.for_node(Executor.open(directory), lambda **_: Executor.open(directory))
        assert sync.corrupt_chunks is corrupt
        sync.close()
        sync.executor.close()


def test_background_driver_builds_snapshots_between_requests(tmp_path: Path) -> None:
    blocks, _ = _blocks(10)
    server = _node(str(tmp_path / "server"))

    async def scenario() -> list[int]:
        idle = asyncio.Event()
        driver = asyncio.create_task(run_in_background(server, idle))
        for block in blocks:
            server.executor.apply_block(block)
            server.after_commit()
            idle.set()
            await asyncio.sleep(0)
        for _ in range(1000):
            if not server.service or not server.service.pending:
                break
            await asyncio.sleep(0.001)
        driver.cancel()
        return [s.height for s in server.list_snapshots()]

    assert asyncio.run(scenario()) == [10, 5]
    server.close()
    server.executor.close()


def test_freeze_heap_moves_what_is_alive_out_of_the_collectors_scans() -> None:
    import gc

    from block_exec.statesync import freeze_heap

    alive = [[n] for n in range(1000)]  # tracked containers
    try:
        frozen, seconds = freeze_heap()
        assert frozen == gc.get_freeze_count() >= len(alive) and seconds >= 0
        assert not any(obj is alive for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
    assert any(obj is alive for obj in gc.get_objects(generation=2))
