"""`coreledger bench`: speed, memory and scaling, each figure beside a baseline of the same run.

The machine this runs on is shared and noisy, so absolute figures drift between runs; the
ratios to a baseline measured in the same process at the same moment do not. Every
workload runs on deterministic generated input (splitmix64), never on wall-clock seeds.

Figures are JSON objects, one per workload: name, operations, seconds, ops_per_s,
us_per_op (mean) and, where each operation is timed alone, p50/p99/p99.9 in microseconds;
peak memory where it is measured; plus the baseline's figures and the ratio.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from block_exec.bench_baseline import SimpleBook, SimpleOrder
from block_exec.simulate import SplitMix64, user_address
from state_machine import CoreStateMachine, Side, Tif

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


def _time_each(operation: Callable[[int], object], count: int) -> tuple[float, list[int]]:
    """Run operation(i) for i in range(count), timing each call alone."""
    clock = time.perf_counter_ns
    samples = [0] * count
    gc.disable()  # a collection landing inside one sample is noise, not the structure's cost
    try:
        for index in range(count):
            start = clock()
            operation(index)
            samples[index] = clock() - start
    finally:
        gc.enable()
    return sum(samples) / 1e9, samples


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
    machine, quotes = _book_with_depth(depth, seed=depth)
    batch = [next(quotes) for _ in range(operations)]
    limit = machine.limit
    gtc = Tif.GTC

    def insert(index: int) -> None:
        user, side, price, size = batch[index]
        limit(user, 1, side, price, size, gtc)

    seconds, samples = _time_each(insert, operations)
    assert len(machine.orders) == depth + operations  # none crossed
    return figure(
        f"resting_insert/depth={depth}", operations, seconds, depth=depth,
        **_percentiles(samples),
    )


def bench_cancels(depth: int, operations: int) -> Figure:
    machine, _ = _book_with_depth(depth + operations, seed=depth + 1)
    rng = SplitMix64(depth + 2)
    ids = list(machine.orders)
    for index in range(len(ids) - 1, 0, -1):  # Fisher-Yates with the deterministic rng
        other = rng.below(index + 1)
        ids[index], ids[other] = ids[other], ids[index]
    targets = [(machine.orders[order_id].user, order_id) for order_id in ids[:operations]]
    cancel = machine.cancel

    def cancel_one(index: int) -> None:
        user, order_id = targets[index]
        cancel(user, 1, order_id)

    seconds, samples = _time_each(cancel_one, operations)
    assert len(machine.orders) == depth
    return figure(
        f"cancel/depth={depth}", operations, seconds, depth=depth, **_percentiles(samples)
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

    insert_seconds, insert_samples = _time_each(insert, operations)
    rng = SplitMix64(depth + 2)
    targets = [1 + rng.below(depth + operations) for _ in range(operations)]

    def cancel_one(index: int) -> None:
        book.cancel(targets[index])

    cancel_seconds, cancel_samples = _time_each(cancel_one, operations)
    return (
        figure(
            f"baseline_resting_insert/depth={depth}", operations, insert_seconds, depth=depth,
            **_percentiles(insert_samples),
        ),
        figure(
            f"baseline_cancel/depth={depth}", operations, cancel_seconds, depth=depth,
            **_percentiles(cancel_samples),
        ),
    )


def bench_memory_per_order(orders: int) -> Figure:
    """Bytes of Python heap per resting order (book, index, accounts), by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    machine, _ = _book_with_depth(orders, seed=7)
    seconds = time.perf_counter() - start
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(machine.orders) == orders
    return figure(
        f"memory_per_resting_order/orders={orders}", orders, seconds,
        bytes_per_order=current // orders, peak_memory_bytes=peak,
        note="core only (books, order index, accounts); seconds include tracemalloc overhead",
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
    return figures


def run_all(quick: bool) -> list[Figure]:
    """Every workload; `quick` keeps the whole run under about 30 seconds."""
    return core_benchmarks(quick)
