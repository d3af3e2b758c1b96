"""The pipelined store (`Executor.open(pipelined=True)`, what `run` uses): a writer
process stores the applied blocks. Its rows must be the synchronous path's byte for byte
(that path is pinned by tests/test_golden.py), its durable height must never run ahead
of the store, a kill -9 at any moment must recover, and a writer that dies must surface
as one line, never a hang."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from block_exec import Executor
from block_exec.executor import ExecutorBroken
from block_exec.pipeline import history_sidecar
from block_exec.types import Block, Limit, Market, Tx
from state_machine import Cancellation, CancelReason, Fill, OrderType, Side, Tif
from store import BlockRecord, OrderPlaced, Store, StoreError, blocklog
from store.committer import CommitFailed, Committer
from store.leveldb import DB
from store.records import MARKET_TIF, PackedHistory
from store.roots import compute_roots
from store.staging import StagedBatch
from store.writer import decode_block
from tests.killing import kill_and_resume
from tests.simulated import simulated_block_list

BLOCKS = 120
KILL_ATTEMPTS = 4


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    return simulated_block_list(BLOCKS)


def all_rows(directory: Path) -> list[tuple[bytes, bytes]]:
    db = DB(str(directory / "leveldb"))
    try:
        return list(db.iterator())
    finally:
        db.close()


def run(directory: Path, blocks: list[Block], pipelined: bool) -> Executor:
    executor = Executor.open(str(directory), checkpoint_interval=10, keep=3,
                             pipelined=pipelined)
    try:
        for block in blocks:
            executor.apply_block(block)
    finally:
        executor.close()
    return executor


def test_pipelined_rows_are_the_synchronous_rows(tmp_path: Path, blocks: list[Block]) -> None:
    run(tmp_path / "sync", blocks, pipelined=False)
    run(tmp_path / "pipe", blocks, pipelined=True)
    sync_rows = all_rows(tmp_path / "sync")
    # Blocks, history (fills, orders, cancellations, indexes), checkpoints, pruning.
    assert {key[:1] for key, _ in sync_rows} >= {bytes([t]) for t in (0, 1, 0x10, 0x11, 0x12,
                                                                      0x13, 0x20, 0x21,
                                                                      0x22, 0x23, 0x24, 0x25)}
    assert all_rows(tmp_path / "pipe") == sync_rows


def test_packed_history_rows_are_the_event_rows(blocks: list[Block]) -> None:
    """The rows the writer builds from a block's packed history equal the rows of the
    record built from the core's own event objects (as `block_exec.block_record` builds
    it), for every block of the flow, market orders and cancellations of every kind
    included."""
    executor = Executor()
    seq = prev_seq = 1
    reasons: set[int] = set()
    markets = 0
    for block in blocks:
        result = executor.apply_block(block)
        history, users = history_sidecar(block, result)
        frame = b"B" + _head(block, result, history, users) + result.block_bytes + history + users
        packed, checkpoint = decode_block(frame)
        assert checkpoint is None and packed.history is not None
        placed = [_placed(r.order_id, tx) for tx, r in zip(block.txs, result.receipts,
                                                            strict=True)
                  if r.order_id is not None]
        fills = [f for r in result.receipts for f in r.fills]
        cancellations = [c for r in result.receipts for c in r.cancellations]
        objects = BlockRecord(block.height, block.time, result.block_hash, result.block_bytes,
                              b"", placed, fills, cancellations)
        rows, seq = blocklog.block_rows(packed, b"\x07" * 32, prev_seq)
        assert (rows, seq) == blocklog.block_rows(objects, b"\x07" * 32, prev_seq)
        prev_seq = seq
        reasons |= {c.reason for c in cancellations}
        markets += sum(1 for p in placed if p.order_type == OrderType.MARKET)
    assert markets and len(reasons) >= 3 and seq > 100


# Integers at every width boundary of a CBOR head and of `struct`'s u32 fast path.
EDGES = [1, 23, 24, 255, 256, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, 2**64 - 1]
U64S = st.sampled_from(EDGES) | st.integers(1, 2**64 - 1)
USERS = st.sampled_from([f"0x{n:040x}" for n in (1, 0xAB, 2**160 - 1)])
ORDERS = st.tuples(U64S, U64S, st.sampled_from(list(Side)),
                   st.sampled_from([*Tif, None]), U64S, U64S, USERS)
FILLS = st.tuples(U64S, U64S, U64S, USERS, USERS, U64S, U64S, st.sampled_from(list(Side)))
CANCELS = st.tuples(U64S, st.sampled_from(list(CancelReason)), st.integers(0, 2**64 - 1))


@given(st.lists(ORDERS, max_size=4), st.lists(FILLS, max_size=4),
       st.lists(CANCELS, max_size=4), U64S, st.integers(1, 2**40))
def test_packed_rows_at_every_integer_width(
    orders: list[tuple[int, int, Side, Tif | None, int, int, str]],
    fills: list[tuple[int, int, int, str, str, int, int, Side]],
    cancels: list[tuple[int, CancelReason, int]],
    height: int,
    seq: int,
) -> None:
    """The writer's inline row encoding (table lookups, `struct` for u32 arguments, the
    codec beyond) equals the codec's rows for ids, prices, sizes, assets and heights at
    every width boundary (the simulated flow only reaches a few of them)."""
    numbers = [len(orders), len(fills), len(cancels)]
    placed = []
    for order_id, asset, side, tif, price, size, user in orders:
        market = tif is None
        numbers += (order_id, asset, side, MARKET_TIF if tif is None else tif,
                    0 if market else price, size)
        placed.append(OrderPlaced(order_id, user, asset, side,
                                  OrderType.MARKET if market else OrderType.LIMIT, tif,
                                  None if market else price, size))
    fill_objects = [Fill(*fill) for fill in fills]
    for fill in fill_objects:
        numbers += (fill.asset, fill.maker_order_id, fill.taker_order_id, fill.price,
                    fill.size, fill.taker_side)
    cancellations = [Cancellation(order_id, "0x" + "00" * 20, 1, Side.BUY, 0, size, reason)
                     for order_id, reason, size in cancels]
    for order_id, reason, size in cancels:
        numbers += (order_id, reason, size)
    users = "".join([order[6] for order in orders] + [u for f in fills for u in (f[3], f[4])])
    packed = BlockRecord(height, 0, b"\x01" * 32, b"", b"", (), (), (), b"",
                         PackedHistory(numbers, users))
    objects = BlockRecord(height, 0, b"\x01" * 32, b"", b"", placed, fill_objects,
                          cancellations, b"")
    assert blocklog.block_rows(packed, b"\x07" * 32, seq) == blocklog.block_rows(
        objects, b"\x07" * 32, seq
    )


def _placed(order_id: int, tx: Tx) -> OrderPlaced:
    if isinstance(tx, Limit):
        return OrderPlaced(order_id, tx.user, tx.asset, tx.side, OrderType.LIMIT, tx.tif,
                           tx.price, tx.size)
    assert isinstance(tx, Market)
    return OrderPlaced(order_id, tx.user, tx.asset, tx.side, OrderType.MARKET, None, None,
                       tx.size)


def _head(block: Block, result: object, history: bytes, users: bytes) -> bytes:
    from store.pipe import BLOCK_HEAD

    block_bytes = result.block_bytes  # type: ignore[attr-defined]
    return BLOCK_HEAD.pack(block.height, block.time, result.block_hash,  # type: ignore[attr-defined]
                           len(block_bytes), 0, 0, len(history), len(users), 0)


def test_durable_height_and_flush(tmp_path: Path, blocks: list[Block]) -> None:
    executor = Executor.open(str(tmp_path / "db"), checkpoint_interval=10, pipelined=True)
    try:
        for block in blocks[:25]:
            executor.apply_block(block)
            assert executor.durable_height <= executor.height
        executor.wait_durable()
        assert executor.durable_height == executor.height == 25
        executor.flush()  # the store is this process's again: readable
        assert executor.store is not None and executor.store.head_height == 25
        assert executor.store.block(25) is not None
        for block in blocks[25:40]:  # and a new writer takes the next blocks
            executor.apply_block(block)
    finally:
        executor.close()
    with Store(str(tmp_path / "db")) as store:
        assert store.head_height == 40
        store.verify_all(compute_roots)


def _writer_pid(executor: Executor) -> int:
    writer = executor._writer
    assert writer is not None
    return writer._proc.pid


def test_killed_writer_is_one_line_not_a_hang(tmp_path: Path, blocks: list[Block]) -> None:
    directory = tmp_path / "db"
    executor = Executor.open(str(directory), checkpoint_interval=10, pipelined=True)
    for block in blocks[:30]:
        executor.apply_block(block)
    executor.wait_durable()
    os.kill(_writer_pid(executor), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        for block in blocks[30:]:
            executor.apply_block(block)
        executor.wait_durable()
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "\n" not in message and "store writer" in message, message
    with pytest.raises(ExecutorBroken):
        executor.apply_block(blocks[-1])
    executor.close()
    # The store holds a prefix of the blocks handed over, each whole: it recovers.
    with Executor.open(str(directory)) as reopened:
        assert 30 <= reopened.height <= BLOCKS
        assert reopened.store is not None
        reopened.store.verify_all(compute_roots)
        for block in blocks[reopened.height:]:
            reopened.apply_block(block)
        final = reopened.state_root
    reference = Executor(checkpoint_interval=10)
    for block in blocks:
        reference.apply_block(block)
    assert final == reference.state_root


def test_failing_writer_reports_its_error(tmp_path: Path, blocks: list[Block]) -> None:
    """A store error inside the writer (here: a gap it is made to see) comes back as
    the writer's own one-line message."""
    directory = tmp_path / "db"
    executor = Executor.open(str(directory), checkpoint_interval=10, pipelined=True)
    executor.apply_block(blocks[0])
    executor.wait_durable()
    writer = executor._writer
    assert writer is not None
    send = writer.send_block
    writer.send_block = lambda height, *rest: send(height + 5, *rest)  # type: ignore[method-assign]
    with pytest.raises(StoreError, match=r"store writer: block 7 leaves a gap: the head is 1"):
        for block in blocks[1:]:
            executor.apply_block(block)
        executor.wait_durable()
    executor.close()
    with Store(str(directory)) as store:
        assert store.head_height == 1


