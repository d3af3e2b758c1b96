"""End-to-end tests of the installed `coreledger` command (contract: CLI).

Every test runs the console script in a subprocess on a real LevelDB store under
`tmp_path`. Expected values come from hand-computed tiny scenarios, from the contract's
arithmetic, or from an independent in-memory run (`block_exec.Executor()`, no store),
never from the command under test alone.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cbor2
import pytest

from block_exec import Executor, block_from_obj, block_receipts_line, read_block_file
from block_exec.pipeline import WINDOW
from block_exec.simulate import MarketConfig, SimulatedMarket
from store import Store
from tests.simulated import simulated_block_objs

_SCRIPT = shutil.which("coreledger")
CLI: list[str] = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "block_exec.cli"]
TIMEOUT = 90

A = "0x" + "00" * 19 + "0a"
B_MIXED = "0x" + "00" * 19 + "0B"  # written in upper case: the CLI must normalise it
B = B_MIXED.lower()
C = "0x" + "00" * 19 + "0c"

SUBCOMMANDS = ("run", "verify", "state", "history", "prove", "verify-proof", "diff", "bench")

Json = Any


# -- helpers ----------------------------------------------------------------------------


def cli(*args: str | Path, check: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONHASHSEED", None)  # each process its own hash seed: order must not matter
    proc = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, env=env,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stderr)
    return proc


def cli_json(*args: str | Path) -> Json:
    proc = cli(*args, check=0)
    return json.loads(proc.stdout)


def assert_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Exit `code`, exactly one non-empty line on stderr, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    return lines[0]


def write_jsonl(path: Path, blocks: Sequence[Json]) -> Path:
    path.write_text("".join(json.dumps(block) + "\n" for block in blocks))
    return path


def run_blocks(db: Path, blocks: Path, *extra: str | Path) -> Json:
    return cli_json("run", "--blocks", blocks, "--db", db, "--no-progress", *extra)


def head(db: Path) -> tuple[int, str]:
    state = cli_json("state", "--db", db)
    return state["height"], state["state_root"]


def read_jsonl(path: Path) -> list[Json]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def limit(user: str, asset: int, side: str, price: int, size: int, tif: str | None = "gtc"
          ) -> Json:
    tx = {"op": "limit", "user": user, "asset": asset, "side": side, "price": price,
          "size": size}
    if tif is not None:
        tx["tif"] = tif
    return tx


def fill(maker_oid: int, taker_oid: int, maker: str, taker: str, price: int, size: int
         ) -> Json:
    return {"maker_order_id": maker_oid, "taker_order_id": taker_oid, "maker": maker,
            "taker": taker, "price": price, "size": size}


def in_memory_receipts(path: Path, interval: int) -> list[Json]:
    """Receipts lines for a block file, computed in this process without any store."""
    executor = Executor(checkpoint_interval=interval)
    lines = []
    for block in read_block_file(str(path)):
        result = executor.apply_block(block)
        root = None if result.state_root is None else result.state_root.hex()
        lines.append(json.loads(block_receipts_line(block.height, root, result.receipts)))
    return lines


# -- a hand-built scenario with receipts computed by hand --------------------------------

TINY_BLOCKS: list[Json] = [
    {"height": 1, "time": 1000, "txs": [
        {"op": "deposit", "user": A, "asset": 0, "amount": 10000},
        {"op": "deposit", "user": B_MIXED, "asset": 1, "amount": 100},
        {"op": "withdraw", "user": A, "asset": 1, "amount": 1},
    ]},
    {"height": 2, "time": 1000, "txs": [  # same time as before: allowed
        limit(B_MIXED, 1, "sell", 50, 10),          # order 1 rests
        limit(B_MIXED, 1, "sell", 55, 10, None),    # order 2 rests (tif left out: gtc)
        limit(A, 1, "buy", 60, 12, "ioc"),          # order 3 takes 10@50 and 2@55
        limit(A, 1, "buy", 50, 1, "alo"),           # order 4 rests behind the ask
        limit(A, 1, "buy", 56, 1, "alo"),           # would cross: rejected, no id
        {"op": "cancel", "user": B_MIXED, "asset": 1, "order_id": 4},   # not_owner
        {"op": "cancel", "user": A, "asset": 1, "order_id": 99},        # unknown_order
        {"op": "market", "user": A, "asset": 1, "side": "buy", "size": 100},  # order 5
        {"op": "cancel", "user": A, "asset": 1, "order_id": 4},
        {"op": "withdraw", "user": A, "asset": 1, "amount": 20},
        {"op": "withdraw", "user": A, "asset": 1, "amount": 1},
        {"op": "market", "user": A, "asset": 1, "side": "sell", "size": 1},
    ]},
    {"height": 3, "time": 2000, "txs": [
        {"op": "deposit", "user": B_MIXED, "asset": 0, "amount": 1000},
        limit(B_MIXED, 1, "buy", 40, 5),            # order 6 rests
        limit(B_MIXED, 1, "sell", 40, 3),           # order 7: self-trade cancels 6, rests
        {"op": "deposit", "user": C, "asset": 2, "amount": 5},
        {"op": "withdraw", "user": C, "asset": 2, "amount": 5},   # C ends with nothing
    ]},
]

OK: Json = {"ok": True}
TINY_RECEIPTS: list[list[Json]] = [
    [OK, OK, {"ok": False, "error": "insufficient_balance"}],
    [
        {"ok": True, "order_id": 1, "fills": [], "resting": 10, "canceled": []},
        {"ok": True, "order_id": 2, "fills": [], "resting": 10, "canceled": []},
        {"ok": True, "order_id": 3, "fills": [fill(1, 3, B, A, 50, 10), fill(2, 3, B, A, 55, 2)],
         "resting": 0, "canceled": []},
        {"ok": True, "order_id": 4, "fills": [], "resting": 1, "canceled": []},
        {"ok": False, "error": "would_cross"},
        {"ok": False, "error": "not_owner"},
        {"ok": False, "error": "unknown_order"},
        {"ok": True, "order_id": 5, "fills": [fill(2, 5, B, A, 55, 8)], "canceled": []},
        {"ok": True, "canceled": [4]},
        OK,
        {"ok": False, "error": "insufficient_balance"},
        {"ok": False, "error": "insufficient_balance"},
    ],
    [
        OK,
        {"ok": True, "order_id": 6, "fills": [], "resting": 5, "canceled": []},
        {"ok": True, "order_id": 7, "fills": [], "resting": 3, "canceled": [6]},
        OK,
        OK,
    ],
]
# A paid 10*50 + 2*55 + 8*55 = 1050 of asset 0, bought 20 of asset 1 and withdrew them.
# B sold 20 (received 1050), deposited 1000 of asset 0, and has 3 locked in order 7.
TINY_STATE: Json = {
    "books": {"1": {"bids": [], "asks": [[40, 3, 1]]}},
    "balances": {
        A: {"0": {"available": 8950, "locked": 0}},
        B: {"0": {"available": 2050, "locked": 0}, "1": {"available": 77, "locked": 3}},
    },
}


def _receipt_matches(got: Json, want: Json) -> None:
    """`want` lists the fields the contract fixes for this receipt; `got` has them equal and
    nothing outside the contract's R."""
    assert set(got) <= {"ok", "error", "order_id", "fills", "resting", "canceled"}, got
    for key, value in want.items():
        assert got.get(key) == value, (key, got, want)
    if not want["ok"]:
        assert set(got) == {"ok", "error"}
    if "order_id" not in want:
        assert "order_id" not in got and not got.get("fills")
    if "resting" not in want:
        assert got.get("resting") in (None, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """The tiny scenario applied with checkpoints every 3 blocks: (blocks, db, receipts)."""
    base = tmp_path_factory.mktemp("tiny")
    blocks = write_jsonl(base / "tiny.jsonl", TINY_BLOCKS)
    db = base / "db"
    receipts = base / "receipts.jsonl"
    summary = run_blocks(db, blocks, "--checkpoint-interval", "3", "--receipts", receipts)
    assert summary["blocks"] == 3 and summary["height"] == 3
    yield blocks, db, receipts


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Json]]:
    blocks = simulated_block_objs(150)
    path = write_jsonl(tmp_path_factory.mktemp("sim") / "sim.jsonl", blocks)
    return path, blocks


