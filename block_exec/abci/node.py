"""`coreledger node --db DIR --abci ADDR [--checkpoint-interval N] [--keep K]
[--metrics HOST:PORT]`: serve the ABCI application until SIGTERM or SIGINT (exit 0)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the server's modules (protobuf, prometheus, asyncio) load only to serve
    import asyncio

    from block_exec.abci.server import AbciServer
    from block_exec.statesync import StateSync, Trusted

log = logging.getLogger("coreledger.node")



class NodeFailed(Exception):
    """The node cannot start (bad address, store that does not open): exit status 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR", required=True, help="the node's store")
    parser.add_argument("--abci", metavar="ADDR", default="tcp://127.0.0.1:26658",
                        help="tcp://HOST:PORT or unix://PATH (default tcp://127.0.0.1:26658)")
    parser.add_argument("--checkpoint-interval", metavar="N", type=int, default=None,
                        help="checkpoint every N blocks (fixed when the store is made; "
                        "default 100 for a new store, as for run: a block's signers and "
                        "nonces are stored with it, so recovery replays the blocks after "
                        "the latest checkpoint exactly)")
    parser.add_argument("--keep", metavar="K", type=int, default=10,
                        help="checkpoints kept (default 10)")
    parser.add_argument("--chain-id", metavar="ID",
                        help="the chain id, for a store that does not record it (it must "
                        "match InitChain's)")
    parser.add_argument("--snapshot-interval", metavar="N", type=int, default=100,
                        help="state-sync snapshot of the checkpoint every N blocks, a multiple "
                        "of the checkpoint interval (snapshots are of checkpoints; default "
                        "100; 0: none)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics over HTTP there")


def check_snapshot_interval(snapshot_interval: int, checkpoint_interval: int) -> None:
    """A snapshot is taken of a checkpoint: refuse (NodeFailed) an interval that is not
    a multiple of the store's checkpoint interval (snapshots would be rarer than asked)."""
    if snapshot_interval % checkpoint_interval:
        raise NodeFailed(
            f"--snapshot-interval {snapshot_interval}: snapshots are taken of checkpoints, "
            f"so it must be a multiple of the store's checkpoint interval "
            f"{checkpoint_interval} (or 0: none)"
        )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise NodeFailed(f"bad --metrics address {text!r}: want HOST:PORT")
    return host or "127.0.0.1", int(port)


def cmd_node(args: argparse.Namespace) -> int:
    import asyncio

    from block_exec.abci.app import Application
    from block_exec.abci.ledger import Ledger
    from block_exec.abci.metrics import Metrics
    from block_exec.abci.server import AbciServer, AddressError, parse_address
    from block_exec.executor import Executor
    from block_exec.statesync import StateSync

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        address = parse_address(args.abci)
    except AddressError as exc:
        raise NodeFailed(str(exc)) from None
    metrics_at = None if args.metrics is None else _host_port(args.metrics)
    # the store's errors (corrupt, locked) reach the CLI as one line
    interval = args.checkpoint_interval  # None: as stored (100 for a new store)

    def open_executor(*, trusted: Trusted | None = None) -> Executor:
        return Executor.open(args.db, checkpoint_interval=interval, keep=args.keep,
                             trusted=trusted)

    if args.snapshot_interval < 0:
        raise NodeFailed(f"--snapshot-interval {args.snapshot_interval}: must be 0 or more")
    if interval is not None:  # before a new store is made with it
        check_snapshot_interval(args.snapshot_interval, interval)
    executor = open_executor()
    try:
        check_snapshot_interval(args.snapshot_interval, executor.checkpoint_interval)
    except NodeFailed:
        executor.close()
        raise
    sync = StateSync.for_node(executor, reopen=open_executor, log=log.info,
                              interval=args.snapshot_interval or 2**64,  # 0: never due
                              chain_id=args.chain_id or executor.chain_id)
    try:
        metrics = Metrics() if metrics_at is not None else None
        if metrics is not None and metrics_at is not None:
            metrics.height.set(executor.height)
            metrics.serve(*metrics_at)
        stored = getattr(executor, "chain_id", None)
        if args.chain_id is not None and stored is not None and stored != args.chain_id:
            raise NodeFailed(f"--chain-id {args.chain_id!r}: the store is of chain {stored!r}")
        app = Application(Ledger(executor), metrics, args.chain_id, sync, _settle_heap)
        log.info("store %s at height %d, root %s", args.db, executor.height,
                 executor.state_root.hex())
        _settle_heap()
        asyncio.run(_serve(AbciServer(address, app.handle), sync, app.committed_once))
    finally:
        sync.close()
        sync.executor.close()
    log.info("stopped")
    return 0


def _settle_heap() -> None:
    """After opening or restoring the store: freeze what is alive (statesync.freeze_heap)."""
    from block_exec.statesync import freeze_heap

    frozen, seconds = freeze_heap()
    log.info("heap frozen: %d objects (collection %.3f s)", frozen, seconds)


async def _serve(server: AbciServer, sync: StateSync, idle: asyncio.Event) -> None:
    import asyncio

    from block_exec.statesync import run_in_background

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    await server.start()
    where = server.address.path if server.address.scheme == "unix" else (
        f"{server.address.host}:{server.port}")
    log.info("serving ABCI on %s", where)
    # snapshots are taken in slices between requests (never inside FinalizeBlock/Commit)
    background = asyncio.create_task(run_in_background(sync, idle))
    try:
        await server.serve()
    finally:
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