class _FlakyStore:
    """A store whose commit of one height fails (standing in for a LevelDB error)."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.committed: list[int] = []

    def commit(self, staged: StagedBatch) -> None:
        if staged.height == self.failing:
            raise StoreError(f"LevelDB error: cannot write block {staged.height}")
        self.committed.append(staged.height)


def _staged(height: int) -> StagedBatch:
    return StagedBatch(None, False, (height, b"", 0), [], None, 0)


def test_committer_writes_in_order_and_stops_at_its_first_error() -> None:
    """Batches are written in the order staged, each acknowledged after its commit; the
    first failure is reported once and nothing after it is written (a later batch would
    leave a gap below it)."""
    store = _FlakyStore(failing=3)
    acks: list[int] = []
    errors: list[BaseException] = []
    committer = Committer(cast(Store, store), acks.append, errors.append)
    for height in (1, 2, 3, 4):
        with contextlib.suppress(CommitFailed):
            committer.submit(_staged(height))
    with pytest.raises(CommitFailed):
        committer.drain()
    with pytest.raises(CommitFailed):
        committer.submit(_staged(5))
    committer.stop()
    assert store.committed == [1, 2] and acks == [1, 2]
    assert [str(error) for error in errors] == ["LevelDB error: cannot write block 3"]


def child_main(directory: str, count: int) -> None:
    """Apply the flow pipelined, printing each durable height as it advances."""
    blocks = simulated_block_list(count)
    executor = Executor.open(directory, checkpoint_interval=10, keep=3, pipelined=True)
    reported = executor.durable_height
    for block in blocks[executor.height:]:
        executor.apply_block(block)
        durable = executor.durable_height
        if durable > reported:
            sys.stdout.write(f"{durable}\n")
            sys.stdout.flush()
            reported = durable
    executor.close()
    sys.stdout.write(f"{count}\n")


def _open_when_free(directory: Path) -> Store:
    """The store, once the killed run's writer has gone (it dies with its parent)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return Store(str(directory))
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_kill_9_of_a_pipelined_run(tmp_path: Path) -> None:
    directory = tmp_path / "db"
    command = [sys.executable, __file__, "child", str(directory), str(BLOCKS)]
    rng = random.Random(5)

    def check(durable: int) -> None:
        with _open_when_free(directory) as store:
            assert durable <= store.head_height  # never less than what was reported durable
            store.verify_all(compute_roots)

    delays = [rng.uniform(0.0, 0.05) for _ in range(KILL_ATTEMPTS)]
    kills = kill_and_resume(command, delays, check)
    assert kills >= 1
    reference = Executor(checkpoint_interval=10)
    for block in simulated_block_list(BLOCKS):
        reference.apply_block(block)
    with Executor.open(str(directory)) as executor:
        assert executor.height == BLOCKS
        assert executor.state_root == reference.state_root


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child_main(sys.argv[2], int(sys.argv[3]))
