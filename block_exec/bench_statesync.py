"""State-sync benchmarks for `coreledger bench`: restoring a snapshot against replaying the
blocks that built it, and what snapshots cost consensus (spec/store.md, "State sync").

- `statesync/restore_snapshot`: a state of N resting orders (1,000,000; `--quick`
  20,000) is built by replaying blocks of 1,000 limit orders into a LevelDB store (the
  baseline, `statesync/replay_blocks`), the source node's snapshot service takes its
  snapshot, and a fresh node restores it through the snapshot calls in process
  (`StateSync.offer_snapshot`, `apply_snapshot_chunk` for chunks read with
  `load_snapshot_chunk`): chunk checks, rebuild and root check, the atomic install and
  the reopen of the executor (which adopts the verified state instead of rebuilding it).
  The ratio is replay time over restore time.
- `statesync/consensus_overhead`: blocks of 1,000 txs over that state (checkpoint every
  5 blocks) applied and committed with the snapshot service attached, against the same
  kind of blocks without it, on the same node. Per block, the consensus path pays
  `after_commit` (O(kept checkpoints)); the snapshot work runs in slices between blocks,
  so a FinalizeBlock arriving during a slice waits at most one slice: the figure reports
  the block times, `after_commit`'s cost and the longest slice (wall; process CPU, which
  includes LevelDB's compaction threads; and the slicing thread's own CPU). The restored
  heap is frozen first (`freeze_heap`), as `coreledger node` does.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time

from block_exec.bench import figure
from block_exec.executor import Executor
from block_exec.simulate import GENESIS_TIME_MS, SplitMix64, user_address
from block_exec.statesync import StateSync, Trusted, freeze_heap
from block_exec.types import Block, Cancel, Deposit, Limit, Tx
from state_machine import Side, Tif
from store.snapshots import DEFAULT_WORK_BUDGET_NS

Figure = dict[str, object]
ASSETS = (1, 2, 3, 4)
USERS = [user_address(0x7000 + i) for i in range(200)]
MID = 1_000_000
ORDERS_PER_BLOCK = 1_000


def _quote(rng: SplitMix64) -> Limit:
    """A resting quote: bids below MID, asks above (never crossing), 50,000 levels a side."""
    user = USERS[rng.below(len(USERS))]
    asset = ASSETS[rng.below(len(ASSETS))]
    offset = 1 + rng.below(50_000)
    if rng.below(2):
        return Limit(user, asset, Side.BUY, MID - offset, 1 + rng.below(100), Tif.GTC)
    return Limit(user, asset, Side.SELL, MID + offset, 1 + rng.below(100), Tif.GTC)


def build_blocks(orders: int) -> list[Block]:
    """A funding block, then blocks of 1,000 resting limit orders (`orders` in all)."""
    funding: list[Tx] = [Deposit(user, asset, 10**18) for user in USERS
                         for asset in (0, *ASSETS)]
    blocks = [Block(1, GENESIS_TIME_MS, tuple(funding))]
    rng = SplitMix64(15)
    height = 1
    for start in range(0, orders, ORDERS_PER_BLOCK):
        height += 1
        count = min(ORDERS_PER_BLOCK, orders - start)
        txs = tuple(_quote(rng) for _ in range(count))
        blocks.append(Block(height, GENESIS_TIME_MS + height * 100, txs))
    return blocks


class _Clock:
    """Wall and process CPU time since it started: on a shared machine the CPU time is
    what the work cost, the wall time what a node would have waited."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


