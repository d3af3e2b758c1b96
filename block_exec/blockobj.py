"""A checked `Block`, with its canonical CBOR, from a decoded JSON or CBOR value
(spec/blocks.md): the schema walk both decoders of `decode.py` end in.

One pass per block: direct type and range checks per tx on a fast path that also builds
the tx objects and, piece by piece, the block's canonical CBOR (`encode.encode_block`'s
bytes), so applying a decoded block neither re-checks nor re-encodes it. Only when the
fast path fails does `_tx_problem` walk the tx again, field by field in a fixed order, to
name the first bad field; the message is therefore deterministic.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from block_exec.encode import (
    AMOUNT_KEY,
    BLOCK_HEAD,
    CANCEL_HEAD,
    DEPOSIT_HEAD,
    HEIGHT_KEY,
    LIMIT_HEADS,
    MARKET_HEADS,
    MAX_U64,
    ORDER_ID_KEY,
    PRICE_KEY,
    TIME_KEY,
    UINT_TABLE,
    WITHDRAW_HEAD,
    array_head,
    cbor_uint,
    user_piece,
)
from block_exec.errors import BlockDecodeError, field_named
from block_exec.types import (
    Block,
    Tx,
    block_with_cbor,
    new_cancel,
    new_deposit,
    new_limit,
    new_market,
    new_withdraw,
)
from state_machine import MAX_AMOUNT, MAX_ASSET, Side, Tif
from state_machine.values import CBOR_U32_HEAD

_BLOCK_KEYS = frozenset(("height", "time", "txs"))
_TX_KEYS: dict[str, frozenset[str]] = {
    "deposit": frozenset(("op", "user", "asset", "amount")),
    "withdraw": frozenset(("op", "user", "asset", "amount")),
    "limit": frozenset(("op", "user", "asset", "side", "price", "size", "tif")),
    "market": frozenset(("op", "user", "asset", "side", "size")),
    "cancel": frozenset(("op", "user", "asset", "order_id")),
}
_LIMIT_KEYS = _TX_KEYS["limit"]
# Field order for error messages (and the order the spec lists them in).
_FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "deposit": ("user", "asset", "amount"),
    "withdraw": ("user", "asset", "amount"),
    "limit": ("user", "asset", "side", "price", "size", "tif"),
    "market": ("user", "asset", "side", "size"),
    "cancel": ("user", "asset", "order_id"),
}
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_TIFS = {"gtc": Tif.GTC, "ioc": Tif.IOC, "alo": Tif.ALO}
_HEX = frozenset("0123456789abcdefABCDEF")

# Address text as written -> normalised, and its CBOR piece (`encode.user_piece`); only
# a speed-up (bounded, cleared when full).
_USERS: dict[str, tuple[str, bytes]] = {}
_USERS_MAX = 1 << 16


def _known_user(value: object) -> tuple[str, bytes] | None:
    """The normalised address and its CBOR piece, or None if `value` is no address."""
    if type(value) is not str:
        return None
    known = _USERS.get(value)
    if known is not None:
        return known
    if len(value) != 42 or value[:2] not in ("0x", "0X") or not _HEX.issuperset(value[2:]):
        return None
    user = "0x" + value[2:].lower()
    if len(_USERS) >= _USERS_MAX:
        _USERS.clear()
    known = _USERS[value] = (user, user_piece(user))
    return known


def _normalize_user(value: object) -> str | None:
    known = _known_user(value)
    return None if known is None else known[0]


def _show(value: object) -> str:
    """A short rendering of a decoded value for error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_problem(value: object, low: int, high_text: str, high: int) -> str | None:
    if type(value) is not int:
        return f"expected an integer in [{low}, {high_text}], got {_show(value)}"
    if not low <= value <= high:
        return f"expected an integer in [{low}, {high_text}], got {value}"
    return None


def _keys_problem(obj: dict[Any, Any], want: frozenset[str], optional: frozenset[str]) -> str:
    missing = sorted(want - optional - obj.keys())
    if missing:
        return f'missing field "{missing[0]}"'
    unknown = sorted((str(k) for k in obj.keys() - want), key=str)
    return f"unknown field {json.dumps(unknown[0])}"


def _tx_problem(tx: object) -> str:
    """What is wrong with a tx object that failed the fast path."""
    if not isinstance(tx, dict):
        return f"expected an object, got {_show(tx)}"
    if "op" not in tx:
        return 'missing field "op"'
    op = tx["op"]
    if type(op) is not str or op not in _TX_KEYS:
        return f'field "op": unknown op {_show(op)}'
    want = _TX_KEYS[op]
    optional = frozenset(("tif",)) if op == "limit" else frozenset()
    if not (want - optional) <= tx.keys() <= want:
        return _keys_problem(tx, want, optional)
    for name in _FIELD_ORDER[op]:
        if name not in tx:
            continue
        value = tx[name]
        problem: str | None
        if name == "user":
            problem = None
            if _normalize_user(value) is None:
                problem = f'expected "0x" + 40 hex digits, got {_show(value)}'
        elif name == "asset":
            if op in ("deposit", "withdraw"):
                problem = _int_problem(value, 0, "2^32-1", MAX_ASSET)
            else:
                problem = _int_problem(value, 1, "2^32-1", MAX_ASSET)
                if problem is not None and value == 0 and type(value) is int:
                    problem += f" (asset 0 is the quote asset: no {op} on it)"
        elif name == "side":
            problem = None
            if type(value) is not str or value not in _SIDES:
                problem = f'expected "buy" or "sell", got {_show(value)}'
        elif name == "tif":
            problem = None
            if type(value) is not str or value not in _TIFS:
                problem = f'expected "gtc", "ioc" or "alo", got {_show(value)}'
        else:
            problem = _int_problem(value, 1, "2^64-1", MAX_AMOUNT)
        if problem is not None:
            return f'field "{name}": {problem}'
    return "malformed tx"  # unreachable when the fast path and this walk agree


