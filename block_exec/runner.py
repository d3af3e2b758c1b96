"""The `run` loop: blocks from a file or the simulated market, applied to a store's
executor one at a time, with clean stops on SIGINT/SIGTERM and a receipts file whose
every line is whole.

This is the batch job of the CLI, so it also owns the process settings a batch job wants
(the garbage collector's thresholds); an embedding node calls `Executor.apply_block` itself
and decides its own.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from block_exec.decode import block_from_obj
from block_exec.encode import block_hash
from block_exec.errors import BlockMismatch
from block_exec.executor import Executor
from block_exec.simulate import MarketConfig, SimulatedMarket
from block_exec.types import Block
from state_machine.errors import CoreledgerError


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...


@dataclass(slots=True)
class RunTotals:
    """What a run did; `blocks` counts applied blocks, `skipped` those already stored."""

    blocks: int = 0
    skipped: int = 0
    txs: int = 0
    fills: int = 0
    rejected: int = 0
    checkpoints: int = 0


class Interrupted(CoreledgerError):
    """SIGINT or SIGTERM arrived; the run stopped at a block boundary (all of it stored)."""

    def __init__(self, signal_name: str, height: int) -> None:
        super().__init__(
            f"interrupted ({signal_name}): stopped at height {height}, "
            "every block up to it stored; run again to resume"
        )
        self.signal_name = signal_name
        self.height = height


def tune_gc() -> None:
    """Fewer, cheaper collections for a long batch job.

    The engine allocates few cycles but very many long-lived containers (orders, levels,
    tree nodes); CPython's default gen-0 threshold of 700 makes it re-scan them constantly.
    Freezing what exists and raising the threshold keeps collections rare; this is a
    process setting of the CLI, not of the library (an embedding node decides its own).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


class StopRequests:
    """SIGINT and SIGTERM, taken between blocks rather than wherever they land.

    A KeyboardInterrupt raised inside a C extension's callback (cbor2 calls back into
    Python while encoding) can be swallowed and printed as "Exception ignored", and the
    run goes on; a flag checked at each block boundary stops cleanly, with every applied
    block stored and every receipts line written whole.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request)
        return self

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class ReceiptsWriter:
    """A JSON Lines file written one whole line at a time.

    Each line goes out in one unbuffered `write(2)` (looping only on a short write) once
    its block is stored (`DurableLines`), so whatever stops the run (a handled signal, an exception,
    a kill between two blocks) leaves the file ending with a complete line: nothing is
    held in a userspace buffer that could be cut in half. A kill -9 during the `write(2)`
    itself can still cut that last line short: Linux ends a killed process's write to a file
    at a page boundary, and a block's line is often longer than a page. Every line that ends
    in a newline is whole, and the next run rewrites the file.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write_line(self, line: str) -> None:
        data = memoryview((line + "\n").encode())
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def simulated_blocks(executor: Executor, count: int) -> Iterator[Block]:
    """The simulated market's blocks above the executor's height, up to `count`."""
    market = SimulatedMarket(MarketConfig(blocks=count))
    for height in range(executor.height + 1, count + 1):
        yield block_from_obj(market.block(height, executor.state), f"simulated block {height}")


class DurableLines:
    """Receipts lines waiting for their block to be durable (a pipelined executor's
    `durable_height`), written in height order as soon as it is: the file never holds
    the line of a block the store could lose."""

    def __init__(self, executor: Executor, receipts: ReceiptsWriter | None) -> None:
        self.executor = executor
        self.receipts = receipts
        self.pending: deque[tuple[int, str]] = deque()

    def add(self, height: int, line: str) -> None:
        if self.receipts is None:
            return
        self.pending.append((height, line))
        self.write(self.executor.durable_height)

    def write(self, durable: int) -> None:
        pending, receipts = self.pending, self.receipts
        while pending and pending[0][0] <= durable:
            assert receipts is not None
            receipts.write_line(pending.popleft()[1])

    def drain(self) -> None:
        """Wait until every applied block is durable, then write their lines."""
        self.executor.wait_durable()
        self.write(self.executor.height)

    def drain_what_is_durable(self) -> None:
        """On the way out with an error: the lines of what the store holds, no more."""
        with contextlib.suppress(CoreledgerError):
            self.executor.wait_durable()
        self.write(self.executor.durable_height)


def run_blocks(
    executor: Executor,
    blocks: Iterator[Block],
    *,
    stop: StopRequests,
    receipts: ReceiptsWriter | None = None,
    progress: Progress | None = None,
) -> RunTotals:
    """Apply `blocks` in order; a block at or below the head must equal the stored one.

    Raises Interrupted at the first block boundary after a stop request, and
    BlockMismatch for a block that differs from the stored one at its height. With a
    pipelined executor, a block's receipts line is written once the block is durable;
    when this returns or raises, every applied block is (or the writer failed).
    """
    assert executor.store is not None
    lines = DurableLines(executor, receipts)
    try:
        totals = _run(executor, blocks, stop, lines, progress)
        lines.drain()
    except BaseException:
        lines.drain_what_is_durable()
        raise
    return totals


def _run(
    executor: Executor,
    blocks: Iterator[Block],
    stop: StopRequests,
    lines: DurableLines,
    progress: Progress | None,
) -> RunTotals:
    totals = RunTotals()
    for block in blocks:
        if stop.signal_name is not None:
            lines.drain()
            raise Interrupted(stop.signal_name, executor.height)
        if block.height <= executor.height:
            executor.flush()  # a pipelined store is read here again
            lines.drain()
            store = executor.store
            assert store is not None
            stored = store.block(block.height)
            given = block_hash(block)
            if stored is None or stored.block_hash != given:
                raise BlockMismatch(
                    f"block at height {block.height} differs from the stored one "
                    f"(stored {stored.block_hash.hex() if stored else None}, "
                    f"given {given.hex()})",
                    height=block.height,
                )
            totals.skipped += 1
            if lines.receipts is not None:  # one line a block, applied now or before
                lines.receipts.write_line(stored.receipts.decode())
            continue
        result = executor.apply_block(block)
        totals.blocks += 1
        totals.txs += len(block.txs)
        for ok, _, _, fills, *_ in result.results:
            if ok:
                totals.fills += len(fills)
            else:
                totals.rejected += 1
        if result.state_root is not None:
            totals.checkpoints += 1
        assert result.receipts_line is not None
        lines.add(block.height, result.receipts_line)  # once the store has kept it
        if progress is not None:
            progress.update(1)
    return totals
