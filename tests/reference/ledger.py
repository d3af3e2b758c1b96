"""Blocks in, canonical entries, roots and block hashes out, by spec/ alone.

The rules (matching, locking, receipts) come from the independent model
`tests/reference_matcher.py`; the encodings from spec/state.md §10 (entries and their
namespaces), spec/blocks.md §5-6 (canonical block CBOR, block hash) and spec/merkle.md
(roots). Only well-formed blocks are handled: the vectors are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from tests.reference import cbor, smt
from tests.reference_matcher import ReferenceExchange, RefResult

NEXT_ORDER_ID_KEY = b"\x00" + b"next_order_id"
SIDE_CODE = {"buy": 0, "sell": 1}


def user_bytes(user: str) -> bytes:
    return bytes.fromhex(user[2:])


def entries_of(ref: ReferenceExchange) -> dict[bytes, bytes]:
    """The canonical state entries (spec/state.md §10), key -> value."""
    entries = {NEXT_ORDER_ID_KEY: cbor.encode(ref.next_order_id)}
    for (user, asset), (available, locked) in ref.balances.items():
        if available or locked:
            key = b"\x01" + user_bytes(user) + asset.to_bytes(4, "big")
            entries[key] = cbor.encode([available, locked])
    for order in ref.resting:
        key = b"\x02" + order.asset.to_bytes(4, "big") + order.order_id.to_bytes(8, "big")
        entries[key] = cbor.encode(
            [SIDE_CODE[order.side], order.price, order.size, user_bytes(order.user)]
        )
    return dict(sorted(entries.items()))


def namespace_of(key: bytes) -> bytes:
    """spec/state.md §10: `00`, `01 ‖ key[21:25]` or `key[0:5]`."""
    if key[0] == 0x01:
        return b"\x01" + key[21:25]
    if key[0] == 0x02:
        return key[0:5]
    return b"\x00"


def roots_of(entries: dict[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """State root and namespace roots: each namespace's tree keyed by the WHOLE state key."""
    grouped: dict[bytes, dict[bytes, bytes]] = {}
    for key, value in entries.items():
        grouped.setdefault(namespace_of(key), {})[key] = value
    state_root, subs = smt.namespaced_roots(grouped)
    return state_root, dict(sorted(subs.items()))


def canonical_tx(tx: dict[str, Any]) -> dict[str, cbor.CborValue]:
    """spec/blocks.md §5: the user in lower case, `tif` always present in a limit."""
    out: dict[str, cbor.CborValue] = dict(tx)
    out["user"] = str(tx["user"]).lower()
    if tx["op"] == "limit" and "tif" not in tx:
        out["tif"] = "gtc"
    return out


def canonical_block(block: dict[str, Any]) -> bytes:
    txs: list[cbor.CborValue] = [canonical_tx(tx) for tx in block["txs"]]
    return cbor.encode({"height": block["height"], "time": block["time"], "txs": txs})


def apply_tx(ref: ReferenceExchange, tx: dict[str, Any]) -> RefResult:
    op, user, asset = tx["op"], str(tx["user"]).lower(), tx["asset"]
    if op == "deposit":
        return ref.deposit(user, asset, tx["amount"])
    if op == "withdraw":
        return ref.withdraw(user, asset, tx["amount"])
    if op == "limit":
        return ref.limit(user, asset, tx["side"], tx["price"], tx["size"], tx.get("tif", "gtc"))
    if op == "market":
        return ref.market(user, asset, tx["side"], tx["size"])
    assert op == "cancel", op
    return ref.cancel(user, asset, tx["order_id"])


@dataclass
class BlockOutcome:
    height: int
    time: int
    block_bytes: bytes
    block_hash: bytes
    ops: list[str]
    results: list[RefResult]
    entries: dict[bytes, bytes]  # the state after the block
    state_root: bytes
    namespace_roots: dict[bytes, bytes]
    txs: list[dict[str, Any]]  # the block file's txs, as read


def run(blocks_file: Path) -> list[BlockOutcome]:
    """Apply a JSON Lines block file from the empty state; one outcome per block."""
    ref = ReferenceExchange()
    outcomes = []
    for line in blocks_file.read_text().splitlines():
        if not line.strip():
            continue
        block = json.loads(line)
        results = [apply_tx(ref, tx) for tx in block["txs"]]
        block_bytes = canonical_block(block)
        entries = entries_of(ref)
        state_root, subs = roots_of(entries)
        outcomes.append(
            BlockOutcome(
                block["height"], block["time"], block_bytes, blake3(block_bytes).digest(),
                [tx["op"] for tx in block["txs"]], results, entries, state_root, subs,
                block["txs"],
            )
        )
    return outcomes


def receipt_json(op: str, result: RefResult) -> dict[str, Any]:
    """The receipt of spec/blocks.md §8, keys in its order."""
    if not result.ok:
        return {"ok": False, "error": result.error}
    if op in ("deposit", "withdraw"):
        return {"ok": True}
    if op == "cancel":
        return {"ok": True, "canceled": result.canceled}
    fills = [
        {"maker_order_id": m_id, "taker_order_id": t_id, "maker": maker, "taker": taker,
         "price": price, "size": size}
        for m_id, t_id, maker, taker, price, size in result.fills
    ]
    out: dict[str, Any] = {"ok": True, "order_id": result.order_id, "fills": fills}
    if op == "limit":
        out["resting"] = result.resting
    out["canceled"] = result.canceled
    return out


def receipts_lines(outcomes: list[BlockOutcome]) -> list[str]:
    """The receipts file of spec/blocks.md §8 (state_root null), one line per block."""
    lines = []
    for outcome in outcomes:
        receipts = [
            receipt_json(op, result)
            for op, result in zip(outcome.ops, outcome.results, strict=True)
        ]
        line = {"height": outcome.height, "state_root": None, "receipts": receipts}
        lines.append(json.dumps(line, separators=(",", ":")))
    return lines
