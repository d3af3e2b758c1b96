"""`coreledger run`: apply blocks (a file, or the simulated market) to a store."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from block_exec.commands.base import Command, positive, print_json

if TYPE_CHECKING:
    from block_exec.executor import Executor
    from block_exec.runner import ReceiptsWriter, RunTotals
    from block_exec.types import Block


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blocks", metavar="FILE", help="JSON Lines or CBOR sequence of blocks")
    parser.add_argument("--db", metavar="DIR", default="./coreledger-data")
    parser.add_argument(
        "--checkpoint-interval", metavar="N", type=positive, default=None,
        help="checkpoint every N blocks (default 100; fixed when the store is made)",
    )
    parser.add_argument("--keep", metavar="K", type=positive, default=10,
                        help="checkpoints kept (default 10)")
    parser.add_argument("--receipts", metavar="FILE", help="write receipts as JSON Lines")
    parser.add_argument("--sim-blocks", metavar="N", type=positive, default=None,
                        help="blocks of the simulated market (default 3000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--sync-blocks", action="store_true",
        help="fsync every block batch: acknowledged blocks then survive power loss, not "
        "only a crash of the process (checkpoints always fsync)",
    )


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="block", file=sys.stderr, dynamic_ncols=True, leave=False)


def handle(args: argparse.Namespace) -> int:
    from block_exec.decode import read_block_file
    from block_exec.executor import Executor
    from block_exec.runner import (
        ReceiptsWriter,
        StopRequests,
        run_blocks,
        simulated_blocks,
        tune_gc,
    )
    from block_exec.simulate import MarketConfig

    with StopRequests() as stop:
        tune_gc()
        executor = Executor.open(
            args.db,
            checkpoint_interval=args.checkpoint_interval,
            keep=args.keep,
            sync_blocks=args.sync_blocks,
            pipelined=True,  # the store on the other core; receipts lines once durable
        )
        started = time.perf_counter()
        receipts: ReceiptsWriter | None = None
        progress = None
        try:
            if args.receipts:
                receipts = ReceiptsWriter(args.receipts)
            if args.blocks:
                blocks: Iterator[Block] = read_block_file(args.blocks)
                total = None
            else:
                count = args.sim_blocks or MarketConfig().blocks
                blocks = simulated_blocks(executor, count)
                total = max(0, count - executor.height)
            progress = _progress(total, not args.no_progress and sys.stderr.isatty())
            totals = run_blocks(executor, blocks, stop=stop, receipts=receipts,
                                progress=progress)
            summary = _summary(totals, time.perf_counter() - started, executor)
        finally:
            if progress is not None:
                progress.close()
            if receipts is not None:
                receipts.close()
            executor.close()
    print(
        f"applied {summary['blocks']} blocks ({summary['skipped']} already stored), "
        f"{summary['txs']} txs, {summary['fills']} fills, {summary['rejected_txs']} rejected, "
        f"{summary['tx_per_s']} tx/s, {summary['checkpoints']} checkpoints; "
        f"height {summary['height']}, root {summary['state_root']}",
        file=sys.stderr,
    )
    print_json(summary)
    return 0


def _summary(totals: RunTotals, seconds: float, executor: Executor) -> dict[str, Any]:
    return {
        "blocks": totals.blocks,
        "skipped": totals.skipped,
        "txs": totals.txs,
        "fills": totals.fills,
        "rejected_txs": totals.rejected,
        "seconds": round(seconds, 3),
        "tx_per_s": round(totals.txs / seconds) if seconds > 0 else None,
        "checkpoints": totals.checkpoints,
        "height": executor.height,
        "state_root": executor.state_root.hex(),
    }


COMMAND = Command(
    name="run",
    help="apply blocks (a file, or the built-in simulated market) to a store",
    example="coreledger run --db ./node --checkpoint-interval 100 --receipts r.jsonl",
    add_arguments=add_arguments,
    handle=handle,
)
