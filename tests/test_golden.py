"""End-to-end golden vectors: state entries, namespace roots, state roots, block hashes and
store rows pinned in spec/vectors/blocks/*.golden.json (layout: spec/vectors/README.md).

The pinned hex comes from tests/reference/, written from spec/ alone (no import of
`merkle`, `state_machine.entries` or block_exec's encoder); the code under test is
checked against both the reference and the pinned hex, so a change of encoding (a cbor2
or blake3 upgrade, a faster tree) that moves a single byte fails here. A few values are
checked by hand as well: the official BLAKE3 vectors, the CRC-32 check value, CBOR heads
and one entry of each kind.
"""

from __future__ import annotations

import importlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from block_exec import (
    Executor,
    block_from_obj,
    block_receipts_line,
    decode_json_block,
    encode_block,
    read_block_file,
)
from block_exec.cli import main as cli_main
from block_exec.simulate import MarketConfig, SimulatedMarket
from state_machine import Order, Side, state_entries
from state_machine.entries import (
    NEXT_ORDER_ID_KEY,
    balance_key,
    encode_balance,
    encode_order,
    order_key,
)
from store.roots import compute_roots
from tests.reference import cbor, golden, ledger, smt, store_rows

NAMES = golden.names()
VECTOR_DIR = golden.VECTOR_DIR
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20


def _pinned(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTOR_DIR / f"{name}.golden.json").read_text())
    return data


def _blocks_file(name: str) -> Path:
    return VECTOR_DIR / f"{name}.blocks.jsonl"


# -- hand-checked primitives --------------------------------------------------------------


def test_blake3_official_vectors() -> None:
    # BLAKE3-team/BLAKE3 test_vectors/test_vectors.json, default 32-byte hash; the input
    # of length n is the bytes i % 251 for i < n.
    assert blake3(b"").hexdigest() == (
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    assert blake3(bytes([0])).hexdigest() == (
        "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"
    )


def test_crc32_is_the_standard_one() -> None:
    assert store_rows.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    for data in (b"", b"\x81\x01", bytes(range(256))):
        assert store_rows.crc32(data) == zlib.crc32(data)


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (2**64, "c249010000000000000000"),
        (3 * (2**64 - 1), "c24902fffffffffffffffd"),
        (2**256 - 1, "c25820" + "ff" * 32),
        (b"", "40"),
        (b"\xaa" * 20, "54" + "aa" * 20),
        (None, "f6"),
        ([], "80"),
        ([1, [b"\x00", 2]], "82" "01" "82" "4100" "02"),
        # map keys by their encoded bytes: the shorter key first
        ({"txs": [], "time": 1, "height": 2}, "a3" "6374787380" "6474696d6501" "6668656967687402"),
    ],
)
def test_reference_cbor_by_hand(value: cbor.CborValue, hex_: str) -> None:
    assert cbor.encode(value).hex() == hex_


def test_entry_encodings_by_hand() -> None:
    """One entry of each kind, bytes written out by hand (spec/state.md §10)."""
    assert NEXT_ORDER_ID_KEY.hex() == "00" + b"next_order_id".hex()
    assert NEXT_ORDER_ID_KEY.hex() == "006e6578745f6f726465725f6964"
    # balances/A/1 = [6, 0]
    assert balance_key(A, 1).hex() == "01" + "aa" * 20 + "00000001"
    assert encode_balance(6, 0).hex() == "82" + "06" + "00"
    # a balance past 2^64 is a tag-2 bignum: [2^64, 400]
    assert encode_balance(2**64, 400).hex() == "82" + "c249010000000000000000" + "190190"
    # books/1/orders/3 = a buy of 2 at 12 by A
    order = Order(3, A, 1, Side.BUY, 12, 2)
    assert order_key(1, 3).hex() == "02" + "00000001" + "0000000000000003"
    assert encode_order(order).hex() == "84" + "00" + "0c" + "02" + "54" + "aa" * 20
    # a sell at 300, 24 left, by B on asset 2^32-1, id 2^64-1
    order = Order(2**64 - 1, B, 2**32 - 1, Side.SELL, 300, 24)
    assert order_key(2**32 - 1, 2**64 - 1).hex() == "02" + "ff" * 4 + "ff" * 8
    assert encode_order(order).hex() == "84" + "01" + "19012c" + "1818" + "54" + "bb" * 20