@pytest.fixture(scope="module")
def sim_store(
    tmp_path_factory: pytest.TempPathFactory, sim_file: tuple[Path, list[Json]]
) -> tuple[Path, Json, Path]:
    """sim.jsonl applied with N=10 and keep=3: (db, run summary, receipts file)."""
    base = tmp_path_factory.mktemp("simdb")
    db = base / "db"
    receipts = base / "receipts.jsonl"
    summary = run_blocks(db, sim_file[0], "--checkpoint-interval", "10", "--keep", "3",
                         "--receipts", receipts)
    return db, summary, receipts


# -- 1. run, receipts, verify -----------------------------------------------------------


def test_tiny_receipts_and_state_by_hand(tiny: tuple[Path, Path, Path]) -> None:
    _, db, receipts = tiny
    lines = read_jsonl(receipts)
    assert [line["height"] for line in lines] == [1, 2, 3]
    assert [line["state_root"] is None for line in lines] == [True, True, False]
    for line, want in zip(lines, TINY_RECEIPTS, strict=True):
        assert len(line["receipts"]) == len(want)
        for got_receipt, want_receipt in zip(line["receipts"], want, strict=True):
            _receipt_matches(got_receipt, want_receipt)
    state = cli_json("state", "--db", db)
    assert state["height"] == 3
    assert state["state_root"] == lines[2]["state_root"]
    assert state["books"] == TINY_STATE["books"]
    assert state["balances"] == TINY_STATE["balances"]


def test_run_summary_receipts_and_verify(
    sim_file: tuple[Path, list[Json]], sim_store: tuple[Path, Json, Path]
) -> None:
    path, blocks = sim_file
    db, summary, receipts_path = sim_store
    receipts = read_jsonl(receipts_path)
    expected = in_memory_receipts(path, 10)

    n_txs = sum(len(block["txs"]) for block in blocks)
    n_fills = sum(len(r.get("fills", [])) for line in expected for r in line["receipts"])
    n_rejected = sum(not r["ok"] for line in expected for r in line["receipts"])
    assert n_fills > 100 and n_rejected > 0  # the workload exercises both
    assert {"blocks", "txs", "fills", "rejected_txs", "tx_per_s", "checkpoints", "height",
            "state_root"} <= set(summary)
    assert summary["blocks"] == 150 and summary["height"] == 150
    assert summary["txs"] == n_txs
    assert summary["fills"] == n_fills
    assert summary["rejected_txs"] == n_rejected
    assert summary["checkpoints"] == 15
    assert isinstance(summary["tx_per_s"], int) and summary["tx_per_s"] > 0
    assert summary["state_root"] == expected[-1]["state_root"]

    assert [line["height"] for line in receipts] == list(range(1, 151))
    for line, want in zip(receipts, expected, strict=True):
        root = line["state_root"]
        if line["height"] % 10 == 0:
            assert isinstance(root, str) and len(bytes.fromhex(root)) == 32
        else:
            assert root is None
        assert root == want["state_root"]
        assert len(line["receipts"]) == len(blocks[line["height"] - 1]["txs"])
        assert line["receipts"] == want["receipts"]

    report = cli_json("verify", "--db", db)
    assert report["height"] == 150
    assert report["state_root"] == summary["state_root"]
    state = cli_json("state", "--db", db)
    assert state["height"] == 150 and state["state_root"] == summary["state_root"]
    checked = report["checked"]
    resting = sum(level[2] for book in state["books"].values()
                  for side in ("bids", "asks") for level in book[side])
    accounts = sum(len(per_user) for per_user in state["balances"].values())
    assert checked["resting_orders"] == resting
    assert checked["accounts"] == accounts
    assert checked["books"] == sum(
        1 for book in state["books"].values() if book["bids"] or book["asks"])
    assert report["kept_checkpoints"] == [130, 140, 150]  # --keep 3

    older = cli_json("verify", "--db", db, "--height", "140")
    assert older["height"] == 140 and older["state_root"] == expected[139]["state_root"]
    for height in ("100", "145"):  # pruned; not a checkpoint height
        line = assert_error(cli("verify", "--db", db, "--height", height), 1)
        assert height in line


def test_canonical_cbor_block_file_gives_same_root(
    tmp_path: Path, tiny: tuple[Path, Path, Path]
) -> None:
    blocks = []
    for block in TINY_BLOCKS:  # CBOR carries tif always, and normalised addresses
        txs = [dict(tx) for tx in block["txs"]]
        for tx in txs:
            tx["user"] = tx["user"].lower()
            if tx["op"] == "limit":
                tx.setdefault("tif", "gtc")
        blocks.append({**block, "txs": txs})
    path = tmp_path / "tiny.cbor"
    path.write_bytes(b"".join(cbor2.dumps(block, canonical=True) for block in blocks))
    summary = run_blocks(tmp_path / "db", path, "--checkpoint-interval", "3")
    assert summary["blocks"] == 3
    assert summary["state_root"] == head(tiny[1])[1]


