"""The receipts JSON of the contract (spec/blocks.md, "Receipts"): the receipt object R,
a block's receipts object, and the one-line text of both that `run --receipts` writes and
the store keeps with each block. The text is built from fixed pieces where a receipt lists
nothing (most of a block) and by orjson otherwise; tests compare it with `json.dumps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from block_exec.types import Receipt
from state_machine import ERROR_CODES


def receipt_to_json_obj(receipt: Receipt) -> dict[str, object]:
    """The contract's receipt object R, keys in the contract's order.

    Which fields appear follows from the core's result (spec/blocks.md, "Receipts"):
    rejected -> ok, error; limit (resting set) -> ok, order_id, fills, resting, canceled;
    market (order id, no resting) -> ok, order_id, fills, canceled; cancel (an id in
    `canceled`, no order id) -> ok, canceled; deposit or withdraw -> ok.
    """
    ok, error, order_id, fills, resting, canceled, _ = receipt
    if not ok:
        return {"ok": False, "error": error}
    if order_id is not None:
        obj: dict[str, object] = {
            "ok": True,
            "order_id": order_id,
            "fills": [
                {
                    "maker_order_id": f.maker_order_id,
                    "taker_order_id": f.taker_order_id,
                    "maker": f.maker,
                    "taker": f.taker,
                    "price": f.price,
                    "size": f.size,
                }
                for f in fills
            ],
        }
        if resting is not None:
            obj["resting"] = resting
        obj["canceled"] = list(canceled)
        return obj
    if canceled:
        return {"ok": True, "canceled": list(canceled)}
    return {"ok": True}


def block_receipts_obj(
    height: int, state_root_hex: str | None, receipts: Sequence[Receipt]
) -> dict[str, object]:
    return {
        "height": height,
        "state_root": state_root_hex,
        "receipts": [receipt_to_json_obj(r) for r in receipts],
    }


_REJECTED = {code: orjson.dumps({"ok": False, "error": code}).decode() for code in ERROR_CODES}


def receipt_json(receipt: Receipt) -> str:
    """The compact JSON text of `receipt_to_json_obj(receipt)`: O(fills + canceled).

    The receipts with nothing listed but an order id (a resting or ioc limit without
    fills, a cancel, a transfer, a rejection: most of a block) are formatted from fixed
    text; any other goes through orjson. Tests compare both ways with `json.dumps` of
    the object over generated blocks.
    """
    # One unpacking instead of an attribute lookup per field (a named tuple's attribute
    # goes through the generic lookup: a third of this function's cost).
    ok, error, order_id, fills, resting, canceled, _ = receipt
    if not ok:
        text = _REJECTED.get(error)  # type: ignore[arg-type]
        if text is not None:
            return text
    elif order_id is not None:
        if not fills and not canceled:
            if resting is not None:
                return (f'{{"ok":true,"order_id":{order_id},"fills":[],'
                        f'"resting":{resting},"canceled":[]}}')
            return f'{{"ok":true,"order_id":{order_id},"fills":[],"canceled":[]}}'
    elif not canceled:
        return '{"ok":true}'
    elif len(canceled) == 1:
        return f'{{"ok":true,"canceled":[{canceled[0]}]}}'
    return orjson.dumps(receipt_to_json_obj(receipt)).decode()


def block_receipts_line(
    height: int, state_root_hex: str | None, receipts: Sequence[Receipt]
) -> str:
    """One line of the `--receipts` JSON Lines file (no trailing newline): O(receipts +
    fills + canceled).

    The same bytes as `json.dumps(block_receipts_obj(...), separators=(",", ":"))`
    (ASCII strings, integers below 2^64); receipts are written for every block, and
    stored with it. The fixed shapes of `receipt_json` are written inline in one loop
    here rather than by a call per receipt (`map(receipt_json, ...)`: a Python call from
    C makes a frame per receipt): 4.81k -> 4.56k instructions per receipt over the
    simulated market (callgrind). Any other shape goes to `receipt_json`. Tests compare
    the line with `json.dumps` over generated receipts.
    """
    root = "null" if state_root_hex is None else orjson.dumps(state_root_hex).decode()
    texts: list[str] = []
    add = texts.append
    rejected = _REJECTED
    for receipt in receipts:
        ok, error, order_id, fills, resting, canceled, _ = receipt
        if ok:
            if order_id is not None:
                if not fills and not canceled:
                    if resting is not None:
                        add(f'{{"ok":true,"order_id":{order_id},"fills":[],'
                            f'"resting":{resting},"canceled":[]}}')
                    else:
                        add(f'{{"ok":true,"order_id":{order_id},"fills":[],"canceled":[]}}')
                    continue
            elif not canceled:
                add('{"ok":true}')
                continue
            elif len(canceled) == 1:
                add(f'{{"ok":true,"canceled":[{canceled[0]}]}}')
                continue
        else:
            text = rejected.get(error)  # type: ignore[arg-type]
            if text is not None:
                add(text)
                continue
        add(receipt_json(receipt))
    return f'{{"height":{height},"state_root":{root},"receipts":[' + ",".join(texts) + "]}"


__all__ = [
    "block_receipts_line",
    "block_receipts_obj",
    "receipt_json",
    "receipt_to_json_obj",
]
