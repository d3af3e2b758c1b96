"""Regression tests for bugs found in review, each named after its symptom."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cbor2
import pytest

from block_exec import Block, Executor, apply_block, block_from_obj
from block_exec.apply import full_state_root
from block_exec.cli import main
from block_exec.decode import decode_cbor_block, iter_blocks
from block_exec.encode import encode_block
from block_exec.errors import BlockDecodeError
from block_exec.executor import ExecutorBroken
from block_exec.simulate import MarketConfig, SimulatedMarket
from block_exec.types import Deposit
from state_machine import CoreStateMachine
from store import StoreError
from tests.simulated import simulated_block_list


@pytest.mark.parametrize("text", ["\u00b2", "\u0661", "1\u00b2"])
def test_history_order_id_with_non_ascii_digits_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # str.isdigit() accepts superscripts and other scripts' digits; int() then either
    # fails with Python's own message or reads another script's digits as an id.
    db = tmp_path / "db"
    Executor.open(str(db)).close()
    assert main(["history", "--db", str(db), "--order", text]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "bad order id" in err[0], err


def test_apply_block_function_returns_the_root_at_checkpoints() -> None:
    # The contract: block_exec.apply_block returns "state root at checkpoints".
    blocks = simulated_block_list(40)
    executor = Executor(checkpoint_interval=10)
    state = CoreStateMachine()
    for block in blocks:
        mine = apply_block(state, block, checkpoint_interval=10)
        theirs = executor.apply_block(block)
        assert mine.state_root == theirs.state_root
        assert (mine.state_root is None) == (block.height % 10 != 0)
    assert executor.state_root == full_state_root(state)


def test_executor_refuses_blocks_after_a_failed_store_write(tmp_path: Path) -> None:
    # A store write failing after the block was applied in memory must not let the node
    # go on acknowledging blocks that a restart cannot rebuild.
    blocks = simulated_block_list(12)
    db = str(tmp_path / "db")
    executor = Executor.open(db, checkpoint_interval=5)
    for block in blocks[:6]:
        executor.apply_block(block)
    assert executor.store is not None
    executor.store.close()  # the next write fails
    with pytest.raises(StoreError):
        executor.apply_block(blocks[6])
    with pytest.raises(ExecutorBroken, match="reopen"):
        executor.apply_block(blocks[7])
    with Executor.open(db) as reopened:  # recovers what was acknowledged: 6 blocks
        assert reopened.height == 6
        for block in blocks[6:]:
            reopened.apply_block(block)
        memory = Executor(checkpoint_interval=5)
        for block in blocks:
            memory.apply_block(block)
        assert reopened.state_root == memory.state_root


@pytest.mark.parametrize("attempt", range(3))
def test_interrupted_run_exits_1_with_one_line(tmp_path: Path, attempt: int) -> None:
    # Signals used to land anywhere, once inside cbor2's C encoder, which swallowed the
    # KeyboardInterrupt ("Exception ignored") and let the run go on: now they are taken
    # at block boundaries. Three attempts, at different moments.
    exe = shutil.which("coreledger")
    command = [exe] if exe else [sys.executable, "-m", "block_exec.cli"]
    proc = subprocess.Popen(
        [*command, "run", "--db", str(tmp_path / "db"), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "db" / "leveldb" / "CURRENT").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.2 + 0.3 * attempt)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("coreledger: error: interrupted (SIGINT)")
    assert "Traceback" not in err
    with Executor.open(str(tmp_path / "db")) as reopened:  # and the store is whole
        height, root = reopened.height, reopened.state_root
    market = SimulatedMarket(MarketConfig())
    memory = Executor()
    for h in range(1, height + 1):
        memory.apply_block(block_from_obj(market.block(h, memory.state), "sim"))
    assert memory.state_root == root


def test_verify_all_audits_history_and_names_a_corrupt_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    assert main(["run", "--db", str(db), "--sim-blocks", "30",
                 "--checkpoint-interval", "10", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["verify", "--db", str(db), "--all"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["audited"] and report["kept_checkpoints"] == [10, 20, 30]
    # Damage one history row: plain verify (the state at the checkpoint) still passes,
    # the audit names the row.
    from store import leveldb

    raw = leveldb.DB(str(db / "leveldb"))
    key, value = next(raw.iterator(prefix=b"\x21"))  # the first fill row
    raw.put(key, value[:-1] + bytes([value[-1] ^ 1]))
    raw.close()
    assert main(["verify", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["verify", "--db", str(db), "--all"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "history fill 1" in err[0], err


def _cbor_error(obj: object) -> str:
    with pytest.raises(BlockDecodeError) as info:
        decode_cbor_block(cbor2.dumps(obj, canonical=True))
    return str(info.value)


def test_cbor_limit_without_tif_does_not_hide_errors_the_spec_names_first() -> None:
    # The CBOR-only "tif required" check ran before the schema walk, so it was reported
    # even where spec/blocks.md section 3 names another error first.
    user = "0x" + "ab" * 20
    limit = {"op": "limit", "user": user, "asset": 1, "side": "buy", "price": 1, "size": 1}
    bad_deposit = {"op": "deposit", "user": user, "asset": 0, "amount": 0}
    no_price = {k: v for k, v in limit.items() if k != "price"}
    assert _cbor_error({"height": 0, "time": 0, "txs": [limit]}) == (
        'block: field "height": expected an integer in [1, 2^64-1], got 0'
    )
    assert _cbor_error({"height": 1, "time": 0, "txs": [limit], "x": 1}) == (
        'block: unknown field "x"'
    )
    assert _cbor_error({"height": 1, "time": 0, "txs": [bad_deposit, limit]}) == (
        'block (height 1): tx 0: field "amount": expected an integer in [1, 2^64-1], got 0'
    )
    assert _cbor_error({"height": 1, "time": 0, "txs": [no_price]}) == (
        'block (height 1): tx 0: missing field "price"'
    )
    assert _cbor_error({"height": 1, "time": 0, "txs": [{**limit, "tif": "gtc"}, limit]}) == (
        'block (height 1): tx 1: missing field "tif" (required in CBOR)'
    )


def test_cbor_sequence_decoding_does_not_copy_the_rest_of_the_file_per_block() -> None:
    # cbor2.loads copies a memoryview slice to bytes: slicing off the rest of the sequence
    # for each block made reading a CBOR block file quadratic (30 MB: 8 s instead of 1 s).
    # The copy shows as peak memory of the whole input; now it is about one block.
    user = "0x" + "ab" * 20
    blocks = [
        Block(h, h, tuple(Deposit(user, 0, i + 1) for i in range(50))) for h in range(1, 201)
    ]
    data = b"".join(map(encode_block, blocks))
    tracemalloc.start()
    try:
        heights = [block.height for block in iter_blocks(data)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert heights == list(range(1, 201))
    assert peak < len(data) // 4, (peak, len(data))
    assert list(iter_blocks(data)) == blocks


def test_open_writes_a_checkpoint_missing_at_the_head(tmp_path: Path) -> None:
    # Recovery step 4 of spec/store.md: a head at a checkpoint height without its
    # checkpoint (a writer that stores checkpoints apart from blocks, killed between).
    blocks = simulated_block_list(7)
    db = str(tmp_path / "db")
    with Executor.open(db, checkpoint_interval=5) as executor:
        for block in blocks[:4]:
            executor.apply_block(block)
        assert executor.store is not None
        store = executor.store
        append = store.append_block
        store.append_block = lambda record, checkpoint=None: append(record, None)  # type: ignore[method-assign]
        executor.apply_block(blocks[4])
        assert store.checkpoint_heights() == [] and store.needs_checkpoint()
    with Executor.open(db) as reopened:
        assert reopened.store is not None
        assert reopened.store.checkpoint_heights() == [5]
        assert not reopened.store.needs_checkpoint()
        for block in blocks[5:]:
            reopened.apply_block(block)
    memory = Executor(checkpoint_interval=5)
    roots = [memory.apply_block(block).state_root for block in blocks]
    assert main(["verify", "--db", db]) == 0
    with Executor.open(db) as final:
        assert final.store is not None
        assert final.store.checkpoint(5) is not None
        stored = final.store.checkpoint(5)
        assert stored is not None and stored.roots.root == roots[4]
        assert final.state_root == memory.state_root