def test_namespace_tree_is_keyed_by_the_whole_state_key() -> None:
    """The globals namespace holds one entry: its root is that entry's leaf, whose key is
    the whole state key `00 "next_order_id"` (namespace byte included)."""
    for name in NAMES:
        pinned = _pinned(name)
        entries = dict(pinned["entries"])
        value = bytes.fromhex(entries[NEXT_ORDER_ID_KEY.hex()])
        leaf = blake3(
            b"\x00" + blake3(NEXT_ORDER_ID_KEY).digest() + blake3(value).digest()
        ).hexdigest()
        assert dict(pinned["namespace_roots"])["00"] == leaf, name


# -- the pinned files ---------------------------------------------------------------------


def test_every_case_has_golden_vectors() -> None:
    on_disk = sorted(p.name.split(".")[0] for p in VECTOR_DIR.glob("*.golden.json"))
    assert on_disk == NAMES
    assert len(NAMES) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_is_what_the_reference_computes(name: str) -> None:
    assert (VECTOR_DIR / f"{name}.golden.json").read_text() == golden.render(name)


@pytest.mark.parametrize("name", NAMES)
def test_reference_reproduces_the_hand_computed_receipts(name: str) -> None:
    """The reference's rules agree with the hand-computed receipts of the same vectors."""
    outcomes = ledger.run(_blocks_file(name))
    expected = (VECTOR_DIR / f"{name}.receipts.jsonl").read_text().splitlines()
    assert ledger.receipts_lines(outcomes) == expected


@pytest.mark.parametrize("name", NAMES)
def test_code_matches_golden(name: str) -> None:
    pinned = _pinned(name)
    outcomes = ledger.run(_blocks_file(name))
    executor = Executor(checkpoint_interval=1)
    blocks = []
    for block, outcome in zip(read_block_file(str(_blocks_file(name))), outcomes, strict=True):
        assert encode_block(block) == outcome.block_bytes
        result = executor.apply_block(block)
        assert result.state_root is not None
        blocks.append(
            {
                "height": result.height,
                "block_hash": result.block_hash.hex(),
                "state_root": result.state_root.hex(),
            }
        )
    assert blocks == pinned["blocks"]
    entries = state_entries(executor.state)
    assert [[k.hex(), v.hex()] for k, v in entries] == pinned["entries"]
    roots = compute_roots(entries)
    assert [[n.hex(), r.hex()] for n, r in roots.namespaces] == pinned["namespace_roots"]
    assert roots.root.hex() == pinned["state_root"]
    assert executor.roots() == roots
    assert executor.state_root.hex() == pinned["state_root"]


@pytest.mark.parametrize("name", NAMES)
def test_root_does_not_depend_on_the_checkpoint_interval(name: str) -> None:
    pinned = _pinned(name)
    executor = Executor(checkpoint_interval=2)
    for block, want in zip(read_block_file(str(_blocks_file(name))), pinned["blocks"],
                           strict=True):
        result = executor.apply_block(block)
        assert result.state_root is None or result.state_root.hex() == want["state_root"]
    assert executor.state_root.hex() == pinned["state_root"]


# -- the store, byte for byte -------------------------------------------------------------


def _leveldb() -> Any:
    """plyvel, or its fork plyvel_next where plyvel has no wheel (same API)."""
    try:
        return importlib.import_module("plyvel")
    except ImportError:  # pragma: no cover - depends on the Python version
        return importlib.import_module("plyvel_next")


def _tables(db_dir: Path) -> dict[bytes, bytes]:
    db = _leveldb().DB(str(db_dir / "leveldb"))
    try:
        return {
            key: value
            for key, value in db.iterator()
            if key[:1] in store_rows.TABLES
        }
    finally:
        db.close()


