"""`coreledger bench`: speed, memory and scaling, each figure beside a baseline of the same run.

The machine this runs on is shared and noisy, so absolute figures drift between runs; the
ratios to a baseline measured in the same process at the same moment do not. Every
workload runs on deterministic generated input (splitmix64), never on wall-clock seeds.

Figures are JSON objects, one per workload: name, operations, seconds, ops_per_s,
us_per_op (mean, from an untimed loop: for inserts and cancels a bare loop over the
pre-built inputs, their cpu_us_per_op the same in process time, on a book held between
`depth` and `depth_max` orders by `bench_timing`'s rounds) and, where operations are also
timed one by one, p50/p99/p99.9 in microseconds (these include ~0.7 us of timing
overhead per sample); peak memory where it is measured; plus the baseline's figures and
the ratio.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from blake3 import blake3

from block_exec.bench_baseline import SimpleBook, SimpleOrder
from block_exec.bench_timing import chunk_for, time_each, time_rounds
from block_exec.decode import block_from_obj, decode_json_block, iter_json_blocks
from block_exec.executor import Executor
from block_exec.receipts_json import block_receipts_line
from block_exec.runner import ReceiptsWriter, StopRequests, run_blocks
from block_exec.simulate import MarketConfig, SimulatedMarket, SplitMix64, user_address
from block_exec.types import Cancel, Deposit, Limit, Market
from state_machine import CoreStateMachine, Side, Tif, state_entries
from store.roots import commitment_of

Figure = dict[str, Any]

MID = 1_000_000
USERS = [user_address(0x5000 + i) for i in range(64)]


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    count = len(ordered)

    def at(per_mille: int) -> float:
        return round(ordered[min(count - 1, count * per_mille // 1000)] / 1000, 3)

    return {"p50_us": at(500), "p99_us": at(990), "p99_9_us": at(999)}


def figure(name: str, operations: int, seconds: float, **extra: Any) -> Figure:
    result: Figure = {
        "name": name,
        "operations": operations,
        "seconds": round(seconds, 6),
        "ops_per_s": round(operations / seconds) if seconds > 0 else None,
        "us_per_op": round(seconds * 1e6 / operations, 3) if operations else None,
    }
    result.update(extra)
    return result


def _funded_machine() -> CoreStateMachine:
    machine = CoreStateMachine()
    for user in USERS:
        machine.deposit(user, 0, 10**19)
        machine.deposit(user, 1, 10**19)
    return machine


def _resting_quotes(seed: int) -> Iterator[tuple[str, Side, int, int]]:
    """Non-crossing quotes: bids below MID, asks above, over 20,000 price levels per side."""
    rng = SplitMix64(seed)
    while True:
        user = USERS[rng.below(len(USERS))]
        offset = 1 + rng.below(20_000)
        if rng.below(2):
            yield user, Side.BUY, MID - offset, 1 + rng.below(100)
        else:
            yield user, Side.SELL, MID + offset, 1 + rng.below(100)


def _book_with_depth(depth: int, seed: int) -> tuple[CoreStateMachine, Iterator[Any]]:
    machine = _funded_machine()
    quotes = _resting_quotes(seed)
    for _ in range(depth):
        user, side, price, size = next(quotes)
        machine.limit(user, 1, side, price, size, Tif.GTC)
    return machine, quotes


def bench_resting_inserts(depth: int, operations: int) -> Figure:
    """Resting (non-crossing gtc) inserts on a book of `depth` to depth + chunk orders:
    each round of `chunk` inserts (`bench_timing`) is cancelled newest first, untimed,
    which puts the book back as it was (the levels it opened closed again). The changes
    are drained after the build, as a node drains them at each checkpoint."""
    machine, quotes = _book_with_depth(depth, seed=depth)
    machine.drain_changes()
    batch = [next(quotes) for _ in range(operations)]
    limit = machine.limit
    cancel = machine.cancel
    gtc = Tif.GTC
    first_id = machine.next_order_id  # insert i gets id first_id + i: none crosses

    def insert(index: int) -> None:
        user, side, price, size = batch[index]
        limit(user, 1, side, price, size, gtc)

    def insert_batch(start: int, stop: int) -> None:
        for user, side, price, size in batch[start:stop]:
            limit(user, 1, side, price, size, gtc)

    def undo(start: int, stop: int) -> None:
        for index in range(stop - 1, start - 1, -1):
            cancel(batch[index][0], 1, first_id + index)

    chunk = chunk_for(depth, operations)
    mean, cpu_mean, samples = time_rounds(insert, operations, insert_batch, chunk, undo)
    assert len(machine.orders) == depth and machine.next_order_id == first_id + operations
    return figure(
        f"resting_insert/depth={depth}", operations, mean * operations, depth=depth,
        depth_max=depth + chunk, cpu_us_per_op=round(cpu_mean * 1e6, 3),
        **_percentiles(samples),
    )


def bench_cancels(depth: int, operations: int) -> Figure:
    """Cancels of resting orders picked at random, on a book of depth + chunk down to
    `depth` orders: after each round of `chunk` cancels (`bench_timing`) as many new orders
    rest, untimed, and the next round's targets are picked among all resting orders."""
    chunk = chunk_for(depth, operations)
    machine, quotes = _book_with_depth(depth + chunk, seed=depth + 1)
    machine.drain_changes()
    rng = SplitMix64(depth + 2)
    resting = list(machine.orders)  # ids in id order (a dict keeps insertion order)
    targets: list[tuple[str, int]] = []
    limit = machine.limit
    cancel = machine.cancel
    gtc = Tif.GTC

    def pick(count: int) -> None:
        for _ in range(count):
            at = rng.below(len(resting))
            order_id = resting[at]
            resting[at] = resting[-1]
            resting.pop()
            targets.append((machine.orders[order_id].user, order_id))

    def cancel_one(index: int) -> None:
        user, order_id = targets[index]
        cancel(user, 1, order_id)

    def cancel_batch(start: int, stop: int) -> None:
        for user, order_id in targets[start:stop]:
            cancel(user, 1, order_id)

    def refill(start: int, stop: int) -> None:
        for _ in range(stop - start):
            user, side, price, size = next(quotes)
            order_id = limit(user, 1, side, price, size, gtc)[2]
            assert order_id is not None
            resting.append(order_id)
        pick(min(chunk, operations - stop))

    pick(chunk)
    mean, cpu_mean, samples = time_rounds(cancel_one, operations, cancel_batch, chunk, refill)
    assert len(machine.orders) == depth + chunk
    return figure(
        f"cancel/depth={depth}", operations, mean * operations, depth=depth,
        depth_max=depth + chunk, cpu_us_per_op=round(cpu_mean * 1e6, 3),
        **_percentiles(samples),
    )


