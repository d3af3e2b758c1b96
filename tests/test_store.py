"""Tests of `store` on real LevelDB in temporary directories (no mocks).

A small deterministic driver (`Driver`) runs a real CoreStateMachine on generated blocks
and hands the store what an executor would: opaque block bytes, history events, and at
checkpoint heights the changed entries and roots. The same file is the child process of
the crash test (`python tests/test_store.py child DIR BLOCKS`).
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state_machine import (
    CancelReason,
    CoreStateMachine,
    OpResult,
    OrderType,
    Result,
    Side,
    Tif,
    changed_entries,
    namespace_of,
    state_entries,
)
from store import (
    BlockConflict,
    BlockRecord,
    Checkpoint,
    CorruptStore,
    InvalidCursor,
    OrderPlaced,
    StateDiverged,
    Store,
    StoreError,
    StoreLocked,
    leveldb,
)
from store import keys as K
from store.roots import commitment_of, compute_roots, roots_of
from tests.killing import kill_and_resume

USERS = ["0x" + f"{i:040x}" for i in range(1, 7)]
ASSETS = (1, 2)
REPO = Path(__file__).resolve().parent.parent
Op = list[Any]  # a generated tx: ["limit", user, asset, side, price, size, tif], ...


def generate_ops(seed: int, height: int, machine: CoreStateMachine, count: int) -> list[Op]:
    """Block `height`'s ops: a function of (seed, height, current state) only."""
    rng = random.Random(seed * 1_000_003 + height)
    ops: list[Op] = []
    for _ in range(count):
        roll = rng.random()
        user = rng.choice(USERS)
        asset = rng.choice(ASSETS)
        if roll < 0.15:
            ops.append(["deposit", user, rng.choice((0, *ASSETS)), rng.randint(1, 10**6)])
        elif roll < 0.6:
            side = rng.randint(0, 1)
            tif = rng.choice((0, 0, 0, 1, 2))
            ops.append(["limit", user, asset, side, rng.randint(90, 110), rng.randint(1, 50), tif])
        elif roll < 0.7:
            ops.append(["market", user, asset, rng.randint(0, 1), rng.randint(1, 80)])
        elif roll < 0.95 and machine.orders:
            ids = sorted(machine.orders)
            order = machine.orders[ids[rng.randrange(len(ids))]]
            ops.append(["cancel", order.user, order.asset, order.order_id])
        else:
            ops.append(["withdraw", user, 0, rng.randint(1, 1000)])
    return ops


def apply_op(machine: CoreStateMachine, op: Op) -> OpResult:
    return OpResult._make(_apply(machine, op))


def _apply(machine: CoreStateMachine, op: Op) -> Result:
    kind = op[0]
    if kind == "deposit":
        return machine.deposit(str(op[1]), int(op[2]), int(op[3]))
    if kind == "withdraw":
        return machine.withdraw(str(op[1]), int(op[2]), int(op[3]))
    if kind == "limit":
        _, user, asset, side, price, size, tif = op
        return machine.limit(str(user), int(asset), Side(side), int(price), int(size), Tif(tif))
    if kind == "market":
        _, user, asset, side, size = op
        return machine.market(str(user), int(asset), Side(side), int(size))
    _, user, asset, order_id = op
    return machine.cancel(str(user), int(asset), int(order_id))


def placed_of(op: Op, result: OpResult) -> OrderPlaced | None:
    if not result.ok or result.order_id is None:
        return None
    if op[0] == "limit":
        _, user, asset, side, price, size, tif = op
        return OrderPlaced(
            result.order_id,
            str(user),
            int(asset),
            Side(side),
            OrderType.LIMIT,
            Tif(tif),
            int(price),
            int(size),
        )
    _, user, asset, side, size = op
    return OrderPlaced(
        result.order_id,
        str(user),
        int(asset),
        Side(side),
        OrderType.MARKET,
        None,
        None,
        int(size),
    )


