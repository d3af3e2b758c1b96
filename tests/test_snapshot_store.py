"""Snapshots of real stores: taken in slices, served from files, restored into a fresh
store that then verifies and continues like one that replayed (spec/store.md, "State sync").

Expected states and roots come from an in-memory `Executor` fed the same blocks (no
store involved), not from the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from block_exec import Block, BlockSequenceError, Executor, block_from_obj
from block_exec import block_hash as chain_hash
from block_exec.simulate import MarketConfig, SimulatedMarket
from state_machine import state_entries
from store import Store, StoreError
from store.records import Entry
from store.roots import compute_roots
from store.snapshot_format import MIN_CHUNK_LIMIT, Snapshot, build_metadata, chunk_entries
from store.snapshot_restore import (
    ChunkVerdict,
    RestoredSnapshot,
    Restorer,
    install_snapshot,
)
from store.snapshots import SnapshotService

CONFIG = MarketConfig(
    blocks=40, assets=(1, 2), start_mids=(1000, 300), makers=3, takers=5,
    maker_quotes_per_block=12, maker_cancels_per_block=4, taker_orders_per_block=3,
)


class Chain:
    """The simulated market's blocks and, per height, the state an in-memory executor
    reached (entries, root): the independent reference."""

    def __init__(self, blocks: int) -> None:
        market = SimulatedMarket(CONFIG)
        reference = Executor(checkpoint_interval=1)
        self.blocks: list[Block] = []
        self.entries: dict[int, list[Entry]] = {}
        self.roots: dict[int, bytes] = {}
        for height in range(1, blocks + 1):
            block = block_from_obj(market.block(height, reference.state), f"block {height}")
            reference.apply_block(block)
            self.blocks.append(block)
            self.entries[height] = state_entries(reference.state)
            self.roots[height] = reference.state_root

    def run(self, directory: str, upto: int, start: int = 1, *,
            checkpoint_interval: int | None = None, keep: int = 10) -> Executor:
        executor = Executor.open(directory, checkpoint_interval=checkpoint_interval, keep=keep)
        for block in self.blocks[start - 1 : upto]:
            executor.apply_block(block)
        return executor


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain(40)


def _restore(service: SnapshotService, snapshot: Snapshot, app_hash: bytes) -> RestoredSnapshot:
    restorer = Restorer(snapshot, app_hash)
    for index in range(snapshot.chunks):
        chunk = service.load_chunk(snapshot.height, snapshot.format, index)
        outcome = restorer.apply(index, chunk, "server")
        assert outcome.verdict is ChunkVerdict.ACCEPT, outcome.reason
    assert restorer.restored is not None
    return restorer.restored


def _all_rows(directory: str) -> list[tuple[bytes, bytes]]:
    with Store(directory) as store:
        return list(store._db.iterator())


def test_served_snapshots_restore_into_a_store_that_verifies_and_continues(
    chain: Chain, tmp_path: Path
) -> None:
    source = chain.run(str(tmp_path / "src"), 15, checkpoint_interval=5, keep=3)
    assert source.store is not None
    service = SnapshotService(source.store, interval=5, keep=2, chunk_limit=MIN_CHUNK_LIMIT)
    for block in chain.blocks[15:23]:
        source.apply_block(block)
        service.refresh()
    service.finish()
    assert [s.height for s in service.list()] == [20, 15]
    for snapshot in service.list():
        expected = chunk_entries(chain.entries[snapshot.height], MIN_CHUNK_LIMIT)
        assert snapshot.chunks == len(expected) > 1
        served = [service.load_chunk(snapshot.height, 1, i) for i in range(snapshot.chunks)]
        assert served == expected
    assert service.load_chunk(20, 2, 0) == b""
    assert service.load_chunk(20, 1, 10**6) == b""
    assert service.load_chunk(5, 1, 0) == b""

    snapshot = service.list()[0]
    restored = _restore(service, snapshot, chain.roots[20])
    target = str(tmp_path / "dst")
    with Store(target, checkpoint_interval=7) as store:  # another interval: 20 % 7 != 0
        install_snapshot(store, restored)
    service.close()
    source.close()

    node = Executor.open(target)
    assert (node.height, node.state_root) == (20, chain.roots[20])
    assert node.last_time == chain.blocks[19].time
    assert state_entries(node.state) == chain.entries[20]
    assert node.store is not None
    assert node.store.checkpoint_heights() == [20]
    with pytest.raises(BlockSequenceError):
        node.apply_block(chain.blocks[19])  # the executor knows its height
    assert node.store.block(20) is None
    assert node.store.block_hash(20) == chain_hash(chain.blocks[19])  # the base's
    for block in chain.blocks[20:30]:
        node.apply_block(block)
    assert node.state_root == chain.roots[30]
    assert node.store.checkpoint_heights() == [20, 21, 28]
    node.close()
    node = Executor.open(target)  # recovery from the restored checkpoint + replay
    assert (node.height, node.state_root) == (30, chain.roots[30])
    node.close()
    for args in (["verify", "--db", target], ["verify", "--db", target, "--all"],
                 ["verify", "--db", target, "--height", "20"]):
        result = subprocess.run([sys.executable, "-m", "block_exec.cli", *args],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    # Against a node that replayed the same chain: equal (blocks from the base on, state).
    chain.run(str(tmp_path / "src"), 30, start=24).close()
    result = subprocess.run([sys.executable, "-m", "block_exec.cli", "diff", "--db", target,
                             "--other", str(tmp_path / "src")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["equal"] and report["first_divergent_height"] is None


def test_a_snapshot_reads_its_height_while_blocks_commit(chain: Chain, tmp_path: Path) -> None:
    source = chain.run(str(tmp_path / "src"), 10, checkpoint_interval=5, keep=1)
    assert source.store is not None
    service = SnapshotService(source.store, interval=5, keep=2, chunk_limit=MIN_CHUNK_LIMIT)
    service.work(max_entries=1)  # the set-up slice
    service.work(max_entries=1)  # one entry read
    for block in chain.blocks[10:15]:  # checkpoint 15 rewrites the latest copy, prunes 10
        source.apply_block(block)
        service.refresh()
        service.work(max_entries=3)
    assert source.store.checkpoint_heights() == [15]
    service.finish()
    by_height = {s.height: s for s in service.list()}
    assert sorted(by_height) == [10, 15]
    for height in (10, 15):
        served = [service.load_chunk(height, 1, i) for i in range(by_height[height].chunks)]
        assert served == chunk_entries(chain.entries[height], MIN_CHUNK_LIMIT)
    service.close()
    source.close()


def test_snapshots_outlive_their_checkpoints_and_restarts(chain: Chain, tmp_path: Path) -> None:
    directory = str(tmp_path / "src")
    source = chain.run(directory, 10, checkpoint_interval=1, keep=2)  # a checkpoint a block
    assert source.store is not None
    service = SnapshotService(source.store, interval=10, keep=2)
    service.finish()
    for block in chain.blocks[10:35]:
        source.apply_block(block)
        service.refresh()
        service.work()
    service.finish()
    assert source.store.checkpoint_heights() == [34, 35]
    assert [s.height for s in service.list()] == [30, 20]  # 10 dropped: keep 2
    snapshot = service.list()[1]
    restored = _restore(service, snapshot, chain.roots[20])  # checkpoint 20 is long pruned
    assert restored.entries == chain.entries[20]
    assert sorted(os.listdir(os.path.join(directory, "snapshots"))) == ["20", "30"]
    service.close()
    source.close()
    os.makedirs(os.path.join(directory, "snapshots", "40.partial"))  # a killed build
    reopened = Executor.open(directory)
    assert reopened.store is not None
    again = SnapshotService(reopened.store, interval=10, keep=2)
    assert [s.height for s in again.list()] == [30, 20]  # read back, nothing rebuilt
    assert not again._jobs
    again.finish()
    assert sorted(os.listdir(os.path.join(directory, "snapshots"))) == ["20", "30"]
    chunk = os.path.join(directory, "snapshots", "30", "0")
    with open(chunk, "r+b") as file:
        file.write(b"\xff")
    assert again.load_chunk(30, 1, 0) == b""  # a damaged file is not served
    again.close()
    reopened.close()


def test_a_rejected_restore_leaves_the_store_as_it_was(chain: Chain, tmp_path: Path) -> None:
    target = str(tmp_path / "dst")
    Store(target, checkpoint_interval=5).close()
    before = _all_rows(target)
    # Chunks of the state at 12 offered under the (trusted) app hash of 10.
    metadata, chunks = build_metadata(10, 0, bytes(32), chain.roots[10], chain.entries[12],
                                      MIN_CHUNK_LIMIT)
    restorer = Restorer(Snapshot.of(metadata), chain.roots[10])
    outcomes = [restorer.apply(i, chunk, "liar") for i, chunk in enumerate(chunks)]
    assert outcomes[-1].verdict is ChunkVerdict.REJECT_SNAPSHOT
    assert _all_rows(target) == before
    # An honest snapshot abandoned half way: nothing was written either.
    metadata, chunks = build_metadata(10, 0, bytes(32), chain.roots[10], chain.entries[10],
                                      MIN_CHUNK_LIMIT)
    restorer = Restorer(Snapshot.of(metadata), chain.roots[10])
    assert restorer.apply(0, chunks[0], "slow").verdict is ChunkVerdict.ACCEPT
    del restorer
    assert _all_rows(target) == before


def test_install_needs_an_empty_store(chain: Chain, tmp_path: Path) -> None:
    metadata, chunks = build_metadata(10, 0, bytes(32), chain.roots[10], chain.entries[10])
    restorer = Restorer(Snapshot.of(metadata), chain.roots[10])
    for index, chunk in enumerate(chunks):
        restorer.apply(index, chunk, "peer")
    assert restorer.restored is not None
    source = chain.run(str(tmp_path / "src"), 1)
    assert source.store is not None
    with pytest.raises(StoreError, match="empty store"):
        install_snapshot(source.store, restorer.restored)
    source.close()
    assert compute_roots(restorer.restored.entries).root == chain.roots[10]


class FakeClock:
    """A clock the test drives: each reading advances it by the next of `steps` (ns)."""

    def __init__(self, steps: list[int]) -> None:
        self.now = 0
        self.steps = steps
        self.readings = 0

    def __call__(self) -> int:
        self.now += self.steps[self.readings % len(self.steps)]
        self.readings += 1
        return self.now


def test_slices_end_when_their_time_is_spent_and_never_change_the_bytes(
    chain: Chain, tmp_path: Path
) -> None:
    import random

    from store.snapshots import CHECK_EVERY

    expected = chunk_entries(chain.entries[20], MIN_CHUNK_LIMIT)
    assert len(chain.entries[20]) > 3 * CHECK_EVERY  # several slices of entries
    served: list[list[bytes]] = []
    # Budget 1 ns on a clock that ticks 1 ns a reading: every reading ends the slice, so a
    # slice holds exactly CHECK_EVERY entries (the last one what is left).
    tick = FakeClock([1])
    rng = random.Random(16)
    jittery = FakeClock([rng.randrange(0, 3_000_000) for _ in range(97)])
    for name, clock, budget in (("tick", tick, 1), ("jitter", jittery, 2_000_000),
                                ("whole", FakeClock([0]), 1)):
        source = chain.run(str(tmp_path / name), 20, checkpoint_interval=5, keep=2)
        assert source.store is not None
        service = SnapshotService(source.store, interval=20, keep=2,
                                  chunk_limit=MIN_CHUNK_LIMIT, clock=clock)
        job = service._jobs[0][1]
        sizes: list[int] = []
        while service.work(budget):
            sizes.append(job.count - sum(sizes))
        if name == "tick":
            entries = sizes[1:]  # after the set-up slice
            assert entries[:-1] == [CHECK_EVERY] * (len(entries) - 1)
            assert 0 <= entries[-1] <= CHECK_EVERY
        if name == "whole":  # a clock that never moves: one slice does everything
            assert sizes == [0]
        snapshot = service.list()[0]
        served.append([service.load_chunk(20, 1, i) for i in range(snapshot.chunks)])
        with open(tmp_path / name / "snapshots" / "20" / "metadata", "rb") as file:
            served.append([file.read()])
        service.close()
        source.close()
    assert served[0] == expected and served[2] == expected and served[4] == expected
    assert served[1] == served[3] == served[5]  # the metadata too, byte for byte


def test_pruned_snapshot_files_are_deleted_a_few_at_a_time(
    chain: Chain, tmp_path: Path
) -> None:
    source = chain.run(str(tmp_path / "src"), 20, checkpoint_interval=5, keep=4)
    assert source.store is not None
    service = SnapshotService(source.store, interval=5, keep=1,
                              chunk_limit=MIN_CHUNK_LIMIT, clock=FakeClock([1]))
    service.finish()
    files = len(os.listdir(tmp_path / "src" / "snapshots" / "20"))
    assert files > 3
    for block in chain.blocks[20:25]:
        source.apply_block(block)
    service.refresh()
    while service._jobs:  # snapshot 25 done: 20 is beyond keep
        service.work(1 << 62)
    assert service._doomed
    slices = 0
    while service._doomed:
        service.work(1)  # budget 1 ns: one file deleted per slice
        slices += 1
    assert slices == files + 1  # each file, then the empty directory
    assert sorted(os.listdir(tmp_path / "src" / "snapshots")) == ["25"]
    service.close()
    source.close()