def bench_baseline_book(depth: int, operations: int) -> tuple[Figure, Figure]:
    """The list-and-scan baseline: resting inserts, then cancels, at `depth`."""
    book = SimpleBook()
    quotes = _resting_quotes(seed=depth)
    next_id = 1
    for _ in range(depth):
        user, side, price, size = next(quotes)
        book.add(SimpleOrder(next_id, user, price, size), side == Side.BUY)
        next_id += 1
    batch = [next(quotes) for _ in range(operations)]
    first_id = next_id

    def insert(index: int) -> None:
        user, side, price, size = batch[index]
        book.add(SimpleOrder(first_id + index, user, price, size), side == Side.BUY)

    insert_mean, _, insert_samples = time_each(insert, operations)
    rng = SplitMix64(depth + 2)
    targets = [1 + rng.below(depth + operations) for _ in range(operations)]

    def cancel_one(index: int) -> None:
        book.cancel(targets[index])

    cancel_mean, _, cancel_samples = time_each(cancel_one, operations)
    return (
        figure(
            f"baseline_resting_insert/depth={depth}", operations, insert_mean * operations,
            depth=depth,
            **_percentiles(insert_samples),
        ),
        figure(
            f"baseline_cancel/depth={depth}", operations, cancel_mean * operations,
            depth=depth,
            **_percentiles(cancel_samples),
        ),
    )