@dataclass
class Driver:
    """An executor stand-in: applies generated blocks, feeds the store, recovers from it."""

    store: Store
    seed: int = 7
    ops_per_block: int = 12
    machine: CoreStateMachine = field(default_factory=CoreStateMachine)
    replayed: int = 0

    def __post_init__(self) -> None:
        restored = self.store.restore(compute_roots=compute_roots)
        self.machine = restored.machine
        self.commitment = commitment_of(restored.entries)
        for block in self.store.blocks_after(restored.height):
            for op in cbor2.loads(block.block_bytes)[1]:
                apply_op(self.machine, op)
            self.replayed += 1
        if self.store.needs_checkpoint():
            self.store.write_checkpoint(self._checkpoint(self.store.head_height))

    def _checkpoint(self, height: int) -> Checkpoint:
        changes = changed_entries(self.machine, self.machine.drain_changes())
        self.commitment.update((namespace_of(k), k, v) for k, v in changes)
        return Checkpoint(height, changes, roots_of(self.commitment))

    def next_block(self) -> tuple[BlockRecord, list[tuple[Op, OpResult]]]:
        height = self.store.head_height + 1
        ops = generate_ops(self.seed, height, self.machine, self.ops_per_block)
        results = [(op, apply_op(self.machine, op)) for op in ops]
        placed = [p for op, r in results if (p := placed_of(op, r)) is not None]
        fills = [f for _, r in results for f in r.fills]
        cancels = [c for _, r in results for c in r.cancellations]
        block_bytes = cbor2.dumps([height, ops])
        receipts = cbor2.dumps([[r.ok, r.error, r.order_id] for _, r in results])
        block_hash = blake3(self.store.head_hash + block_bytes).digest()
        record = BlockRecord(
            height, 1000 * height, block_hash, block_bytes, receipts, placed, fills, cancels
        )
        return record, results

    def step(self) -> tuple[BlockRecord, list[tuple[Op, OpResult]]]:
        record, results = self.next_block()
        checkpoint = None
        if record.height % self.store.checkpoint_interval == 0:
            checkpoint = self._checkpoint(record.height)
        assert self.store.append_block(record, checkpoint)
        return record, results

    def run_to(self, height: int) -> Iterator[tuple[BlockRecord, list[tuple[Op, OpResult]]]]:
        while self.store.head_height < height:
            yield self.step()


# -- a reference model of history, from the op results alone ----------------------------


@dataclass
class RefOrder:
    placed: OrderPlaced
    height: int
    filled: int = 0
    reason: CancelReason | None = None

    def to_json(self) -> dict[str, object]:
        p = self.placed
        status = (
            "canceled"
            if self.reason is not None
            else "filled"
            if self.filled == p.size
            else "resting"
        )
        out: dict[str, object] = {
            "order_id": p.order_id,
            "user": p.user,
            "asset": p.asset,
            "side": ("buy", "sell")[p.side],
            "type": ("limit", "market")[p.order_type],
            "tif": None if p.tif is None else ("gtc", "ioc", "alo")[p.tif],
        }
        if p.price is not None:
            out["price"] = p.price
        out.update(
            {
                "size": p.size,
                "filled": self.filled,
                "height": self.height,
                "status": status,
                "cancel_reason": None
                if self.reason is None
                else ("user", "ioc", "market", "self_trade")[self.reason],
            }
        )
        return out


@dataclass
class RefHistory:
    orders: dict[int, RefOrder] = field(default_factory=dict)
    fills: list[dict[str, object]] = field(default_factory=list)
    fill_orders: list[tuple[int, int]] = field(default_factory=list)

    def add(self, record: BlockRecord, results: list[tuple[Op, OpResult]]) -> None:
        for op, result in results:
            placed = placed_of(op, result)
            if placed is not None:
                self.orders[placed.order_id] = RefOrder(placed, record.height)
            for f in result.fills:
                self.orders[f.maker_order_id].filled += f.size
                self.orders[f.taker_order_id].filled += f.size
                self.fills.append(
                    {
                        "maker_order_id": f.maker_order_id,
                        "taker_order_id": f.taker_order_id,
                        "maker": f.maker,
                        "taker": f.taker,
                        "price": f.price,
                        "size": f.size,
                        "asset": f.asset,
                        "height": record.height,
                        "taker_side": ("buy", "sell")[f.taker_side],
                    }
                )
                self.fill_orders.append((f.maker_order_id, f.taker_order_id))
            for c in result.cancellations:
                self.orders[c.order_id].reason = c.reason

    def user(self, user: str) -> dict[str, object]:
        return {
            "fills": [f for f in self.fills if user in (f["maker"], f["taker"])],
            "orders": [
                o.to_json() for _, o in sorted(self.orders.items()) if o.placed.user == user
            ],
            "next": None,
        }

    def order(self, order_id: int) -> dict[str, object]:
        if order_id not in self.orders:
            return {"fills": [], "orders": [], "next": None}
        return {
            "fills": [
                f for f, ids in zip(self.fills, self.fill_orders, strict=True) if order_id in ids
            ],
            "orders": [self.orders[order_id].to_json()],
            "next": None,
        }


