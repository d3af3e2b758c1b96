"""Conformance vectors of spec/vectors/blocks/: their hand-computed source, and the runner.

Every expected receipt and final balance below was computed by hand from the contract's
rules (the working is in the comments); the vector files are these literals serialised,
never output of the code under test. `python tests/test_blocks_vectors.py` rewrites the
files; `test_files_match_source` keeps files and source in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from block_exec import Executor, block_receipts_line, encode_block, iter_blocks, read_block_file
from state_machine import CoreStateMachine, Side

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40
M = 2**64 - 1
MAXA = 2**32 - 1
T0 = 1_700_000_000_000

Obj = dict[str, Any]


def dep(u: str, a: int, n: int) -> Obj:
    return {"op": "deposit", "user": u, "asset": a, "amount": n}


def wd(u: str, a: int, n: int) -> Obj:
    return {"op": "withdraw", "user": u, "asset": a, "amount": n}


def lim(u: str, a: int, side: str, p: int, s: int, tif: str | None = None) -> Obj:
    tx: Obj = {"op": "limit", "user": u, "asset": a, "side": side, "price": p, "size": s}
    if tif is not None:
        tx["tif"] = tif
    return tx


def mkt(u: str, a: int, side: str, s: int) -> Obj:
    return {"op": "market", "user": u, "asset": a, "side": side, "size": s}


def cxl(u: str, a: int, oid: int) -> Obj:
    return {"op": "cancel", "user": u, "asset": a, "order_id": oid}


OK: Obj = {"ok": True}


def err(code: str) -> Obj:
    return {"ok": False, "error": code}


def F(maker_id: int, taker_id: int, maker: str, taker: str, p: int, s: int) -> Obj:
    return {"maker_order_id": maker_id, "taker_order_id": taker_id, "maker": maker,
            "taker": taker, "price": p, "size": s}


def L(oid: int, fills: list[Obj], resting: int, canceled: list[int]) -> Obj:
    return {"ok": True, "order_id": oid, "fills": fills, "resting": resting,
            "canceled": canceled}


def MK(oid: int, fills: list[Obj], canceled: list[int]) -> Obj:
    return {"ok": True, "order_id": oid, "fills": fills, "canceled": canceled}


def CX(ids: list[int]) -> Obj:
    return {"ok": True, "canceled": ids}


def bal(av: int, lk: int) -> Obj:
    return {"available": av, "locked": lk}


# Each vector: blocks (list of tx lists; heights 1.., time T0 + height), receipts per
# block, final state {"next_order_id", "balances": {U: {A: bal}}, "books": {A: {...}}}.
VECTORS: dict[str, Obj] = {}

VECTORS["01_deposit_withdraw"] = {
    "blocks": [
        [
            dep(A, 0, 100),               # A0 100
            dep(A, 1, 50),                # A1 50
            wd(A, 0, 30),                 # A0 70
            wd(A, 0, 71),                 # 71 > 70
            wd(B, 5, 1),                  # B has nothing
            dep("0x" + "B" * 40, 5, M),   # upper case input, same user B
            wd(A, 0, 70),                 # A0 0: no entry any more
        ],
        [
            dep(C, 0, 1),
            wd(B, 5, M),                  # B5 0
            wd(B, 5, 1),
        ],
    ],
    "receipts": [
        [OK, OK, OK, err("insufficient_balance"), err("insufficient_balance"), OK, OK],
        [OK, OK, err("insufficient_balance")],
    ],
    "state": {
        "next_order_id": 1,
        "balances": {A: {"1": bal(50, 0)}, C: {"0": bal(1, 0)}},
        "books": {},
    },
}

VECTORS["02_limit_gtc_resting"] = {
    "blocks": [[
        dep(A, 0, 10000),
        dep(B, 1, 100),
        lim(A, 1, "buy", 10, 5),            # id1 locks 50: A0 9950/50
        lim(A, 1, "buy", 12, 3, "gtc"),     # id2 locks 36: A0 9914/86
        lim(B, 1, "sell", 15, 20),          # id3: B1 80/20
        lim(B, 1, "sell", 15, 10, "gtc"),   # id4: B1 70/30
        lim(B, 1, "sell", 20, 1),           # id5: B1 69/31
    ]],
    "receipts": [[
        OK, OK, L(1, [], 5, []), L(2, [], 3, []), L(3, [], 20, []), L(4, [], 10, []),
        L(5, [], 1, []),
    ]],
    "state": {
        "next_order_id": 6,
        "balances": {A: {"0": bal(9914, 86)}, B: {"1": bal(69, 31)}},
        "books": {"1": {"bids": [[12, 3, 1], [10, 5, 1]], "asks": [[15, 30, 2], [20, 1, 1]]}},
    },
}

VECTORS["03_cross_price_improvement"] = {
    "blocks": [
        [dep(A, 0, 1000), dep(B, 1, 10), lim(B, 1, "sell", 10, 4)],   # id1: B1 6/4
        [
            # id2 buys 3 at the maker's 10 (limit 12): pays 30, A0 970, A1 3; B0 30, B1 6/1
            lim(A, 1, "buy", 12, 3),
            # id3 buys 1 at 10 from id1, rests 4 at 12: A0 970-60+2 = 912, locked 48; A1 4;
            # B0 40, B1 6/0
            lim(A, 1, "buy", 12, 5),
            # id4 sells 2 at the maker's 12 (limit 11): B0 64, B1 4; A locked 24, A1 6
            lim(B, 1, "sell", 11, 2),
        ],
    ],
    "receipts": [
        [OK, OK, L(1, [], 4, [])],
        [
            L(2, [F(1, 2, B, A, 10, 3)], 0, []),
            L(3, [F(1, 3, B, A, 10, 1)], 4, []),
            L(4, [F(3, 4, A, B, 12, 2)], 0, []),
        ],
    ],
    "state": {
        "next_order_id": 5,
        "balances": {A: {"0": bal(912, 24), "1": bal(6, 0)}, B: {"0": bal(64, 0), "1": bal(4, 0)}},
        "books": {"1": {"bids": [[12, 2, 1]], "asks": []}},
    },
}

VECTORS["04_fifo"] = {
    "blocks": [[
        dep(A, 1, 10), dep(B, 1, 10), dep(C, 0, 1000),
        lim(A, 1, "sell", 5, 3),   # id1
        lim(B, 1, "sell", 5, 3),   # id2
        lim(A, 1, "sell", 5, 2),   # id3
        lim(B, 1, "sell", 4, 1),   # id4 (better price, later)
        # id5 locks 30; takes id4 1@4 (refund 1), id1 3@5, id2 2@5: C0 971, C1 6.
        # A: A1 5/2, A0 15. B: B1 6/1 (id2 keeps 1), B0 4+10 = 14.
        lim(C, 1, "buy", 5, 6),
    ]],
    "receipts": [[
        OK, OK, OK, L(1, [], 3, []), L(2, [], 3, []), L(3, [], 2, []), L(4, [], 1, []),
        L(5, [F(4, 5, B, C, 4, 1), F(1, 5, A, C, 5, 3), F(2, 5, B, C, 5, 2)], 0, []),
    ]],
    "state": {
        "next_order_id": 6,
        "balances": {
            A: {"0": bal(15, 0), "1": bal(5, 2)},
            B: {"0": bal(14, 0), "1": bal(6, 1)},
            C: {"0": bal(971, 0), "1": bal(6, 0)},
        },
        "books": {"1": {"bids": [], "asks": [[5, 3, 2]]}},
    },
}

VECTORS["05_ioc"] = {
    "blocks": [[
        dep(A, 1, 10), dep(B, 0, 1000),
        lim(A, 1, "sell", 10, 4),               # id1: A1 6/4
        # id2 takes 4@10, remainder 2 cancelled (not listed in canceled): B0 960, B1 4;
        # A0 40, A1 6/0
        lim(B, 1, "buy", 11, 6, "ioc"),
        lim(B, 1, "buy", 9, 1, "ioc"),          # id3: nothing to take, cancelled
        lim(B, 1, "buy", 9, 2000, "ioc"),       # 18000 > 960
        lim(A, 1, "sell", 10, 1, "ioc"),        # id4: no bids, cancelled
    ]],
    "receipts": [[
        OK, OK, L(1, [], 4, []), L(2, [F(1, 2, A, B, 10, 4)], 0, []), L(3, [], 0, []),
        err("insufficient_balance"), L(4, [], 0, []),
    ]],
    "state": {
        "next_order_id": 5,
        "balances": {A: {"0": bal(40, 0), "1": bal(6, 0)}, B: {"0": bal(960, 0), "1": bal(4, 0)}},
        "books": {},
    },
}

VECTORS["06_alo"] = {
    "blocks": [[
        dep(A, 1, 10), dep(B, 0, 1000),
        lim(A, 1, "sell", 10, 5, "alo"),     # id1: A1 5/5
        lim(B, 1, "buy", 10, 1, "alo"),      # ask 10 <= 10: would_cross
        lim(B, 1, "buy", 9, 2, "alo"),       # id2: B0 982/18
        lim(B, 1, "buy", 10, 200, "alo"),    # 2000 > 982: balance is checked first
        lim(A, 1, "sell", 9, 1, "alo"),      # bid 9 >= 9: would_cross
        lim(A, 1, "sell", 11, 1, "alo"),     # id3: A1 4/6
    ]],
    "receipts": [[
        OK, OK, L(1, [], 5, []), err("would_cross"), L(2, [], 2, []),
        err("insufficient_balance"), err("would_cross"), L(3, [], 1, []),
    ]],
    "state": {
        "next_order_id": 4,
        "balances": {A: {"1": bal(4, 6)}, B: {"0": bal(982, 18)}},
        "books": {"1": {"bids": [[9, 2, 1]], "asks": [[10, 5, 1], [11, 1, 1]]}},
    },
}

VECTORS["07_market_sell_sweep"] = {
    "blocks": [
        [
            dep(A, 0, 1000), dep(B, 1, 10),
            lim(A, 1, "buy", 10, 2),   # id1: A0 980/20
            lim(A, 1, "buy", 9, 3),    # id2: A0 953/47
            lim(A, 1, "buy", 8, 1),    # id3: A0 945/55
        ],
        [
            # id4: 2@10 (id1), 2@9 (id2 keeps 1): B1 6, B0 38; A locked 17, A1 4
            mkt(B, 1, "sell", 4),
            # id5: 1@9 (id2), 1@8 (id3), 3 cancelled: B1 4, B0 55; A locked 0, A1 6
            mkt(B, 1, "sell", 5),
            mkt(B, 1, "sell", 100),    # needs 100 available, has 4
            mkt(B, 1, "sell", 1),      # id6: no bids, all cancelled
        ],
    ],
    "receipts": [
        [OK, OK, L(1, [], 2, []), L(2, [], 3, []), L(3, [], 1, [])],
        [
            MK(4, [F(1, 4, A, B, 10, 2), F(2, 4, A, B, 9, 2)], []),
            MK(5, [F(2, 5, A, B, 9, 1), F(3, 5, A, B, 8, 1)], []),
            err("insufficient_balance"),
            MK(6, [], []),
        ],
    ],
    "state": {
        "next_order_id": 7,
        "balances": {A: {"0": bal(945, 0), "1": bal(6, 0)}, B: {"0": bal(55, 0), "1": bal(4, 0)}},
        "books": {},
    },
}

VECTORS["08_market_buy_funding"] = {
    "blocks": [[
        dep(B, 1, 100), dep(A, 0, 50),
        lim(B, 1, "sell", 10, 2),   # id1
        lim(B, 1, "sell", 12, 5),   # id2: B1 93/7
        # id3, budget 50: 2@10 (50//10 = 5 >= 2) pays 20, budget 30; at 12: 30//12 = 2 -> 2@12
        # pays 24, budget 6; 6//12 = 0 stops; 6 of 10 cancelled. A0 6, A1 4; B0 44, B1 93/3
        mkt(A, 1, "buy", 10),
        mkt(A, 1, "buy", 1),        # 6 < best ask 12: pays for nothing
        mkt(C, 2, "buy", 1),        # id4: no asks at all, so nothing to refuse; cancelled
    ]],
    "receipts": [[
        OK, OK, L(1, [], 2, []), L(2, [], 5, []),
        MK(3, [F(1, 3, B, A, 10, 2), F(2, 3, B, A, 12, 2)], []),
        err("insufficient_balance"), MK(4, [], []),
    ]],
    "state": {
        "next_order_id": 5,
        "balances": {A: {"0": bal(6, 0), "1": bal(4, 0)}, B: {"0": bal(44, 0), "1": bal(93, 3)}},
        "books": {"1": {"bids": [], "asks": [[12, 3, 1]]}},
    },
}

VECTORS["09_self_trade"] = {
    "blocks": [[
        dep(A, 0, 1000), dep(A, 1, 10), dep(B, 1, 10),
        lim(A, 1, "sell", 10, 2),   # id1: A1 8/2
        lim(B, 1, "sell", 10, 3),   # id2: B1 7/3
        lim(A, 1, "sell", 11, 1),   # id3: A1 7/3
        # id4 locks 44 (A0 956). At 10: id1 is A's -> cancelled (A1 9/1); id2 3@10, refund 3
        # (A0 959), A1 12, B0 30, B1 7/0. At 11: id3 is A's -> cancelled (A1 13/0).
        # 1 rests at 11: A0 959/11.
        lim(A, 1, "buy", 11, 4),
        # id5: the only bid is A's own id4 -> cancelled (A0 970/0); no bids left, 1 cancelled
        mkt(A, 1, "sell", 1),
    ]],
    "receipts": [[
        OK, OK, OK, L(1, [], 2, []), L(2, [], 3, []), L(3, [], 1, []),
        L(4, [F(2, 4, B, A, 10, 3)], 1, [1, 3]),
        MK(5, [], [4]),
    ]],
    "state": {
        "next_order_id": 6,
        "balances": {A: {"0": bal(970, 0), "1": bal(13, 0)}, B: {"0": bal(30, 0), "1": bal(7, 0)}},
        "books": {},
    },
}

VECTORS["10_cancel"] = {
    "blocks": [
        [
            dep(A, 0, 100), dep(B, 1, 5),
            lim(A, 1, "buy", 10, 5),    # id1: A0 50/50
            lim(B, 1, "sell", 20, 5),   # id2: B1 0/5
            cxl(B, 1, 1),               # A's order
            cxl(A, 2, 1),               # not resting on asset 2
            cxl(A, 1, 99),              # never existed
            cxl(A, 1, 1),               # A0 100/0
            cxl(A, 1, 1),               # already gone
        ],
        [cxl(B, 1, 2)],                 # B1 5/0
    ],
    "receipts": [
        [
            OK, OK, L(1, [], 5, []), L(2, [], 5, []), err("not_owner"), err("unknown_order"),
            err("unknown_order"), CX([1]), err("unknown_order"),
        ],
        [CX([2])],
    ],
    "state": {
        "next_order_id": 3,
        "balances": {A: {"0": bal(100, 0)}, B: {"1": bal(5, 0)}},
        "books": {},
    },
}

VECTORS["11_order_ids_with_rejections"] = {
    "blocks": [
        [
            dep(A, 0, 100),
            lim(A, 1, "buy", 10, 20),   # 200 > 100: no id
            lim(A, 1, "buy", 10, 5),    # id1: A0 50/50
            mkt(A, 1, "buy", 1),        # id2: no asks, cancelled
            lim(A, 1, "buy", 1, 51),    # 51 > 50: no id
            wd(A, 0, 1),                # A0 49/50
            lim(A, 1, "buy", 1, 49),    # id3: A0 0/99
        ],
        [
            dep(B, 1, 3),
            lim(B, 1, "sell", 10, 1, "alo"),   # would_cross: no id
            lim(B, 1, "sell", 10, 1, "ioc"),   # id4: 1@10 from id1; B0 10, B1 2; A 0/89, A1 1
            lim(B, 1, "sell", 5, 2),           # id5: 2@10 from id1; B0 30, B1 0; A 0/69, A1 3
        ],
    ],
    "receipts": [
        [
            OK, err("insufficient_balance"), L(1, [], 5, []), MK(2, [], []),
            err("insufficient_balance"), OK, L(3, [], 49, []),
        ],
        [
            OK, err("would_cross"), L(4, [F(1, 4, A, B, 10, 1)], 0, []),
            L(5, [F(1, 5, A, B, 10, 2)], 0, []),
        ],
    ],
    "state": {
        "next_order_id": 6,
        "balances": {A: {"0": bal(0, 69), "1": bal(3, 0)}, B: {"0": bal(30, 0)}},
        "books": {"1": {"bids": [[10, 2, 1], [1, 49, 1]], "asks": []}},
    },
}

VECTORS["12_big_values"] = {
    "blocks": [[
        dep(A, 0, M), dep(A, 0, M), dep(A, 0, M),   # A0 3M
        dep(B, MAXA, M),
        lim(A, MAXA, "buy", M, 2),                  # id1 locks 2M: A0 M/2M
        # id2 sells 1 at the maker's M: B0 M, B(MAXA) M-1; A locked M, A(MAXA) 1
        lim(B, MAXA, "sell", M - 1, 1),
    ]],
    "receipts": [[
        OK, OK, OK, OK, L(1, [], 2, []), L(2, [F(1, 2, A, B, M, 1)], 0, []),
    ]],
    "state": {
        "next_order_id": 3,
        "balances": {
            A: {"0": bal(M, M), str(MAXA): bal(1, 0)},
            B: {"0": bal(M, 0), str(MAXA): bal(M - 1, 0)},
        },
        "books": {str(MAXA): {"bids": [[M, 1, 1]], "asks": []}},
    },
}

VECTOR_DIR = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "blocks"


def _line(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def write_vectors() -> None:
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name in VECTORS:
        blocks, receipts, state = _expected_files(name)
        (VECTOR_DIR / f"{name}.blocks.jsonl").write_text(blocks)
        (VECTOR_DIR / f"{name}.receipts.jsonl").write_text(receipts)
        (VECTOR_DIR / f"{name}.state.json").write_text(state)


def _expected_files(name: str) -> tuple[str, str, str]:
    vec = VECTORS[name]
    blocks = "".join(
        _line({"height": h, "time": T0 + h, "txs": txs}) + "\n"
        for h, txs in enumerate(vec["blocks"], 1)
    )
    receipts = "".join(
        _line({"height": h, "state_root": None, "receipts": rs}) + "\n"
        for h, rs in enumerate(vec["receipts"], 1)
    )
    state = json.dumps(vec["state"], indent=1, sort_keys=True) + "\n"
    return blocks, receipts, state


def _machine_state(machine: CoreStateMachine) -> Obj:
    balances: dict[str, dict[str, Obj]] = {}
    for (user, asset), account in sorted(machine.balances.nonzero()):
        balances.setdefault(user, {})[str(asset)] = bal(account[0], account[1])
    books: dict[str, Obj] = {}
    for asset in sorted(machine.books):
        book = machine.books[asset]
        if not book.is_empty():
            books[str(asset)] = {
                "bids": [list(level) for level in book.depth(Side.BUY)],
                "asks": [list(level) for level in book.depth(Side.SELL)],
            }
    return {"next_order_id": machine.next_order_id, "balances": balances, "books": books}


def _norm_books(books: Obj) -> Obj:
    # An absent side and an empty one say the same.
    return {a: {"bids": b.get("bids", []), "asks": b.get("asks", [])} for a, b in books.items()}


NAMES = sorted(VECTORS)


def test_vector_set_is_complete() -> None:
    on_disk = sorted(p.name.split(".")[0] for p in VECTOR_DIR.glob("*.blocks.jsonl"))
    assert on_disk == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_files_match_source(name: str) -> None:
    blocks, receipts, state = _expected_files(name)
    assert (VECTOR_DIR / f"{name}.blocks.jsonl").read_text() == blocks
    assert (VECTOR_DIR / f"{name}.receipts.jsonl").read_text() == receipts
    assert (VECTOR_DIR / f"{name}.state.json").read_text() == state


@pytest.mark.parametrize("name", NAMES)
def test_vector(name: str) -> None:
    executor = Executor()
    lines = []
    for block in read_block_file(str(VECTOR_DIR / f"{name}.blocks.jsonl")):
        result = executor.apply_block(block)
        lines.append(block_receipts_line(result.height, None, result.receipts) + "\n")
    expected_receipts = (VECTOR_DIR / f"{name}.receipts.jsonl").read_text().splitlines(True)
    for got, want in zip(lines, expected_receipts, strict=True):
        assert got == want
    want_state = json.loads((VECTOR_DIR / f"{name}.state.json").read_text())
    got_state = _machine_state(executor.state)
    assert got_state["next_order_id"] == want_state["next_order_id"]
    assert got_state["balances"] == want_state["balances"]
    assert _norm_books(got_state["books"]) == _norm_books(want_state["books"])
    # Conservation, independent of the hand-written state: deposits minus withdrawals
    # that the receipts accept equal what users hold.
    flows: dict[int, int] = {}
    for txs, receipts in zip(VECTORS[name]["blocks"], VECTORS[name]["receipts"], strict=True):
        for tx, receipt in zip(txs, receipts, strict=True):
            if tx["op"] in ("deposit", "withdraw") and receipt["ok"]:
                sign = 1 if tx["op"] == "deposit" else -1
                flows[tx["asset"]] = flows.get(tx["asset"], 0) + sign * tx["amount"]
    held: dict[int, int] = {}
    for assets in want_state["balances"].values():
        for asset, b in assets.items():
            held[int(asset)] = held.get(int(asset), 0) + b["available"] + b["locked"]
    assert {a: v for a, v in flows.items() if v} == held


@pytest.mark.parametrize("name", NAMES)
def test_vector_via_cbor(name: str) -> None:
    """The same blocks as a canonical CBOR sequence give the same receipts."""
    blocks = list(read_block_file(str(VECTOR_DIR / f"{name}.blocks.jsonl")))
    data = b"".join(encode_block(b) for b in blocks)
    assert list(iter_blocks(data)) == blocks
    executor = Executor()
    got = "".join(
        block_receipts_line(b.height, None, executor.apply_block(b).receipts) + "\n"
        for b in iter_blocks(data)
    )
    assert got == (VECTOR_DIR / f"{name}.receipts.jsonl").read_text()


if __name__ == "__main__":
    write_vectors()