def bench_memory_per_order(orders: int) -> Figure:
    """Bytes of Python heap per resting order, by tracemalloc: the core (books, order
    index, accounts) and then the state commitment over its entries (the whole node)."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    machine, _ = _book_with_depth(orders, seed=7)
    seconds = time.perf_counter() - start
    machine.drain_changes()  # a node drains them at every checkpoint
    gc.collect()
    core_bytes, _ = tracemalloc.get_traced_memory()
    commitment = commitment_of(state_entries(machine))
    commitment.root()
    gc.collect()
    total_bytes, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(machine.orders) == orders and len(commitment) >= orders
    return figure(
        f"memory_per_resting_order/orders={orders}", orders, seconds,
        bytes_per_order=total_bytes // orders,
        core_bytes_per_order=core_bytes // orders,
        tree_bytes_per_order=(total_bytes - core_bytes) // orders,
        peak_memory_bytes=peak,
        note="bytes_per_order = core + state tree; seconds include tracemalloc overhead",
    )


def bench_core_memory_per_order(orders: int) -> Figure:
    """Bytes of Python heap per resting order of the core alone (books, order index,
    accounts), by tracemalloc, on the same 40,000 price levels: at 100,000 orders a level
    holds 2.5 orders, so what a level costs shows (487 B/order with a deque per level)."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    machine, _ = _book_with_depth(orders, seed=7)
    seconds = time.perf_counter() - start
    machine.drain_changes()
    gc.collect()
    core_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(machine.orders) == orders
    levels = sum(len(b.bid_levels) + len(b.ask_levels) for b in machine.books.values())
    return figure(
        f"core_memory_per_resting_order/orders={orders}", orders, seconds,
        core_bytes_per_order=core_bytes // orders, levels=levels,
        note="the core only (no state tree); seconds include tracemalloc overhead",
    )


def with_ratio(measured: Figure, baseline: Figure) -> Figure:
    """Attach the baseline and the speed-up (baseline time / measured time per op)."""
    measured = dict(measured)
    measured["baseline"] = baseline["name"]
    measured["baseline_us_per_op"] = baseline["us_per_op"]
    if measured["us_per_op"]:
        measured["speedup_vs_baseline"] = round(baseline["us_per_op"] / measured["us_per_op"], 2)
    return measured