def build(
    directory: Path, height: int, interval: int = 5, keep: int = 3
) -> tuple[RefHistory, dict[int, list[tuple[bytes, bytes]]]]:
    """Run `height` blocks into a new store; return the reference history and the state
    entries at every checkpoint height (taken from the live machine)."""
    history = RefHistory()
    snapshots: dict[int, list[tuple[bytes, bytes]]] = {}
    with Store(str(directory), checkpoint_interval=interval, keep=keep) as store:
        driver = Driver(store)
        for record, results in driver.run_to(height):
            history.add(record, results)
            if record.height % interval == 0:
                snapshots[record.height] = state_entries(driver.machine)
    return history, snapshots


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]]:
    directory = tmp_path_factory.mktemp("built") / "node"
    history, snapshots = build(directory, 60)
    return directory, history, snapshots


def copy_of(built_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(built_dir, target, ignore=shutil.ignore_patterns("LOCK", "coreledger.lock"))
    return target


def raw_db(directory: Path) -> Any:
    return leveldb.DB(str(directory / "leveldb"))


# -- opening, meta, locking ---------------------------------------------------------------


def test_synced_blocks_and_compaction(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n"), checkpoint_interval=2, sync_blocks=True) as store:
        records = [record for record, _ in Driver(store).run_to(4)]
        assert store.last_batch_bytes > 0
        store.compact()
    with Store(str(tmp_path / "n")) as store:
        assert [b.block_hash for b in store.blocks_after(0)] == [r.block_hash for r in records]
        store.verify_all(compute_roots)


def _log_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in (directory / "leveldb").glob("*.log"))


def test_clean_close_leaves_no_log_to_replay(tmp_path: Path) -> None:
    """A clean close flushes LevelDB's memtable: the log is empty, the rows in table
    files; a read-only open and close writes nothing (the log stays as it was)."""
    with Store(str(tmp_path / "n"), checkpoint_interval=2) as store:
        records = [record for record, _ in Driver(store).run_to(4)]
        assert _log_bytes(tmp_path / "n") > 0  # the blocks so far are only in the log
    assert _log_bytes(tmp_path / "n") == 0
    assert list((tmp_path / "n" / "leveldb").glob("*.ldb"))
    with Store(str(tmp_path / "n"), read_only=True) as store:
        assert [b.block_hash for b in store.blocks_after(0)] == [r.block_hash for r in records]
        store.verify_all(compute_roots)
    assert _log_bytes(tmp_path / "n") == 0


def test_create_and_reopen_keeps_interval_and_head(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n"), checkpoint_interval=4) as store:
        assert (store.head_height, store.checkpoint_interval) == (0, 4)
        Driver(store).step()
    with Store(str(tmp_path / "n")) as store:
        assert (store.head_height, store.checkpoint_interval) == (1, 4)
    with pytest.raises(StoreError, match="created with checkpoint interval 4, not 5"):
        Store(str(tmp_path / "n"), checkpoint_interval=5)
    with Store(str(tmp_path / "n"), checkpoint_interval=4) as store:
        assert store.head_height == 1


def test_default_interval_and_missing_store(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n")) as store:
        assert store.checkpoint_interval == 100
    with pytest.raises(StoreError, match="no such store"):
        Store(str(tmp_path / "missing"), create=False)
    with pytest.raises(StoreError, match="keep"):
        Store(str(tmp_path / "n"), keep=0)


def test_format_version_checked(tmp_path: Path) -> None:
    Store(str(tmp_path / "n")).close()
    db = raw_db(tmp_path / "n")
    from store import codec

    db.put(K.FORMAT_KEY, codec.frame([99]))
    db.close()
    with pytest.raises(StoreError, match="store format 99, this version reads 1"):
        Store(str(tmp_path / "n"))


def test_foreign_database_refused(tmp_path: Path) -> None:
    (tmp_path / "n").mkdir()
    db = leveldb.DB(str(tmp_path / "n" / "leveldb"), create_if_missing=True)
    db.put(b"hello", b"world")
    db.close()
    with pytest.raises(CorruptStore, match="not a coreledger store"):
        Store(str(tmp_path / "n"))


def test_read_only_open_does_not_create_a_half_made_store(tmp_path: Path) -> None:
    # A first run killed after LevelDB made its files but before the store's first batch
    # leaves an empty database; a read-only open must not write the default interval into
    # it, or resuming with the interval the operator chose is then refused.
    (tmp_path / "n").mkdir()
    leveldb.DB(str(tmp_path / "n" / "leveldb"), create_if_missing=True).close()
    with pytest.raises(StoreError, match="no store yet"):
        Store(str(tmp_path / "n"), create=False)
    with Store(str(tmp_path / "n"), checkpoint_interval=5) as store:
        assert store.checkpoint_interval == 5


def test_second_open_in_process_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "n"))
    try:
        with pytest.raises(StoreLocked, match="already open in this process"):
            Store(str(tmp_path / "n"))
        # The same directory under another spelling is the same directory.
        with pytest.raises(StoreLocked):
            Store(str(tmp_path / "n" / ".." / "n"))
    finally:
        store.close()
    Store(str(tmp_path / "n")).close()  # free again once closed


def test_open_from_another_process_refused(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom store import Store, StoreLocked\n"
        "try:\n    Store(sys.argv[1])\nexcept StoreLocked as e:\n    print(e); sys.exit(3)\n"
    )
    with Store(str(tmp_path / "n")):
        proc = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "n")],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert proc.returncode == 3, proc.stderr
        assert "in use by another process" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "n")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- blocks ---------------------------------------------------------------------------------