@pytest.mark.parametrize("interval", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_store_rows_match_the_spec(name: str, interval: int, tmp_path: Path) -> None:
    """`coreledger run` on a real LevelDB writes exactly the rows spec/store.md describes:
    meta, blocks (receipts field included), state versions, latest copies, checkpoint
    rows `12`, change logs `13` and the history tables `20`-`25`."""
    db_dir = tmp_path / "db"
    receipts = tmp_path / "receipts.jsonl"
    argv = ["run", "--blocks", str(_blocks_file(name)), "--db", str(db_dir),
            "--checkpoint-interval", str(interval), "--keep", "1000",
            "--receipts", str(receipts), "--no-progress"]
    assert cli_main(argv) == 0
    outcomes = ledger.run(_blocks_file(name))
    expected_lines = (VECTOR_DIR / f"{name}.receipts.jsonl").read_text().splitlines()
    expected = store_rows.expected_rows(outcomes, expected_lines, interval)
    got = _tables(db_dir)
    assert sorted(got) == sorted(expected)
    for key in sorted(expected):
        assert got[key].hex() == expected[key].hex(), key.hex()
    # The receipts file holds the stored receipts field, each line ended by one LF.
    stored = [got[b"\x01" + o.height.to_bytes(8, "big")] for o in outcomes]
    lines = receipts.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [line for line in lines[:-1]] == [
        store_rows.receipts_line(line, o.state_root if o.height % interval == 0 else None)
        for line, o in zip(expected_lines, outcomes, strict=True)
    ]
    assert all(row.endswith(line) for row, line in zip(stored, lines, strict=False))


def test_pruning_leaves_change_log_rows_of_deleted_tombstones(tmp_path: Path) -> None:
    """spec/store.md, Pruning: a key changed by a dropped checkpoint and removed at the
    oldest kept one O loses its tombstone `10 key O`, while `13 O key` stays."""
    db_dir = tmp_path / "db"
    lines = [
        f'{{"height":{h},"time":{h},"txs":[{{"op":"{op}","user":"{A}","asset":0,"amount":5}}]}}'
        for h, op in ((1, "deposit"), (2, "withdraw"))
    ]
    with Executor.open(str(db_dir), checkpoint_interval=1, keep=1) as executor:
        for line in lines:
            executor.apply_block(decode_json_block(line))
    rows = _tables(db_dir)
    key = balance_key(A, 0)
    height2 = (2).to_bytes(8, "big")
    assert rows.get(b"\x13" + height2 + key) == b""
    assert not [k for k in rows if k.startswith(b"\x10" + key)]
    assert not [k for k in rows if k.startswith(b"\x13" + (1).to_bytes(8, "big"))]
    assert b"\x12" + (1).to_bytes(8, "big") not in rows
    # The next_order_id entry, changed at 1 only, keeps its one version (read by O = 2).
    assert [k for k in rows if k.startswith(b"\x10" + NEXT_ORDER_ID_KEY)] == [
        b"\x10" + NEXT_ORDER_ID_KEY + (1).to_bytes(8, "big")
    ]


def test_reference_tree_matches_the_merkle_vectors() -> None:
    """The reference's tree agrees with spec/vectors/merkle_roots.json (layout in
    spec/vectors/README.md), so the golden roots and the tree vectors share one definition."""
    vectors = json.loads((VECTOR_DIR.parent / "merkle_roots.json").read_text())
    assert vectors["empty_hash"] == smt.EMPTY.hex()
    for case in vectors["maps"]:
        mapping = {bytes.fromhex(k): bytes.fromhex(v) for k, v in case["entries"]}
        assert smt.root(mapping).hex() == case["root"], case["name"]
    ns = vectors["namespaced"]
    grouped: dict[bytes, dict[bytes, bytes]] = {}
    for n, k, v in ns["entries"]:
        grouped.setdefault(bytes.fromhex(n), {})[bytes.fromhex(k)] = bytes.fromhex(v)
    for n in ns["empty_namespaces"]:
        grouped.setdefault(bytes.fromhex(n), {})
    root, subs = smt.namespaced_roots(grouped)
    assert {n.hex(): r.hex() for n, r in subs.items()} == ns["namespace_roots"]
    assert root.hex() == ns["root"]


def test_simulated_market_matches_the_reference(tmp_path: Path) -> None:
    """A realistic workload (the built-in simulated market: hundreds of entries, deeper
    trees, every op): receipts, every block hash and state root and
    the final entries agree with the reference."""
    market = SimulatedMarket(MarketConfig(blocks=30))
    executor = Executor(checkpoint_interval=1)
    lines, results = [], []
    for height in range(1, 31):
        obj = market.block(height, executor.state)
        lines.append(json.dumps(obj))
        results.append(executor.apply_block(block_from_obj(obj, "sim")))
    path = tmp_path / "sim.blocks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    outcomes = ledger.run(path)
    assert len(outcomes[-1].entries) > 300
    assert sum(len(r.fills) for o in outcomes for r in o.results) > 50
    assert ledger.receipts_lines(outcomes) == [
        block_receipts_line(r.height, None, r.receipts) for r in results
    ]
    for result, outcome in zip(results, outcomes, strict=True):
        assert result.block_hash == outcome.block_hash
        assert result.block_bytes == outcome.block_bytes
        assert result.state_root == outcome.state_root, result.height
    assert dict(state_entries(executor.state)) == outcomes[-1].entries
    assert dict(executor.roots().namespaces) == outcomes[-1].namespace_roots