class _SliceClock(_Clock):
    """Also the calling thread's own CPU time: the process's includes LevelDB's
    background compaction threads, busy after each block's writes, on the other core."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = time.thread_time()

    def read_thread(self) -> float:
        return time.thread_time() - self.thread


def _replay(directory: str, blocks: list[Block]) -> tuple[Executor, tuple[float, float]]:
    executor = Executor.open(directory, checkpoint_interval=len(blocks), keep=2)
    clock = _Clock()
    for block in blocks:
        executor.apply_block(block)
    return executor, clock.read()


def _restore(server: StateSync, directory: str) -> tuple[StateSync, tuple[float, float], int]:
    def reopen(*, trusted: Trusted | None = None) -> Executor:
        return Executor.open(directory, trusted=trusted, checkpoint_interval=5, keep=2)

    snapshot = server.list_snapshots()[0]
    app_hash = server.executor.state_root
    clock = _Clock()
    joiner = StateSync(reopen(), reopen, interval=5)
    verdict = joiner.offer_snapshot(snapshot, app_hash)
    if verdict.value != "accept":
        raise RuntimeError(f"snapshot offer refused: {verdict}")
    for index in range(snapshot.chunks):
        chunk = server.load_snapshot_chunk(snapshot.height, snapshot.format, index)
        outcome = joiner.apply_snapshot_chunk(index, chunk, "server")
        if outcome.verdict.value != "accept":
            raise RuntimeError(f"chunk {index}: {outcome.reason}")
    spent = clock.read()
    if joiner.executor.state_root != app_hash:
        raise RuntimeError("restored root differs")
    return joiner, spent, snapshot.chunks


def bench_restore(orders: int, workdir: str) -> tuple[list[Figure], StateSync]:
    blocks = build_blocks(orders)
    server_executor, (replay_wall, replay_cpu) = _replay(os.path.join(workdir, "server"), blocks)
    txs = sum(len(block.txs) for block in blocks)
    replay = figure(f"statesync/replay_blocks/orders={orders}", txs, replay_wall,
                    cpu_seconds=round(replay_cpu, 3), blocks=len(blocks))
    server = StateSync(server_executor, lambda **_: server_executor, interval=len(blocks))
    clock = _Clock()
    server.after_commit()
    while server.work():
        pass
    take_wall, take_cpu = clock.read()
    latest = server_executor.store.latest_checkpoint() if server_executor.store else None
    entries = latest.entry_count if latest else 0
    take = figure(f"statesync/take_snapshot/orders={orders}", entries, take_wall,
                  cpu_seconds=round(take_cpu, 3))
    joiner, (wall, cpu), chunks = _restore(server, os.path.join(workdir, "joiner"))
    restore = figure(
        f"statesync/restore_snapshot/orders={orders}", entries, wall,
        cpu_seconds=round(cpu, 3), chunks=chunks,
        baseline=replay["name"], baseline_seconds=replay["seconds"],
        baseline_cpu_seconds=replay["cpu_seconds"],
        speedup_vs_baseline=round(replay_wall / wall, 2),
        cpu_speedup_vs_baseline=round(replay_cpu / cpu, 2),
    )
    server.close()
    server_executor.close()
    return [replay, take, restore], joiner


def _traffic(rng: SplitMix64, executor: Executor, height: int, time_ms: int) -> Block:
    """1,000 txs: half new resting quotes, half cancels of resting orders."""
    txs: list[Tx] = []
    resting = executor.state.orders
    newest = executor.state.next_order_id
    for _ in range(ORDERS_PER_BLOCK // 2):
        txs.append(_quote(rng))
        order_id = 1 + rng.below(newest - 1)
        order = resting.get(order_id)
        if order is not None:
            txs.append(Cancel(order.user, order.asset, order_id))
    return Block(height, time_ms, tuple(txs))


Times = list[tuple[float, float]]  # (wall, cpu) seconds


def _run_blocks(sync: StateSync, count: int, rng: SplitMix64, attached: bool,
                gap_seconds: float) -> tuple[Times, Times, Times, list[float]]:
    """Apply `count` blocks; with `attached`, call after_commit and run work slices in a
    gap after each block. Returns block, after_commit and slice times, and the slices'
    thread CPU seconds."""
    executor = sync.executor
    blocks: Times = []
    commits: Times = []
    slices: Times = []
    slice_threads: list[float] = []
    for _ in range(count):
        block = _traffic(rng, executor, executor.height + 1, executor.last_time + 100)
        clock = _Clock()
        executor.apply_block(block)
        applied = clock.read()
        if attached:
            sync.after_commit()
        done = clock.read()
        blocks.append(done)
        commits.append((done[0] - applied[0], done[1] - applied[1]))
        if attached:
            gap_end = time.perf_counter() + gap_seconds
            while time.perf_counter() < gap_end:
                slice_clock = _SliceClock()
                more = sync.work()
                slices.append(slice_clock.read())
                slice_threads.append(slice_clock.read_thread())
                if not more:
                    break
    return blocks, commits, slices, slice_threads


def _ms(times: Times, per_mille: int, cpu: bool = False) -> float:
    ordered = sorted(t[1 if cpu else 0] for t in times) or [0.0]
    return round(ordered[min(len(ordered) - 1, len(ordered) * per_mille // 1000)] * 1e3, 3)


def bench_consensus_overhead(sync: StateSync, count: int) -> Figure:
    rng = SplitMix64(16)
    frozen, freeze_seconds = freeze_heap()  # as `coreledger node` does after a restore
    sync.close()  # detached: the baseline blocks
    base_blocks, _, _, _ = _run_blocks(sync, count, rng, False, 0.0)
    sync.service = sync._service()
    with_blocks, commits, slices, threads = _run_blocks(sync, count, rng, True, 0.08)
    while sync.work():  # what was left when the last block came: finish it off the clock
        pass
    listed = [s.height for s in sync.list_snapshots()]
    return figure(
        "statesync/consensus_overhead", count, sum(t[0] for t in with_blocks),
        block_ms_p50=_ms(with_blocks, 500), block_ms_max=_ms(with_blocks, 1000),
        baseline="blocks without snapshots", baseline_block_ms_p50=_ms(base_blocks, 500),
        baseline_block_ms_max=_ms(base_blocks, 1000),
        after_commit_ms_max=_ms(commits, 1000),
        after_commit_cpu_ms_max=_ms(commits, 1000, cpu=True),
        work_slices=len(slices),
        work_slice_ms_p99=_ms(slices, 990), work_slice_ms_max=_ms(slices, 1000),
        work_slice_cpu_ms_p99=_ms(slices, 990, cpu=True),
        work_slice_cpu_ms_max=_ms(slices, 1000, cpu=True),
        work_slice_thread_cpu_ms_p99=_ms([(t, t) for t in threads], 990),
        work_slice_thread_cpu_ms_max=_ms([(t, t) for t in threads], 1000),
        work_slice_budget_ms=DEFAULT_WORK_BUDGET_NS / 1e6,
        heap_frozen_objects=frozen, heap_freeze_seconds=round(freeze_seconds, 3),
        snapshots_listed=listed,
    )


def run_benchmarks(quick: bool) -> list[Figure]:
    orders = 20_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="coreledger-bench-statesync-") as workdir:
        figures, joiner = bench_restore(orders, workdir)
        try:
            figures.append(bench_consensus_overhead(joiner, 10 if quick else 40))
        finally:
            gc.unfreeze()  # the benchmarks that follow run with the collector as usual
            joiner.close()
            joiner.executor.close()
    return figures