def test_blocks_chain_and_replay_is_idempotent(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n"), checkpoint_interval=3) as store:
        driver = Driver(store)
        records = [record for record, _ in driver.run_to(7)]
        blocks = list(store.blocks_after(0))
        assert [b.height for b in blocks] == list(range(1, 8))
        assert [b.block_hash for b in blocks] == [r.block_hash for r in records]
        assert blocks[0].prev_hash == bytes(32)
        assert all(b.prev_hash == a.block_hash for a, b in itertools.pairwise(blocks))
        assert [b.block_bytes for b in store.blocks_after(5)] == [
            r.block_bytes for r in records[5:]
        ]
        assert list(store.blocks_after(7)) == []
        before = store.user_history(USERS[0]).to_json()
        # The same block again is a no-op; a different one at a stored height is refused.
        assert store.append_block(records[3]) is False
        assert store.user_history(USERS[0]).to_json() == before
        other = BlockRecord(4, 4000, b"\x01" * 32, b"x", b"", [], [], [])
        with pytest.raises(BlockConflict, match="block 4 differs"):
            store.append_block(other)
        gap = BlockRecord(9, 9000, b"\x02" * 32, b"x", b"", [], [], [])
        with pytest.raises(BlockConflict, match="gap"):
            store.append_block(gap)
        assert store.block_hash(4) == records[3].block_hash
        assert store.block_hash(8) is None


def test_broken_chain_detected(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n")) as store:
        list(Driver(store).run_to(4))
    db = raw_db(tmp_path / "n")
    from store import codec

    block = codec.decode_block(3, db.get(K.block_key(3)))
    db.put(
        K.block_key(3),
        codec.encode_block(
            block.time, block.block_hash, b"\x09" * 32, block.block_bytes, block.receipts
        ),
    )
    db.close()
    with Store(str(tmp_path / "n")) as store, pytest.raises(CorruptStore, match="chain"):
        list(store.blocks_after(0))


# -- checkpoints, restore, pruning ------------------------------------------------------


def test_restore_every_kept_checkpoint(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]],
) -> None:
    directory, _, snapshots = built
    with Store(str(directory), keep=3) as store:
        assert store.checkpoint_heights() == [50, 55, 60]
        for height in (50, 55, 60, None):
            restored = store.restore(height, compute_roots)
            expected = snapshots[restored.height]
            assert restored.entries == expected
            assert state_entries(restored.machine) == expected
            assert restored.checkpoint is not None
            assert restored.checkpoint.roots == compute_roots(expected)
            assert restored.checkpoint.entry_count == len(expected)
        for height in (5, 45, 52, 65):
            with pytest.raises(StoreError, match="not a kept checkpoint"):
                store.restore(height)