# -- 2. the root does not depend on the checkpoint interval ------------------------------


def test_root_independent_of_checkpoint_interval(
    tmp_path: Path, sim_file: tuple[Path, list[Json]], sim_store: tuple[Path, Json, Path]
) -> None:
    path, _ = sim_file
    r7, r10 = tmp_path / "r7.jsonl", tmp_path / "r10.jsonl"
    s7 = run_blocks(tmp_path / "db7", path, "--checkpoint-interval", "7", "--receipts", r7)
    s10 = run_blocks(tmp_path / "db10", path, "--checkpoint-interval", "10", "--receipts", r10)
    assert s7["checkpoints"] == 150 // 7 and s10["checkpoints"] == 15
    assert s7["state_root"] == s10["state_root"] == sim_store[1]["state_root"]
    # 150 is not a multiple of 7: `state` computes the root of the exact state.
    assert head(tmp_path / "db7") == head(tmp_path / "db10") == (150, s10["state_root"])
    roots7 = {line["height"]: line["state_root"] for line in read_jsonl(r7)}
    roots10 = {line["height"]: line["state_root"] for line in read_jsonl(r10)}
    assert [h for h, root in roots7.items() if root] == list(range(7, 151, 7))
    common = [h for h in range(1, 151) if h % 70 == 0]
    assert common == [70, 140]
    for height in common:
        assert roots7[height] == roots10[height] is not None
    # Every checkpoint root of either run is the in-memory root at that height.
    memory = {line["height"]: line["state_root"] for line in in_memory_receipts(path, 1)}
    for roots in (roots7, roots10):
        for height, root in roots.items():
            if root is not None:
                assert root == memory[height]


# -- 3. kill -9 mid-run, resume, compare with an uninterrupted run ----------------------

CRASH_BLOCKS = 400
SIM_USERS = (
    [SimulatedMarket().makers[i] for i in range(8)]
    + [SimulatedMarket().takers[i] for i in range(36)]
    + [SimulatedMarket().latecomer]
)


def _start_sim_run(db: Path, receipts: Path | None = None) -> subprocess.Popen[str]:
    args = [*CLI, "run", "--sim-blocks", str(CRASH_BLOCKS), "--checkpoint-interval", "10",
            "--keep", "4", "--db", str(db), "--no-progress"]
    if receipts is not None:
        args += ["--receipts", str(receipts)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _all_history(db: Path) -> dict[str, Json]:
    with Store(str(db), keep=2**32, create=False) as store:
        return {user: store.user_history(user).to_json() for user in SIM_USERS}


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory: pytest.TempPathFactory) -> Json:
    base = tmp_path_factory.mktemp("crashref")
    db, receipts = base / "db", base / "receipts.jsonl"
    started = time.monotonic()
    proc = _start_sim_run(db, receipts)
    _wait_for_first_line(proc, receipts)
    first_line = time.monotonic()
    out, err = proc.communicate(timeout=TIMEOUT)
    finished = time.monotonic()
    seconds = finished - started
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["height"] == CRASH_BLOCKS and summary["fills"] > 1000
    # The root after every height, computed in this process without a store.
    market = SimulatedMarket(MarketConfig(blocks=CRASH_BLOCKS))
    executor = Executor(checkpoint_interval=1)
    roots = [executor.state_root.hex()]
    for height in range(1, CRASH_BLOCKS + 1):
        block = block_from_obj(market.block(height, executor.state), f"block {height}")
        result = executor.apply_block(block)
        assert result.state_root is not None
        roots.append(result.state_root.hex())
    assert roots[-1] == summary["state_root"]
    return {
        "db": db,
        "roots": roots,
        "seconds": seconds,
        "after_first_line": finished - first_line,
        "summary": summary,
        "receipts": {line["height"]: line for line in read_jsonl(receipts)},
        "receipt_lines": receipts.read_bytes().splitlines(),  # height H at [H - 1]
        "state": cli_json("state", "--db", db),
        "verify": cli_json("verify", "--db", db),
        "history": _all_history(db),
    }


def _kill_mid_run(db: Path, delay: float) -> int:
    """Start a simulated run, SIGKILL it after `delay` seconds; the height it reached."""
    proc = _start_sim_run(db)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    if not (db / "leveldb").exists():
        return 0
    state = cli("state", "--db", db)
    if state.returncode != 0:
        # Killed while LevelDB was creating its files: not a store yet (`run` starts over).
        assert "LevelDB" in assert_error(state, 1)
        return 0
    return int(json.loads(state.stdout)["height"])


@pytest.mark.parametrize("kill_point", [0, 1, 2])
def test_kill_9_and_resume_matches_uninterrupted(
    tmp_path: Path, crash_reference: Json, kill_point: int
) -> None:
    rng = random.Random(1234 + kill_point)
    fraction = (0.25, 0.5, 0.75)[kill_point] + rng.uniform(-0.1, 0.1)
    delay = crash_reference["seconds"] * fraction
    height = 0
    for attempt in range(5):  # adjust the delay if the kill came before or after the work
        db = tmp_path / f"db{attempt}"
        height = _kill_mid_run(db, delay)
        if 0 < height < CRASH_BLOCKS:
            break
        delay = delay * 1.6 if height == 0 else delay * 0.5
    assert 0 < height < CRASH_BLOCKS, f"never killed mid-run (last height {height})"
    ref = crash_reference
    # What survived the kill is exactly an uninterrupted run's state at that height, and
    # the history holds that run's fills and orders up to there, none beyond.
    assert head(db) == (height, ref["roots"][height])
    partial = _all_history(db)
    for user in SIM_USERS:
        want_fills = [f for f in ref["history"][user]["fills"] if f["height"] <= height]
        assert partial[user]["fills"] == want_fills, user
        want_orders = [o["order_id"] for o in ref["history"][user]["orders"]
                       if o["height"] <= height]
        assert [o["order_id"] for o in partial[user]["orders"]] == want_orders, user

    receipts = tmp_path / "resumed.jsonl"
    proc = _start_sim_run(db, receipts)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["blocks"] == CRASH_BLOCKS - height
    assert summary["height"] == CRASH_BLOCKS
    assert summary["state_root"] == ref["summary"]["state_root"]
    # The resumed part's receipts are the uninterrupted run's receipts for those heights.
    resumed = read_jsonl(receipts)
    assert [line["height"] for line in resumed] == list(range(height + 1, CRASH_BLOCKS + 1))
    for line in resumed:
        assert line == ref["receipts"][line["height"]]
    assert summary["fills"] == sum(
        len(r.get("fills", [])) for line in resumed for r in line["receipts"])

    assert cli_json("state", "--db", db) == ref["state"]
    verify = cli_json("verify", "--db", db)
    assert verify["state_root"] == ref["verify"]["state_root"]
    assert verify["checked"] == ref["verify"]["checked"]

    # No fill lost or duplicated: every user's complete history is the reference's.
    history = _all_history(db)
    total_fills = 0
    for user in SIM_USERS:
        fills = history[user]["fills"]
        keys = [(f["maker_order_id"], f["taker_order_id"], f["height"]) for f in fills]
        assert len(keys) == len(set(keys)), user
        assert history[user] == ref["history"][user], user
        total_fills += sum(1 for f in fills if f["taker"] == user)
    assert total_fills == ref["summary"]["fills"]
    # And through the command line, for a few users and orders.
    for who in (["--user", SIM_USERS[0]], ["--user", SIM_USERS[9]], ["--order", "150"],
                ["--order", "2000"]):
        assert cli_json("history", "--db", db, *who) == cli_json(
            "history", "--db", ref["db"], *who)