def core_benchmarks(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    operations = 20_000 if quick else 100_000
    depths = (1_000, 100_000) if quick else (1_000, 100_000, 1_000_000)
    baseline_depth = 1_000
    baseline_insert, baseline_cancel = bench_baseline_book(baseline_depth, 2_000)
    figures.extend((baseline_insert, baseline_cancel))
    for depth in depths:
        figures.append(with_ratio(bench_resting_inserts(depth, operations), baseline_insert))
        figures.append(with_ratio(bench_cancels(depth, operations), baseline_cancel))
    figures.append(bench_memory_per_order(100_000 if quick else 1_000_000))
    if not quick:  # the quick run's figure above is at 100,000 orders already
        figures.append(bench_core_memory_per_order(100_000))
    return figures


def simulated_block_lines(blocks: int) -> list[bytes]:
    """The simulated market's first `blocks` blocks as JSON lines (generated once)."""
    market = SimulatedMarket(MarketConfig(blocks=blocks))
    executor = Executor()
    lines: list[bytes] = []
    for height in range(1, blocks + 1):
        obj = market.block(height, executor.state)
        executor.apply_block(block_from_obj(obj, "simulated"))
        lines.append(json.dumps(obj, separators=(",", ":")).encode())
    return lines


def _tx_count(lines: list[bytes]) -> int:
    return sum(len(json.loads(line)["txs"]) for line in lines)


def bench_core_flow(lines: list[bytes]) -> Figure:
    """The same flow straight into the core: decoding done beforehand, no receipts."""
    blocks = [decode_json_block(line) for line in lines]
    machine = CoreStateMachine()
    calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
    for block in blocks:
        for tx in block.txs:
            if isinstance(tx, Limit):
                arguments: tuple[Any, ...] = (tx.user, tx.asset, tx.side, tx.price, tx.size, tx.tif)
                calls.append((machine.limit, arguments))
            elif isinstance(tx, Market):
                calls.append((machine.market, (tx.user, tx.asset, tx.side, tx.size)))
            elif isinstance(tx, Cancel):
                calls.append((machine.cancel, (tx.user, tx.asset, tx.order_id)))
            elif isinstance(tx, Deposit):
                calls.append((machine.deposit, (tx.user, tx.asset, tx.amount)))
            else:
                calls.append((machine.withdraw, (tx.user, tx.asset, tx.amount)))
    start = time.perf_counter()
    for operation, arguments in calls:
        operation(*arguments)
    seconds = time.perf_counter() - start
    return figure("mixed_flow/core_only", len(calls), seconds)


def _receipts_digest(path: str) -> str:
    with open(path, "rb") as f:
        return blake3(f.read()).hexdigest()


def bench_apply_flow(lines: list[bytes], checkpoint_interval: int = 100) -> Figure:
    """decode + validate + apply_block + receipts JSON Lines, in memory, root every N
    blocks: `run --blocks FILE --receipts FILE`'s work without a store (the blocks
    decoded as `read_block_file` decodes a JSON Lines file, each block's receipts line
    written to a file by `runner.ReceiptsWriter`)."""
    executor = Executor(checkpoint_interval=checkpoint_interval)
    txs = 0
    with tempfile.TemporaryDirectory(prefix="coreledger-bench-") as directory:
        path = os.path.join(directory, "receipts.jsonl")
        receipts = ReceiptsWriter(path)
        start = time.perf_counter()
        try:
            for block in iter_json_blocks(lines):
                result = executor.apply_block(block)
                root = None if result.state_root is None else result.state_root.hex()
                receipts.write_line(block_receipts_line(block.height, root, result.results))
                txs += len(block.txs)
        finally:
            receipts.close()
        seconds = time.perf_counter() - start
        digest = _receipts_digest(path)
    return figure("mixed_flow/apply_block_in_memory", txs, seconds,
                  blocks=len(lines), checkpoint_interval=checkpoint_interval,
                  receipts_blake3=digest)


def bench_store_flow(lines: list[bytes], checkpoint_interval: int = 100) -> Figure:
    """`coreledger run --blocks FILE --receipts FILE` as the CLI runs it (`runner.run_blocks`:
    the blocks decoded as `read_block_file` decodes them, a LevelDB store pipelined to a
    writer process, each receipts line written once its block is durable), timed until
    `close` has stored it all. The same work as `bench_apply_flow` plus the store: the
    two receipts files are the same bytes (`receipts_blake3`)."""
    with tempfile.TemporaryDirectory(prefix="coreledger-bench-") as directory:
        database = os.path.join(directory, "db")
        path = os.path.join(directory, "receipts.jsonl")
        executor = Executor.open(database, checkpoint_interval=checkpoint_interval,
                                 pipelined=True)
        receipts = ReceiptsWriter(path)
        start = time.perf_counter()
        try:
            totals = run_blocks(executor, iter_json_blocks(lines), stop=StopRequests(),
                                receipts=receipts)
        finally:
            receipts.close()
            executor.close()
        seconds = time.perf_counter() - start
        size = sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(database)
            for name in names
        )
        digest = _receipts_digest(path)
    return figure("mixed_flow/run_with_store", totals.txs, seconds, blocks=len(lines),
                  checkpoint_interval=checkpoint_interval, store_bytes=size,
                  store_bytes_per_block=size // max(1, len(lines)), receipts_blake3=digest)


def flow_benchmarks(quick: bool) -> list[Figure]:
    lines = simulated_block_lines(300 if quick else 3000)
    core = bench_core_flow(lines)
    applied = bench_apply_flow(lines)
    stored = bench_store_flow(lines)
    applied["ratio_vs_core_only"] = round(applied["ops_per_s"] / core["ops_per_s"], 3)
    stored["baseline"] = applied["name"]
    stored["baseline_ops_per_s"] = applied["ops_per_s"]
    stored["ratio_vs_baseline"] = round(stored["ops_per_s"] / applied["ops_per_s"], 3)
    if stored["receipts_blake3"] != applied["receipts_blake3"]:
        raise AssertionError("the stored run wrote other receipts than the in-memory flow")
    return [core, applied, stored]


def run_all(quick: bool) -> list[Figure]:
    """Every workload; `quick` keeps the whole run under about 30 seconds."""
    from block_exec import bench_merkle as merkle_bench
    from block_exec import bench_reopen as reopen_bench
    from block_exec import bench_signed as signed_bench
    from block_exec import bench_statesync as statesync_bench
    from store import bench as store_bench

    figures = core_benchmarks(quick)
    figures.extend(flow_benchmarks(quick))
    figures.extend(store_bench.run_benchmarks(quick, reopen_bench.bench_executor_open))
    figures.extend(merkle_bench.run_benchmarks(quick))
    figures.extend(signed_bench.signed_benchmarks(quick))
    figures.extend(statesync_bench.run_benchmarks(quick))
    return figures