def test_keep_shrinks_and_storage_follows_changes(tmp_path: Path) -> None:
    directory = tmp_path / "src"
    _, snapshots = build(directory, 60, keep=12)

    def version_rows() -> int:
        db = raw_db(directory)
        count = sum(1 for _ in db.iterator(prefix=K.STATE_VERSION))
        db.close()
        return count

    before = version_rows()
    with Store(str(directory), keep=12) as store:
        assert store.checkpoint_heights() == list(range(5, 61, 5))
    with Store(str(directory), keep=2) as store:  # a smaller keep prunes on open
        assert store.checkpoint_heights() == [55, 60]
        for height in (55, 60):
            assert store.restore(height, compute_roots).entries == snapshots[height]
        with pytest.raises(StoreError):
            store.restore(50)
        latest = store.latest_checkpoint()
        assert latest is not None
        kept = store.checkpoint(55)
        assert kept is not None
        # What is left: one version per key live at 55 plus what checkpoint 60 wrote.
        bound = kept.entry_count + latest.changed_count
    after = version_rows()
    assert after < before
    assert after <= bound
    db = raw_db(directory)
    logs = {k[1:9] for k in db.iterator(prefix=K.CHECKPOINT_CHANGES, include_value=False)}
    db.close()
    assert logs == {(55).to_bytes(8, "big"), (60).to_bytes(8, "big")}


def test_checkpoint_writes_only_changes(tmp_path: Path) -> None:
    with Store(str(tmp_path / "n"), checkpoint_interval=2) as store:
        machine = CoreStateMachine()
        for i, user in enumerate(USERS):
            machine.deposit(user, 0, 100 + i)
        changes = changed_entries(machine, machine.drain_changes())
        empty = BlockRecord(1, 1, b"\x01" * 32, b"", b"", [], [], [])
        store.append_block(empty)
        store.append_block(
            BlockRecord(2, 2, b"\x02" * 32, b"", b"", [], [], []),
            Checkpoint(2, changes, compute_roots(state_entries(machine))),
        )
        info = store.latest_checkpoint()
        assert info is not None and info.changed_count == len(USERS) + 1
        # Touched but unchanged (and the always-listed next_order_id): nothing written.
        machine.deposit(USERS[0], 0, 5)
        machine.withdraw(USERS[0], 0, 5)
        machine.withdraw(USERS[1], 0, 101)  # removed
        changes = changed_entries(machine, machine.drain_changes())
        assert len(changes) == 3
        store.append_block(BlockRecord(3, 3, b"\x03" * 32, b"", b"", [], [], []))
        store.append_block(
            BlockRecord(4, 4, b"\x04" * 32, b"", b"", [], [], []),
            Checkpoint(4, changes, compute_roots(state_entries(machine))),
        )
        info = store.latest_checkpoint()
        assert info is not None
        assert (info.changed_count, info.entry_count) == (1, len(USERS))
        assert store.restore(None, compute_roots).entries == state_entries(machine)
        assert store.restore(2).entries != state_entries(machine)
        with pytest.raises(StoreError, match="sorted"):
            store.append_block(BlockRecord(5, 5, b"\x05" * 32, b"", b"", [], [], []))
            store.append_block(
                BlockRecord(6, 6, b"\x06" * 32, b"", b"", [], [], []),
                Checkpoint(6, list(reversed(changes)), info.roots),
            )
        assert store.head_height == 5  # the refused batch wrote nothing
        with pytest.raises(StoreError, match="multiple"):
            store.write_checkpoint(Checkpoint(5, [], info.roots))


def test_checkpoint_written_apart_from_its_block(tmp_path: Path) -> None:
    """A caller killed between a block and its separate checkpoint writes it on recovery."""
    with Store(str(tmp_path / "n"), checkpoint_interval=4) as store:
        driver = Driver(store)
        list(driver.run_to(3))
        record, _ = driver.next_block()
        store.append_block(record)  # the checkpoint never made it
        assert store.needs_checkpoint()
    with Store(str(tmp_path / "n")) as store:
        driver = Driver(store)  # replays 1..4 and writes checkpoint 4
        assert not store.needs_checkpoint()
        assert store.checkpoint_heights() == [4]
        assert store.restore(4, compute_roots).entries == state_entries(driver.machine)


# -- divergence and corruption -------------------------------------------------------------


def tamper_latest(directory: Path, prefix: bytes, change: bytes) -> bytes:
    """Replace the latest copy of the first state entry under `prefix`; return its key."""
    db = raw_db(directory)
    key, _ = next(iter(db.iterator(prefix=K.STATE_LATEST + prefix)))
    db.put(key, change)
    db.close()
    return bytes(key[1:])


