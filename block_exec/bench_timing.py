"""The timing harnesses of `bench`: `time_each` (the list baseline's figures) and
`time_rounds` (the resting insert and cancel figures: the operation at a steady depth).

An insert or cancel figure names the depth of the book it ran on, so the book must stay at
that depth while it is timed. 100,000 inserts on a book of 1,000 orders would measure books
of 1,000 to 101,000 orders (and 100,000 cancels from 101,000 down to 1,000): mostly the
deep book, and different work (at 1,000 orders over 40,000 prices most inserts open a
level; at 50,000 most join one). So the operations run in rounds of `chunk` (a tenth of the
depth): each round's operations are timed, then `restore` puts the book back untimed
(the inserts are cancelled newest first, or the cancelled orders' places are taken by new
ones), so every operation runs on a book of depth to depth + chunk orders.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def chunk_for(depth: int, operations: int) -> int:
    """Operations per round: a tenth of the depth (at least 1, at most half the operations)."""
    return max(1, min(depth // 10, operations // 2))


def time_rounds(
    operation: Callable[[int], object],
    count: int,
    run_batch: Callable[[int, int], object],
    chunk: int,
    restore: Callable[[int, int], object],
) -> tuple[float, float, list[int]]:
    """Run the `count` operations in rounds of `chunk`; return (wall seconds per op, CPU
    seconds per op, samples in ns).

    The first half gives the means: each round is one `run_batch(start, stop)`, a bare
    loop over the pre-built inputs (no per-op Python call of a closure), timed by the wall
    clock and by process time (the figure to compare on a shared machine), then
    `restore(start, stop)` untimed. The second half, timed call by call through
    `operation(i)` (~0.7 us of clock reads and calls per sample), gives only the
    percentiles, with the same rounds. The cyclic GC is off throughout: a collection
    landing in a sample is noise, not the structure's cost.
    """
    clock = time.perf_counter_ns
    half = count // 2
    samples: list[int] = []
    wall = cpu = 0.0
    gc.disable()
    try:
        for start in range(0, half, chunk):
            stop = min(start + chunk, half)
            wall_start = time.perf_counter()
            cpu_start = time.process_time()
            run_batch(start, stop)
            cpu += time.process_time() - cpu_start
            wall += time.perf_counter() - wall_start
            restore(start, stop)
        for start in range(half, count, chunk):
            stop = min(start + chunk, count)
            for index in range(start, stop):
                start_ns = clock()
                operation(index)
                samples.append(clock() - start_ns)
            restore(start, stop)
    finally:
        gc.enable()
    return wall / half, cpu / half, samples


def time_each(operation: Callable[[int], object], count: int) -> tuple[float, float, list[int]]:
    """Run operation(i) for i in range(count); return (wall seconds per op, CPU seconds
    per op, samples in ns).

    The first half, operation(i) called in a loop without a clock read per call, gives the
    means (with the loop's ~0.1-0.3 us per call of harness). Timing each call alone costs
    ~0.7 us of clock reads and calls per sample here, as much as a quarter of the
    operation, so the second half, timed call by call through `operation`, gives only the
    percentiles (which include that overhead). Both halves run at the same depth to within `count`
    orders. The CPU time (process time) is the figure to compare on a shared machine.
    """
    clock = time.perf_counter_ns
    half = count // 2
    samples = [0] * (count - half)
    gc.disable()  # a collection landing inside one sample is noise, not the structure's cost
    try:
        start = time.perf_counter()
        cpu_start = time.process_time()
        for index in range(half):
            operation(index)
        cpu_mean = (time.process_time() - cpu_start) / half
        mean = (time.perf_counter() - start) / half
        for index in range(half, count):
            start_ns = clock()
            operation(index)
            samples[index - half] = clock() - start_ns
    finally:
        gc.enable()
    return mean, cpu_mean, samples