def _fail(
    where: str, problem: str, *, height: int | None = None, tx_index: int | None = None
) -> NoReturn:
    raise BlockDecodeError(f"{where}: {problem}", height=height, tx_index=tx_index,
                           field=field_named(problem))


def block_from_obj(obj: object, where: str) -> Block:
    """Build a Block from a decoded JSON/CBOR value, checking the whole schema.

    `where` names the block in messages (e.g. "block at line 3").
    """
    if type(obj) is not dict:
        _fail(where, f"expected an object, got {_show(obj)}")
    if obj.keys() != _BLOCK_KEYS:
        _fail(where, _keys_problem(obj, _BLOCK_KEYS, frozenset()))
    height = obj["height"]
    problem = _int_problem(height, 1, "2^64-1", MAX_U64)
    if problem is not None:
        _fail(where, f'field "height": {problem}')
    where = f"{where} (height {height})"
    time = obj["time"]
    problem = _int_problem(time, 0, "2^64-1", MAX_U64)
    if problem is not None:
        _fail(where, f'field "time": {problem}', height=height)
    raw_txs = obj["txs"]
    if type(raw_txs) is not list:
        _fail(where, f'field "txs": expected an array, got {_show(raw_txs)}', height=height)

    # The txs and, piece by piece, the block's canonical CBOR (`encode.encode_block`'s
    # bytes: tested), so applying the block neither re-checks nor re-encodes it.
    txs: list[Tx] = []
    append = txs.append
    parts: list[bytes] = [BLOCK_HEAD, array_head(len(raw_txs))]
    users = _USERS
    sides = _SIDES
    table = UINT_TABLE
    uint32 = CBOR_U32_HEAD  # order ids pass 2^16 early in a chain (the cancel path)
    index = 0
    try:
        for index, d in enumerate(raw_txs):  # noqa: B007 - index is read after the loop
            if type(d) is not dict:
                break
            op = d.get("op")
            keys = len(d)
            u = d.get("user")
            known = users.get(u) if type(u) is str else None
            if known is None:
                known = _known_user(u)
                if known is None:
                    break
            user, piece = known
            asset = d.get("asset")
            # The key set: a dict of n keys (`keys`) holding the n names read below is
            # exactly those (a missing name is None from `get`, or a KeyError, and
            # fails): one `len` instead of a set comparison.
            if op == "limit":
                if keys == 7:
                    tif = _TIFS.get(d["tif"])
                elif keys == 6 and "tif" not in d:
                    tif = Tif.GTC
                else:
                    break
                price = d["price"]
                size = d["size"]
                side = sides.get(d["side"])
                if (
                    type(price) is int and 0 < price <= MAX_AMOUNT
                    and type(size) is int and 0 < size <= MAX_AMOUNT
                    and type(asset) is int and 0 < asset <= MAX_ASSET
                    and side is not None and tif is not None
                ):
                    append(new_limit(user, asset, side, price, size, tif))
                    parts += (
                        LIMIT_HEADS[tif][side], table[size] if size < 65536 else cbor_uint(size),
                        piece, table[asset] if asset < 65536 else cbor_uint(asset), PRICE_KEY,
                        table[price] if price < 65536 else cbor_uint(price),
                    )
                    continue
                break
            if op == "cancel":
                oid = d.get("order_id")
                if (
                    keys == 4
                    and type(oid) is int and 0 < oid <= MAX_AMOUNT
                    and type(asset) is int and 0 < asset <= MAX_ASSET
                ):
                    append(new_cancel(user, asset, oid))
                    parts += (
                        CANCEL_HEAD, piece, table[asset] if asset < 65536 else cbor_uint(asset),
                        ORDER_ID_KEY,
                        table[oid] if oid < 65536
                        else uint32(0x1A, oid) if oid < 0x100000000 else cbor_uint(oid),
                    )
                    continue
                break
            if op == "market":
                size = d.get("size")
                side = sides.get(d.get("side", ""))
                if (
                    keys == 5
                    and type(size) is int and 0 < size <= MAX_AMOUNT
                    and type(asset) is int and 0 < asset <= MAX_ASSET
                    and side is not None
                ):
                    append(new_market(user, asset, side, size))
                    parts += (
                        MARKET_HEADS[side], table[size] if size < 65536 else cbor_uint(size),
                        piece, table[asset] if asset < 65536 else cbor_uint(asset),
                    )
                    continue
                break
            if op == "deposit" or op == "withdraw":
                amount = d.get("amount")
                if (
                    keys == 4
                    and type(amount) is int and 0 < amount <= MAX_AMOUNT
                    and type(asset) is int and 0 <= asset <= MAX_ASSET
                ):
                    deposit = op == "deposit"
                    append((new_deposit if deposit else new_withdraw)(user, asset, amount))
                    parts += (
                        DEPOSIT_HEAD if deposit else WITHDRAW_HEAD, piece, cbor_uint(asset),
                        AMOUNT_KEY, cbor_uint(amount),
                    )
                    continue
            break
        else:
            parts += (TIME_KEY, cbor_uint(time), HEIGHT_KEY, cbor_uint(height))
            return block_with_cbor(height, time, tuple(txs), b"".join(parts))
    except (TypeError, KeyError):  # an unhashable value where a name was expected; a
        pass  # field missing from a dict of the right size (an unknown one in its place)
    _fail(where, f"tx {index}: {_tx_problem(raw_txs[index])}", height=height, tx_index=index)