def test_divergent_balance_named(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]], tmp_path: Path
) -> None:
    directory = copy_of(built[0], tmp_path)
    db = raw_db(directory)
    # A balance in an asset with no resting order holding it, so the state stays valid.
    key, value = next(
        (k, v) for k, v in db.iterator(prefix=K.STATE_LATEST + b"\x01") if cbor2.loads(v)[1] == 0
    )
    available, locked = cbor2.loads(value)
    db.put(key, cbor2.dumps([available + 1, locked]))
    db.close()
    asset = int.from_bytes(key[22:26], "big")
    with Store(str(directory)) as store:
        with pytest.raises(StateDiverged) as info:
            store.restore(None, compute_roots)
        message = str(info.value)
        assert f"balances of asset {asset}" in message
        assert f"balances/0x{key[2:22].hex()}/{asset}" in message
        assert "\n" not in message
        store.restore(55, compute_roots)  # older checkpoints read the versions, intact


def test_divergent_book_named(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]], tmp_path: Path
) -> None:
    directory = copy_of(built[0], tmp_path)
    db = raw_db(directory)
    # Reprice a resting sell in the latest copy: its lock is its size, so the state stays
    # valid and only the root can tell.
    key, value = next(
        (k, v) for k, v in db.iterator(prefix=K.STATE_LATEST + b"\x02") if cbor2.loads(v)[0] == 1
    )
    side, price, size, user = cbor2.loads(value)
    db.put(key, cbor2.dumps([side, price + 1, size, user]))
    db.close()
    asset = int.from_bytes(key[2:6], "big")
    order_id = int.from_bytes(key[6:14], "big")
    with Store(str(directory)) as store, pytest.raises(StateDiverged) as info:
        store.restore(None, compute_roots)
    message = str(info.value)
    assert f"in book of asset {asset} " in message
    assert f"key books/{asset}/orders/{order_id} differs" in message


def mutate(value: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(3)
    if choice == 0 and value:
        return value[: rng.randrange(len(value))]
    if choice == 1 and value:
        i = rng.randrange(len(value))
        return value[:i] + bytes([value[i] ^ (1 << rng.randrange(8))]) + value[i + 1 :]
    return value + bytes([rng.randrange(256)])


def test_random_corruption_detected(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]], tmp_path: Path
) -> None:
    source = built[0]
    db = raw_db(source)
    all_keys = sorted(k for k in db.iterator(include_value=False))
    db.close()
    rng = random.Random(2024)
    picks = [all_keys[0], *(k for k in all_keys if k[:1] == K.META)]
    picks += rng.sample(all_keys, 40)
    for round_, key in enumerate(picks):
        directory = tmp_path / f"c{round_}"
        shutil.copytree(source, directory)
        db = raw_db(directory)
        old = db.get(key)
        new = mutate(old, rng)
        db.put(key, new)
        db.close()
        with pytest.raises(CorruptStore) as info, Store(str(directory)) as store:
            store.verify_all(compute_roots)
        assert "\n" not in str(info.value), key


# -- history --------------------------------------------------------------------------------


def test_history_matches_reference(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]],
) -> None:
    directory, history, _ = built
    statuses = {o.to_json()["status"] for o in history.orders.values()}
    reasons = {o.reason for o in history.orders.values()}
    assert statuses == {"resting", "filled", "canceled"}  # the run exercises them all
    assert len(history.fills) > 50 and {CancelReason.USER, CancelReason.IOC} <= reasons
    with Store(str(directory)) as store:
        for user in USERS:
            assert store.user_history(user).to_json() == history.user(user)
            assert store.user_history(user.upper().replace("0X", "0x")).to_json() == (
                history.user(user)
            )
        for order_id in [*history.orders, max(history.orders) + 1, 2**64 - 1]:
            assert store.order_history(order_id).to_json() == history.order(order_id)
        unknown = "0x" + "ab" * 20
        assert store.user_history(unknown).to_json() == {"fills": [], "orders": [], "next": None}
        with pytest.raises(StoreError):
            store.user_history("0x123")
        with pytest.raises(StoreError):
            store.order_history(0)
        with pytest.raises(InvalidCursor):
            store.user_history(USERS[0], 3, "zz")
        with pytest.raises(StoreError):
            store.user_history(USERS[0], 0)


