"""One state entry as a person reads it: its name (`balances/U/A`, `books/A/orders/ID`,
`next_order_id`) and its value decoded to JSON (spec/state.md, "State entries").

Each kind of entry is one small function from a key to its `EntryKind` (or None when the
key is not of that kind), listed in `KINDS`; `diff`, `prove` and `verify-proof` know
nothing else about keys. A key of no listed kind is still shown, generically, as
`key/HEX` with its value as hex, so a namespace added later is never silently left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from state_machine.entries import (
    BALANCE_PREFIX,
    BRIDGE_KEY,
    NEXT_ORDER_ID_KEY,
    NONCE_PREFIX,
    ORDER_PREFIX,
)

Json = Any


class UndecodableValue(ValueError):
    """Bytes that are not a value of the entry's kind."""


@dataclass(frozen=True, slots=True)
class EntryKind:
    """A state key's name and the decoder of its values."""

    name: str
    decode: Callable[[bytes], Json]


def _cbor(value: bytes) -> Any:
    try:
        return cbor2.loads(value)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise UndecodableValue(f"not CBOR ({type(exc).__name__})") from None


def _decode_balance(value: bytes) -> Json:
    decoded = _cbor(value)
    if type(decoded) is not list or len(decoded) != 2:
        raise UndecodableValue("a balance is an array [available, locked]")
    return {"available": decoded[0], "locked": decoded[1]}


def _decode_order(value: bytes) -> Json:
    decoded = _cbor(value)
    if (type(decoded) is not list or len(decoded) != 4 or decoded[0] not in (0, 1)
            or type(decoded[3]) is not bytes):
        raise UndecodableValue("an order is an array [side, price, size, user]")
    side, price, size, user = decoded
    return {"user": "0x" + user.hex(), "side": ("buy", "sell")[side], "price": price,
            "size": size}


def _decode_uint(value: bytes) -> Json:
    decoded = _cbor(value)
    if type(decoded) is not int:
        raise UndecodableValue("want an unsigned integer")
    return decoded


def _decode_address(value: bytes) -> Json:
    decoded = _cbor(value)
    if type(decoded) is not bytes or len(decoded) != 20:
        raise UndecodableValue("an address is a 20-byte string")
    return "0x" + decoded.hex()


def _decode_hex(value: bytes) -> Json:
    return value.hex()


def balance_kind(key: bytes) -> EntryKind | None:
    """`01 user(20) asset(u32)` -> `balances/U/A`, VALUE {"available", "locked"}."""
    if len(key) != 25 or key[0] != BALANCE_PREFIX:
        return None
    user, asset = "0x" + key[1:21].hex(), int.from_bytes(key[21:25], "big")
    return EntryKind(f"balances/{user}/{asset}", _decode_balance)


def order_kind(key: bytes) -> EntryKind | None:
    """`02 asset(u32) id(u64)` -> `books/A/orders/ID`, VALUE {"user","side","price","size"}."""
    if len(key) != 13 or key[0] != ORDER_PREFIX:
        return None
    asset, order_id = int.from_bytes(key[1:5], "big"), int.from_bytes(key[5:13], "big")
    return EntryKind(f"books/{asset}/orders/{order_id}", _decode_order)


def next_order_id_kind(key: bytes) -> EntryKind | None:
    """`00 "next_order_id"` -> `next_order_id`, VALUE the integer."""
    if key != NEXT_ORDER_ID_KEY:
        return None
    return EntryKind("next_order_id", _decode_uint)


def nonce_kind(key: bytes) -> EntryKind | None:
    """`03 user(20)` -> `nonces/U`, VALUE the integer (network mode)."""
    if len(key) != 21 or key[0] != NONCE_PREFIX:
        return None
    return EntryKind(f"nonces/0x{key[1:21].hex()}", _decode_uint)


def bridge_kind(key: bytes) -> EntryKind | None:
    """`00 "bridge"` -> `bridge`, VALUE the address (network mode)."""
    if key != BRIDGE_KEY:
        return None
    return EntryKind("bridge", _decode_address)


KINDS: tuple[Callable[[bytes], EntryKind | None], ...] = (
    next_order_id_kind,
    balance_kind,
    order_kind,
    nonce_kind,
    bridge_kind,
)


def entry_kind(key: bytes) -> EntryKind:
    """The kind of `key`: a listed one, else `key/HEX` with hex values."""
    for kind in KINDS:
        found = kind(key)
        if found is not None:
            return found
    return EntryKind(f"key/{key.hex()}", _decode_hex)


def entry_name(key: bytes) -> str:
    return entry_kind(key).name


def entry_value(key: bytes, value: bytes | None) -> Json:
    """`value` (the bytes stored under `key`) decoded; None for an absent entry.

    Raises UndecodableValue when the bytes are not a value of the key's kind.
    """
    return None if value is None else entry_kind(key).decode(value)