def _whole_receipt_lines(
    path: Path, reference: dict[int, Json], torn_tail: list[bytes] | None = None
) -> int:
    """Check the receipts file holds only whole lines, the reference's, from height 1 on;
    return the last height written whole.

    With `torn_tail` (a kill -9; the reference file's lines), the file may end in the first
    part of the next line:
    Linux stops a `write(2)` to a file at a page boundary when the process is killed, so
    a line longer than a page can be cut; what is there must be the start of that line."""
    data = path.read_bytes() if path.exists() else b""
    whole, _, tail = data.rpartition(b"\n")
    assert not tail or torn_tail is not None, data[-80:]
    heights = []
    for line in whole.decode().splitlines():
        parsed = json.loads(line)
        assert parsed == reference[parsed["height"]]
        heights.append(parsed["height"])
    assert heights == list(range(1, len(heights) + 1))
    if tail:
        assert torn_tail is not None and torn_tail[len(heights)].startswith(tail), tail[:80]
    return len(heights)


def _wait_for_first_line(proc: subprocess.Popen[str], receipts: Path) -> None:
    """Until `receipts` holds a whole line or `proc` has exited (bounded by TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if receipts.exists() and b"\n" in receipts.read_bytes():
            return
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_interrupted_run_leaves_whole_receipt_lines(
    tmp_path: Path, crash_reference: Json, how: str
) -> None:
    """Killed (kill -9) or stopped (SIGTERM/SIGINT) mid-run, `run --receipts` leaves only
    complete lines, one for each stored block: each is written whole as soon as its block
    is stored, never held (or left half) in a buffer. Only a kill -9 inside a line's
    `write(2)` can cut that one last line short (seen once in a full run under load)."""
    rng = random.Random(77)
    checked = 0
    for attempt in range(6):
        db, receipts = tmp_path / f"db{attempt}", tmp_path / f"r{attempt}.jsonl"
        proc = _start_sim_run(db, receipts)
        # Start the clock at the first stored block, not at the spawn: how long the
        # interpreter takes to start varies many times over on a loaded machine.
        _wait_for_first_line(proc, receipts)
        delay = crash_reference["after_first_line"] * rng.uniform(0.05, 0.6)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=TIMEOUT)
        written = _whole_receipt_lines(
            receipts,
            crash_reference["receipts"],
            crash_reference["receipt_lines"] if how == "SIGKILL" else None,
        )
        if proc.returncode == 0 or written == 0:
            continue  # finished before the signal, or stopped before the first block
        if how == "SIGKILL":
            assert proc.returncode == -signal.SIGKILL
            # Never a line of a block the store lost; and nothing held back in a buffer:
            # only blocks still in the writer's window when the kill came (stored, their
            # acknowledgement not read yet) are stored without their line.
            assert head(db)[0] - WINDOW <= written <= head(db)[0]
        else:  # a clean stop at a block boundary: exit 1, one line, every block stored
            assert proc.returncode == 1 and "interrupted" in err, err
            assert written == head(db)[0]
        checked += 1
        if checked >= 2:
            break
    assert checked >= 1, "never interrupted mid-run"


# -- 4. resume and refusal ------------------------------------------------------------


def test_rerun_skips_and_partial_resume(
    tmp_path: Path, sim_file: tuple[Path, list[Json]], sim_store: tuple[Path, Json, Path]
) -> None:
    path, blocks = sim_file
    root = sim_store[1]["state_root"]
    db = tmp_path / "db"
    first = write_jsonl(tmp_path / "first.jsonl", blocks[:64])
    part = run_blocks(db, first, "--checkpoint-interval", "10")
    assert part["blocks"] == 64 and part["height"] == 64
    rest_receipts = tmp_path / "rest.jsonl"
    rest = run_blocks(db, path, "--receipts", rest_receipts)
    assert rest["skipped"] == 64 and rest["blocks"] == 86
    assert rest["height"] == 150 and rest["state_root"] == root
    # One receipts line a block of the file, skipped ones from the store: the same lines
    # as a run that applied all 150 in one go (same checkpoint interval).
    assert read_jsonl(rest_receipts) == read_jsonl(sim_store[2])
    again = run_blocks(db, path)
    assert again["skipped"] == 150 and again["blocks"] == 0 and again["txs"] == 0
    assert again["state_root"] == root and head(db) == (150, root)


def test_changed_stored_block_is_refused(
    tmp_path: Path, sim_file: tuple[Path, list[Json]], sim_store: tuple[Path, Json, Path]
) -> None:
    _, blocks = sim_file
    db = tmp_path / "db"
    shutil.copytree(sim_store[0], db)
    before = head(db)
    changed = json.loads(json.dumps(blocks))
    tx = next(tx for tx in changed[56]["txs"] if tx["op"] == "limit")
    tx["size"] += 1
    extra = {"height": 151, "time": changed[-1]["time"] + 1, "txs": []}
    path = write_jsonl(tmp_path / "changed.jsonl", [*changed, extra])
    line = assert_error(cli("run", "--blocks", path, "--db", db, "--no-progress"), 1)
    assert "height 57" in line
    assert head(db) == before


# -- 5. bad input refuses the block and leaves the store as it was ---------------------

GOOD_TX: Json = {"op": "deposit", "user": A, "asset": 0, "amount": 5}


def _block(*txs: Json, height: int = 4, time_ms: int = 3000) -> str:
    return json.dumps({"height": height, "time": time_ms, "txs": list(txs)})


def _with(base: Json, **changes: Any) -> Json:
    tx = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            del tx[key]
        else:
            tx[key] = value
    return tx


_DROP = object()
LIMIT = limit(A, 1, "buy", 10, 1, "gtc")
MARKET: Json = {"op": "market", "user": A, "asset": 1, "side": "buy", "size": 1}
CANCEL: Json = {"op": "cancel", "user": A, "asset": 1, "order_id": 7}

BAD_INPUTS: dict[str, str | bytes] = {
    "bad_json": '{"height": 4, "time": 3000, "txs": [\n',
    "json_trailing_garbage": _block(GOOD_TX) + " x\n",
    "bad_cbor": b"\xff\x00\x01",
    "height_skips": _block(GOOD_TX, height=5),
    "height_repeats_unknown": _block(GOOD_TX, height=0),
    "time_backwards": _block(GOOD_TX, time_ms=1999),
    "unknown_op": _block({"op": "mint", "user": A, "asset": 0, "amount": 5}),
    "missing_field": _block(_with(GOOD_TX, amount=_DROP)),
    "missing_block_field": json.dumps({"height": 4, "txs": []}),
    "unknown_field": _block(_with(GOOD_TX, memo="hi")),
    "unknown_block_field": json.dumps({"height": 4, "time": 3000, "txs": [], "x": 1}),
    "float_amount": _block(_with(GOOD_TX, amount=5.0)),
    "float_time": json.dumps({"height": 4, "time": 3000.0, "txs": []}),
    "string_amount": _block(_with(GOOD_TX, amount="5")),
    "bool_amount": _block(_with(GOOD_TX, amount=True)),
    "bool_asset": _block(_with(GOOD_TX, asset=False)),
    "zero_amount": _block(_with(GOOD_TX, amount=0)),
    "negative_amount": _block(_with(GOOD_TX, amount=-5)),
    "amount_2_64": _block(_with(GOOD_TX, amount=2**64)),
    "zero_size": _block(_with(LIMIT, size=0)),
    "negative_size": _block(_with(MARKET, size=-1)),
    "zero_price": _block(_with(LIMIT, price=0)),
    "negative_price": _block(_with(LIMIT, price=-10)),
    "order_id_0": _block(_with(CANCEL, order_id=0)),
    "order_id_2_64": _block(_with(CANCEL, order_id=2**64)),
    "asset_2_32": _block(_with(GOOD_TX, asset=2**32)),
    "asset_0_limit": _block(_with(LIMIT, asset=0)),
    "asset_0_market": _block(_with(MARKET, asset=0)),
    "asset_0_cancel": _block(_with(CANCEL, asset=0)),
    "bad_address_short": _block(_with(GOOD_TX, user="0x1234")),
    "bad_address_hex": _block(_with(GOOD_TX, user="0x" + "zz" * 20)),
    "bad_address_prefix": _block(_with(GOOD_TX, user="00" * 21)),
    "unknown_side": _block(_with(LIMIT, side="bid")),
    "unknown_tif": _block(_with(LIMIT, tif="fok")),
    "bad_tx_after_good_tx": _block(GOOD_TX, _with(LIMIT, tif="GTC")),
}


# What the one-line message must name for each kind (the field, or the kind of problem).
BAD_MESSAGES: dict[str, str] = {
    "bad_json": "JSON", "json_trailing_garbage": "JSON", "bad_cbor": "CBOR",
    "height_skips": "height", "height_repeats_unknown": "height", "time_backwards": "time",
    "unknown_op": "mint", "missing_field": "amount", "missing_block_field": "time",
    "unknown_field": "memo", "unknown_block_field": '"x"', "float_amount": "5.0",
    "float_time": "3000.0", "string_amount": "amount", "bool_amount": "amount",
    "bool_asset": "asset", "zero_amount": "amount", "negative_amount": "amount",
    "amount_2_64": "amount", "zero_size": "size", "negative_size": "size",
    "zero_price": "price", "negative_price": "price", "order_id_0": "order_id",
    "order_id_2_64": "order_id", "asset_2_32": "asset", "asset_0_limit": "asset",
    "asset_0_market": "asset", "asset_0_cancel": "asset", "bad_address_short": "user",
    "bad_address_hex": "user", "bad_address_prefix": "user", "unknown_side": "side",
    "unknown_tif": "tif", "bad_tx_after_good_tx": "tif",
    "non_canonical_cbor": "canonical", "non_minimal_int_cbor": "canonical",
}


def _non_canonical_cbor() -> bytes:
    # The same block in insertion key order ("height" first) instead of canonical order.
    block = {"height": 4, "time": 3000, "txs": [GOOD_TX]}
    encoded = cbor2.dumps(block)
    assert encoded != cbor2.dumps(block, canonical=True)
    return encoded


def _non_minimal_int_cbor() -> bytes:
    canonical = cbor2.dumps({"height": 4, "time": 3000, "txs": [GOOD_TX]}, canonical=True)
    # "height" then 4 (0x04) -> the same value written as a one-byte argument (0x18 0x04).
    marker = cbor2.dumps("height") + b"\x04"
    assert canonical.count(marker) == 1
    return canonical.replace(marker, cbor2.dumps("height") + b"\x18\x04")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory, tiny: tuple[Path, Path, Path]
               ) -> tuple[Path, tuple[int, str]]:
    return tiny[1], head(tiny[1])


@pytest.mark.parametrize("kind", [*BAD_INPUTS, "non_canonical_cbor", "non_minimal_int_cbor"])
def test_bad_input_is_refused_and_store_unchanged(
    tmp_path: Path, base_store: tuple[Path, tuple[int, str]], kind: str
) -> None:
    db = tmp_path / "db"
    shutil.copytree(base_store[0], db)
    if kind == "non_canonical_cbor":
        content: str | bytes = _non_canonical_cbor()
    elif kind == "non_minimal_int_cbor":
        content = _non_minimal_int_cbor()
    else:
        content = BAD_INPUTS[kind]
    path = tmp_path / "bad.blocks"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if content.endswith("\n") else content + "\n")
    proc = cli("run", "--blocks", path, "--db", db, "--no-progress")
    line = assert_error(proc, 1)
    assert BAD_MESSAGES[kind] in line
    assert proc.stdout == ""
    assert head(db) == base_store[1]


def test_good_block_after_the_bad_cases_applies(
    tmp_path: Path, base_store: tuple[Path, tuple[int, str]]
) -> None:
    """The control for the cases above: the same store takes a valid block 4."""
    db = tmp_path / "db"
    shutil.copytree(base_store[0], db)
    path = tmp_path / "good.jsonl"
    path.write_text(_block(GOOD_TX, _with(LIMIT, tif="alo")) + "\n")
    summary = run_blocks(db, path)
    assert summary["blocks"] == 1 and summary["height"] == 4
    assert head(db)[1] != base_store[1][1]


def test_empty_block_file_is_valid(tmp_path: Path, base_store: tuple[Path, tuple[int, str]]
                                   ) -> None:
    db = tmp_path / "db"
    shutil.copytree(base_store[0], db)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    summary = run_blocks(db, empty)
    assert summary["blocks"] == 0 and summary["height"] == 3
    assert head(db) == base_store[1]
    fresh = run_blocks(tmp_path / "fresh", empty)
    assert fresh["blocks"] == 0 and fresh["height"] == 0


# -- 6. state, history, prove / verify-proof, diff --------------------------------------


def test_state_filters(tiny: tuple[Path, Path, Path]) -> None:
    _, db, _ = tiny
    full = cli_json("state", "--db", db)
    by_asset = cli_json("state", "--db", db, "--asset", "1")
    assert by_asset["books"] == {"1": {"bids": [], "asks": [[40, 3, 1]]}}
    assert by_asset["balances"] == {B: {"1": {"available": 77, "locked": 3}}}
    assert by_asset["state_root"] == full["state_root"]
    quote = cli_json("state", "--db", db, "--asset", "0")
    assert quote["books"] == {} or quote["books"] == {"0": {"bids": [], "asks": []}}
    assert quote["balances"] == {A: {"0": {"available": 8950, "locked": 0}},
                                 B: {"0": {"available": 2050, "locked": 0}}}
    by_user = cli_json("state", "--db", db, "--user", B_MIXED)
    assert by_user["books"] == full["books"]
    assert by_user["balances"] == {B: TINY_STATE["balances"][B]}
    both = cli_json("state", "--db", db, "--user", A, "--asset", "1")
    assert both["balances"] == {}
    for unknown in (C, "0x" + "ab" * 20):
        nobody = cli_json("state", "--db", db, "--user", unknown)
        assert nobody["balances"] == {} and nobody["books"] == full["books"]
    assert_error(cli("state", "--db", db, "--user", "0x12"), 1)
    assert_error(cli("state", "--db", db, "--asset", str(2**32)), 1)


def test_history_by_hand(tiny: tuple[Path, Path, Path]) -> None:
    _, db, _ = tiny
    hist_a = cli_json("history", "--db", db, "--user", A)
    assert hist_a["next"] is None
    assert [f["maker_order_id"] for f in hist_a["fills"]] == [1, 2, 2]
    assert [(f["taker_order_id"], f["price"], f["size"], f["height"], f["asset"],
             f["taker_side"]) for f in hist_a["fills"]] == [
        (3, 50, 10, 2, 1, "buy"), (3, 55, 2, 2, 1, "buy"), (5, 55, 8, 2, 1, "buy")]
    orders = {o["order_id"]: o for o in hist_a["orders"]}
    assert list(orders) == [3, 4, 5]
    assert orders[3] == {
        "order_id": 3, "user": A, "asset": 1, "side": "buy", "type": "limit", "tif": "ioc",
        "price": 60, "size": 12, "filled": 12, "height": 2, "status": "filled",
        "cancel_reason": None}
    assert (orders[4]["status"], orders[4]["cancel_reason"], orders[4]["filled"]) == (
        "canceled", "user", 0)
    assert orders[5]["type"] == "market" and "price" not in orders[5]
    assert (orders[5]["status"], orders[5]["cancel_reason"], orders[5]["filled"]) == (
        "canceled", "market", 8)

    hist_b = cli_json("history", "--db", db, "--user", B_MIXED)
    assert [o["order_id"] for o in hist_b["orders"]] == [1, 2, 6, 7]
    status_b = {o["order_id"]: (o["status"], o["cancel_reason"]) for o in hist_b["orders"]}
    assert status_b == {1: ("filled", None), 2: ("filled", None),
                        6: ("canceled", "self_trade"), 7: ("resting", None)}
    assert len(hist_b["fills"]) == 3

    one = cli_json("history", "--db", db, "--order", "2")
    assert [o["order_id"] for o in one["orders"]] == [2]
    assert [(f["taker_order_id"], f["size"]) for f in one["fills"]] == [(3, 2), (5, 8)]
    assert one["next"] is None

    for args in (["--user", C], ["--user", "0x" + "77" * 20], ["--order", "8"],
                 ["--order", str(2**64 - 1)]):
        empty = cli_json("history", "--db", db, *args)
        assert empty["fills"] == [] and empty["orders"] == [], args
    for args in (["--user", "0x123"], ["--user", "hello"], ["--order", "abc"],
                 ["--order", "0"], ["--order", "-1"], ["--order", str(2**64)],
                 ["--order", "1.5"], ["--user", A, "--after", "not-a-cursor"]):
        assert_error(cli("history", "--db", db, *args), 1)


def test_history_paging_reconstructs_full_lists(sim_store: tuple[Path, Json, Path]) -> None:
    db = sim_store[0]
    users = SIM_USERS[0], SIM_USERS[10]
    for user in users:
        full = cli_json("history", "--db", db, "--user", user)
        assert full["next"] is None and len(full["fills"]) > 20
        fills: list[Json] = []
        orders: list[Json] = []
        cursor: str | None = None
        pages = 0
        size = 40
        while True:
            extra: list[str] = [] if cursor is None else ["--after", cursor]
            page = cli_json("history", "--db", db, "--user", user, "--limit", str(size),
                            *extra)
            assert len(page["fills"]) <= size and len(page["orders"]) <= size
            fills += page["fills"]
            orders += page["orders"]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
            assert pages < 200
        assert pages >= 2
        assert fills == full["fills"]
        assert orders == full["orders"]
        ids = [o["order_id"] for o in orders]
        assert len(ids) == len(set(ids)) and ids == sorted(ids)
        # Each fill names the user, as maker or taker.
        assert all(user in (f["maker"], f["taker"]) for f in fills)
    busy = max(cli_json("history", "--db", db, "--user", SIM_USERS[0])["orders"],
               key=lambda o: o["filled"])
    by_order = cli_json("history", "--db", db, "--order", str(busy["order_id"]))
    assert by_order["orders"] == [busy]
    assert sum(f["size"] for f in by_order["fills"]) == busy["filled"] > 0
    paged = cli_json("history", "--db", db, "--order", str(busy["order_id"]), "--limit", "1")
    assert len(paged["fills"]) <= 1


def _proof(db: Path, *args: str) -> Json:
    return cli_json("prove", "--db", db, *args)


def _check_proof(tmp_path: Path, root: str, proof: Json, name: str = "p.json") -> int:
    path = tmp_path / name
    path.write_text(json.dumps(proof))
    proc = cli("verify-proof", "--root", root, path)
    if proc.returncode != 0:
        assert_error(proc, 1)
    return proc.returncode


def _flip_bit(hex_text: str, bit: int) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return raw.hex()


def test_prove_and_verify_proof(tmp_path: Path, tiny: tuple[Path, Path, Path]) -> None:
    _, db, _ = tiny
    root = head(db)[1]  # height 3 is a checkpoint (N=3)
    balance = _proof(db, "--user", B_MIXED, "--asset", "1")
    assert balance["root"] == root and balance["height"] == 3
    assert balance["included"] is True
    assert balance["value"] == {"available": 77, "locked": 3}
    assert _check_proof(tmp_path, root, balance) == 0

    resting = _proof(db, "--order", "7")
    assert resting["included"] is True
    assert _check_proof(tmp_path, root, resting) == 0
    for gone in ("1", "3", "4", "5", "6"):  # filled, filled, cancelled, market, self-trade
        excl = _proof(db, "--order", gone)
        assert excl["included"] is False and excl["value_hex"] is None, gone
        assert _check_proof(tmp_path, root, excl) == 0
        # Claiming the absent order is present, with the resting order's value, fails.
        forged = dict(excl, value_hex=resting["value_hex"])
        assert _check_proof(tmp_path, root, forged) == 1
    nobody = _proof(db, "--user", C, "--asset", "2")
    assert nobody["included"] is False
    assert _check_proof(tmp_path, root, nobody) == 0

    other_root = _flip_bit(root, 5)
    for proof in (balance, resting, nobody):
        assert _check_proof(tmp_path, other_root, proof) == 1
        proof_bits = len(proof["proof_hex"]) * 4
        for bit in rng_bits(proof_bits, 3, seed=len(proof["key_hex"])):
            assert _check_proof(tmp_path, root, dict(
                proof, proof_hex=_flip_bit(proof["proof_hex"], bit))) == 1, bit
    tampered = dict(balance, value_hex=_flip_bit(balance["value_hex"], 3))
    assert _check_proof(tmp_path, root, tampered) == 1
    other_key = dict(balance, key_hex=_proof(db, "--user", A, "--asset", "0")["key_hex"])
    assert _check_proof(tmp_path, root, other_key) == 1
    # Absent from the proof (or not JSON): refused, one line.
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert_error(cli("verify-proof", "--root", root, bad), 1)
    assert_error(cli("verify-proof", "--root", "abc", tmp_path / "p.json"), 1)
    assert_error(cli("verify-proof", "--root", root, tmp_path / "missing.json"), 1)
    assert_error(cli("prove", "--db", db, "--order", "0"), 1)


def _refused_naming(tmp_path: Path, root: str, proof: Json, field: str,
                    *extra: str) -> None:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(proof))
    line = assert_error(cli("verify-proof", "--root", root, *extra, path), 1)
    assert f"field {field!r}" in line, (field, line)


def test_verify_proof_checks_every_field(tmp_path: Path, tiny: tuple[Path, Path, Path]
                                         ) -> None:
    """Each field a person reads must agree with the bytes the proof proves."""
    _, db, _ = tiny
    root = head(db)[1]
    balance = _proof(db, "--user", B, "--asset", "1")  # B holds 77 available, 3 locked
    path = tmp_path / "good.json"
    path.write_text(json.dumps(balance))
    out = json.loads(cli("verify-proof", "--root", root, path, check=0).stdout)
    assert out == {"valid": True, "root": root, "height": 3, "key": f"balances/{B}/1",
                   "included": True, "value": {"available": 77, "locked": 3}}
    assert cli("verify-proof", "--root", root, "--height", "3", path).returncode == 0

    value = balance["value"]
    for field, edited in [
        ("value", {**value, "locked": value["locked"] + 1}),
        ("value", {**value, "locked": float(value["locked"])}),  # 3.0 is not 3
        ("value", {**value, "locked": True}),
        ("value", None),
        ("namespace_hex", "01" + "00" * 4),  # the balances of asset 0, not asset 1
        ("key", f"balances/{B}/2"),
        ("key", f"balances/{A}/1"),
        ("included", False),
        ("root", _flip_bit(root, 1)),
        ("height", "3"),
        ("height", -1),
    ]:
        _refused_naming(tmp_path, root, dict(balance, **{field: edited}), field)
    _refused_naming(tmp_path, root, balance, "height", "--height", "6")
    _refused_naming(tmp_path, root, dict(balance, note="trust me"), "note")
    _refused_naming(tmp_path, root, {k: v for k, v in balance.items() if k != "proof_hex"},
                    "proof_hex")
    # Fields left out are not checked (the proof still binds key and value); those given are.
    bare = {k: balance[k] for k in ("key_hex", "value_hex", "proof_hex")}
    assert _check_proof(tmp_path, root, bare) == 0

    resting = _proof(db, "--order", "7")
    assert resting["key"] == "books/1/orders/7"
    assert set(resting["value"]) == {"user", "side", "price", "size"}
    assert _check_proof(tmp_path, root, resting) == 0
    _refused_naming(tmp_path, root, dict(resting, value=dict(resting["value"], side="buy"
                    if resting["value"]["side"] == "sell" else "sell")), "value")
    absent = _proof(db, "--order", "1")
    assert absent["value"] is None
    _refused_naming(tmp_path, root, dict(absent, value=resting["value"]), "value")
    _refused_naming(tmp_path, root, dict(absent, included=True), "included")


def rng_bits(total: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.sample(range(total), min(count, total)))


DIFF_BLOCKS: list[Json] = [
    {"height": 1, "time": 10, "txs": [
        {"op": "deposit", "user": A, "asset": 0, "amount": 10000},
        {"op": "deposit", "user": B, "asset": 1, "amount": 100},
    ]},
    {"height": 2, "time": 20, "txs": [
        limit(B, 1, "sell", 50, 10),
        limit(A, 1, "buy", 40, 5),
    ]},
    {"height": 3, "time": 30, "txs": [{"op": "deposit", "user": C, "asset": 2, "amount": 7}]},
    {"height": 4, "time": 40, "txs": []},
]


def test_diff(tmp_path: Path) -> None:
    other_blocks = json.loads(json.dumps(DIFF_BLOCKS))
    other_blocks[1]["txs"][1]["price"] = 41  # the one differing tx, at height 2
    one = write_jsonl(tmp_path / "one.jsonl", DIFF_BLOCKS)
    two = write_jsonl(tmp_path / "two.jsonl", other_blocks)
    for name, path in (("a", one), ("a2", one), ("b", two)):
        run_blocks(tmp_path / name, path, "--checkpoint-interval", "2")
    a, a2, b = tmp_path / "a", tmp_path / "a2", tmp_path / "b"

    proc = cli("diff", "--db", a, "--other", b)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["equal"] is False
    assert report["first_divergent_height"] == 2
    assert report["compared_height"] == 4
    assert report["state_root"] == {"db": head(a)[1], "other": head(b)[1]}
    want = {
        "books/1/bids/40": ([5, 1], None),
        "books/1/bids/41": (None, [5, 1]),
        f"balances/{A}/0": ({"available": 9800, "locked": 200},
                            {"available": 9795, "locked": 205}),
        # Order 2 (A's buy; B's sell is order 1) rests at 40 in one store, 41 in the other.
        "books/1/orders/2": ({"user": A, "side": "buy", "price": 40, "size": 5},
                             {"user": A, "side": "buy", "price": 41, "size": 5}),
    }
    got = {d["key"]: (d["db"], d["other"]) for d in report["differences"]}
    assert got == want
    assert len(report["differences"]) == len(want)

    at_2 = cli("diff", "--db", a, "--other", b, "--height", "2")
    assert at_2.returncode == 1
    assert json.loads(at_2.stdout)["compared_height"] == 2

    same = cli_json("diff", "--db", a, "--other", a2)
    assert same["equal"] is True and same["first_divergent_height"] is None
    assert same["differences"] == [] and same["compared_height"] == 4
    assert same["state_root"]["db"] == same["state_root"]["other"]
    assert_error(cli("diff", "--db", a, "--other", tmp_path / "nowhere"), 1)
    assert_error(cli("diff", "--db", a, "--other", b, "--height", "3"), 1)


def test_diff_lists_globals_and_blocks_alone(tmp_path: Path) -> None:
    """States differing only in next_order_id are listed; blocks differing with equal
    states give equal false and an empty list."""
    deposit = {"op": "deposit", "user": A, "asset": 0, "amount": 1000}
    withdraw = {"op": "withdraw", "user": A, "asset": 0, "amount": 1000}
    first = {"height": 1, "time": 10, "txs": [deposit]}
    plain = [first, {"height": 2, "time": 20, "txs": []}]
    # An ioc buy with nothing to meet takes id 1 and leaves nothing else changed.
    with_ioc = [first, {"height": 2, "time": 20, "txs": [limit(A, 1, "buy", 5, 10, "ioc")]}]
    # Deposit and withdraw of the same amount: another block, the same state.
    round_trip = [first, {"height": 2, "time": 20, "txs": [deposit, withdraw]}]
    for name, blocks in (("plain", plain), ("ioc", with_ioc), ("trip", round_trip)):
        run_blocks(tmp_path / name, write_jsonl(tmp_path / f"{name}.jsonl", blocks),
                   "--checkpoint-interval", "2")

    proc = cli("diff", "--db", tmp_path / "plain", "--other", tmp_path / "ioc")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["differences"] == [{"key": "next_order_id", "db": 1, "other": 2}]
    assert report["equal"] is False and report["first_divergent_height"] == 2

    proc = cli("diff", "--db", tmp_path / "plain", "--other", tmp_path / "trip")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["differences"] == [] and report["equal"] is False
    assert report["first_divergent_height"] == 2
    assert report["state_root"]["db"] == report["state_root"]["other"]


# -- 7. usage errors, help, missing stores ------------------------------------------------


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["run", "--checkpoint-interval", "0"],
    ["run", "--checkpoint-interval", "ten"],
    ["run", "--keep", "-1"],
    ["run", "--sim-blocks", "0"],
    ["run", "--no-such-flag"],
    ["verify"],
    ["verify", "--db", "x", "--height", "h"],
    ["state"],
    ["state", "--db", "x", "--asset", "one"],
    ["history", "--db", "x"],
    ["history", "--db", "x", "--user", A, "--order", "1"],
    ["history", "--db", "x", "--user", A, "--limit", "0"],
    ["prove", "--db", "x"],
    ["prove", "--db", "x", "--user", A],
    ["prove", "--db", "x", "--order", "1", "--user", A, "--asset", "1"],
    ["verify-proof", "p.json"],
    ["verify-proof", "--root", "00" * 32],
    ["diff", "--db", "x"],
    ["bench", "--slow"],
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert_error(proc, 2)
    assert proc.stdout == ""
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help(command: str | None) -> None:
    proc = cli(*([] if command is None else [command]), "--help", check=0)
    assert "usage:" in proc.stdout
    if command is not None:
        assert f"example: coreledger {command}" in proc.stdout


@pytest.mark.parametrize("args", [
    ["verify"], ["state"], ["history", "--user", A], ["history", "--order", "1"],
    ["prove", "--order", "1"], ["diff", "--other", "."],
])
def test_missing_store_is_one_line_exit_1(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing"
    assert_error(cli(*args, "--db", missing), 1)
    assert not missing.exists()


def test_run_missing_blocks_file_and_unwritable_receipts(tmp_path: Path) -> None:
    line = assert_error(cli("run", "--blocks", tmp_path / "none.jsonl", "--db",
                            tmp_path / "db", "--no-progress"), 1)
    assert "none.jsonl" in line
    good = write_jsonl(tmp_path / "g.jsonl", DIFF_BLOCKS[:1])
    assert_error(cli("run", "--blocks", good, "--db", tmp_path / "db2", "--receipts",
                     tmp_path / "no" / "dir" / "r.jsonl", "--no-progress"), 1)


def test_store_in_use_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "db"
    run_blocks(db, write_jsonl(tmp_path / "g.jsonl", DIFF_BLOCKS))
    with Store(str(db), keep=2**32, create=False):
        assert_error(cli("state", "--db", db), 1)
        assert_error(cli("run", "--blocks", tmp_path / "g.jsonl", "--db", db,
                         "--no-progress"), 1)
    assert head(db)[0] == 4