def collect(pages: Iterator[dict[str, Any]]) -> tuple[list[object], list[object], int]:
    fills: list[object] = []
    orders: list[object] = []
    count = 0
    for page in pages:
        fills += page["fills"]
        orders += page["orders"]
        count += 1
    return fills, orders, count


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.integers(1, 40), user=st.sampled_from(USERS), order_pick=st.integers(0, 10**6))
def test_cursor_paging(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]],
    limit: int,
    user: str,
    order_pick: int,
) -> None:
    directory, history, _ = built
    ids = sorted(i for i, o in history.orders.items() if o.filled)
    order_id = ids[order_pick % len(ids)]
    with Store(str(directory)) as store:
        for query, expected in (
            (lambda after: store.user_history(user, limit, after), history.user(user)),
            (lambda after: store.order_history(order_id, limit, after), history.order(order_id)),
        ):

            def pages(query: Any = query) -> Iterator[dict[str, Any]]:
                after = None
                while True:
                    page = query(after).to_json()
                    assert len(page["fills"]) <= limit and len(page["orders"]) <= limit
                    yield page
                    after = page["next"]
                    if after is None:
                        return

            fills, orders, count = collect(pages())
            assert fills == expected["fills"] and orders == expected["orders"]
            longest = max(len(fills), len(orders))
            assert count == max(1, -(-longest // limit))  # ceil: no empty last page


# -- crash recovery -------------------------------------------------------------------------

CRASH_BLOCKS = 800
CRASH_INTERVAL = 8
CRASH_KEEP = 3


def child_main(directory: str, blocks: int, report: bool = True) -> None:
    with Store(directory, checkpoint_interval=CRASH_INTERVAL, keep=CRASH_KEEP) as store:
        driver = Driver(store)
        for record, _ in driver.run_to(blocks):
            if report:  # acknowledged: append_block returned
                sys.stdout.write(f"{record.height}\n")
                sys.stdout.flush()


def summary(directory: Path) -> dict[str, object]:
    with Store(str(directory)) as store:
        store.verify_all(compute_roots)
        restored = store.restore(None, compute_roots)
        return {
            "head": store.head_height,
            "hashes": [b.block_hash for b in store.blocks_after(0)],
            "checkpoints": store.checkpoint_heights(),
            "infos": [store.checkpoint(h) for h in store.checkpoint_heights()],
            "states": [store.restore(h).entries for h in store.checkpoint_heights()],
            "entries": restored.entries,
            "history": [store.user_history(u).to_json() for u in USERS],
            "orders": [store.order_history(i).to_json() for i in range(1, 5000, 7)],
        }


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    started = time.perf_counter()
    child_main(str(reference), CRASH_BLOCKS, report=False)
    run_time = time.perf_counter() - started
    crashed = tmp_path / "crashed"
    rng = random.Random(99)
    command = [sys.executable, __file__, "child", str(crashed), str(CRASH_BLOCKS)]

    def check(acked: int) -> None:
        with Store(str(crashed), checkpoint_interval=CRASH_INTERVAL) as store:
            assert store.head_height >= acked  # every acknowledged block survived

    # Random moments of the rest of the run (a resumed run is shorter than the first).
    kills = kill_and_resume(command, [rng.uniform(0.0, run_time / 3) for _ in range(6)], check)
    assert kills >= 3
    assert summary(crashed) == summary(reference)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child_main(sys.argv[2], int(sys.argv[3]))


def test_closed_store_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "n"))
    store.close()
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.user_history(USERS[0])
    with pytest.raises(StoreError, match="closed"):
        store.blocks_after(0)


@pytest.mark.parametrize("seed", range(6))
def test_damaged_table_file_reported_as_corrupt_store(
    built: tuple[Path, RefHistory, dict[int, list[tuple[bytes, bytes]]]], tmp_path: Path, seed: int
) -> None:
    directory = copy_of(built[0], tmp_path)
    with Store(str(directory)) as store:
        store.compact()  # everything into table files
    tables = sorted((directory / "leveldb").glob("*.ldb"), key=lambda p: p.stat().st_size)
    data = bytearray(tables[-1].read_bytes())
    rng = random.Random(seed)
    for _ in range(8):  # a damaged region in the data blocks (the index sits at the end)
        data[rng.randrange(len(data) // 2)] ^= 0xFF
    tables[-1].write_bytes(bytes(data))
    with pytest.raises(CorruptStore), Store(str(directory)) as store:
        store.verify_all(compute_roots)
