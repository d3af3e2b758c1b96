"""The canonical key/value form of the whole state (spec/state.md, "State entries").

Keys (big-endian integers, so LevelDB and sorted iteration keep numeric order):
- `00 "next_order_id"`                      -> CBOR uint: the next order id to assign
- `01 user(20 bytes) asset(u32)`            -> CBOR [available, locked]  (one user contiguous)
- `02 asset(u32) order_id(u64)`             -> CBOR [side, price, size, user(20 bytes)]
                                               (one book contiguous, in time priority)

An account with available = locked = 0 has no entry, and neither has an empty book, so
the entries (and the root over them) depend on the state alone, not on its history.

Each key belongs to a commitment namespace, which the state root commits to separately so
that two diverging states name the book or the asset's balances first:
- `00`              the globals
- `01 asset(u32)`   the balances of one asset
- `02 asset(u32)`   the book of one asset
"""

from __future__ import annotations

from collections.abc import Iterable

import cbor2

from state_machine.book import OrderBook
from state_machine.machine import CoreStateMachine, StateChanges
from state_machine.types import (
    MAX_AMOUNT,
    MAX_ASSET,
    MAX_BALANCE,
    QUOTE_ASSET,
    Address,
    CorruptState,
    Order,
    Side,
)

GLOBALS_PREFIX = 0x00
BALANCE_PREFIX = 0x01
ORDER_PREFIX = 0x02
NEXT_ORDER_ID_KEY = b"\x00next_order_id"
GLOBALS_NAMESPACE = b"\x00"

Entry = tuple[bytes, bytes]
Change = tuple[bytes, bytes | None]


def user_bytes(user: Address) -> bytes:
    return bytes.fromhex(user[2:])


def balance_key(user: Address, asset: int) -> bytes:
    return b"\x01" + bytes.fromhex(user[2:]) + asset.to_bytes(4, "big")


def order_key(asset: int, order_id: int) -> bytes:
    return b"\x02" + asset.to_bytes(4, "big") + order_id.to_bytes(8, "big")


def encode_balance(available: int, locked: int) -> bytes:
    return cbor2.dumps([available, locked])


def encode_order(order: Order) -> bytes:
    return cbor2.dumps([int(order.side), order.price, order.size, bytes.fromhex(order.user[2:])])


def namespace_of(key: bytes) -> bytes:
    """The commitment namespace a state key belongs to."""
    prefix = key[0]
    if prefix == BALANCE_PREFIX:
        return b"\x01" + key[21:25]
    if prefix == ORDER_PREFIX:
        return key[:5]
    return GLOBALS_NAMESPACE


def describe_key(key: bytes) -> str:
    """A human name for a state key, for diagnostics: `balances/U/A`, `books/A/orders/ID`."""
    if len(key) == 25 and key[0] == BALANCE_PREFIX:
        return f"balances/0x{key[1:21].hex()}/{int.from_bytes(key[21:25], 'big')}"
    if len(key) == 13 and key[0] == ORDER_PREFIX:
        asset = int.from_bytes(key[1:5], "big")
        return f"books/{asset}/orders/{int.from_bytes(key[5:13], 'big')}"
    if key == NEXT_ORDER_ID_KEY:
        return "globals/next_order_id"
    return f"key/{key.hex()}"


def describe_namespace(namespace: bytes) -> str:
    if len(namespace) == 5 and namespace[0] == BALANCE_PREFIX:
        return f"balances of asset {int.from_bytes(namespace[1:], 'big')}"
    if len(namespace) == 5 and namespace[0] == ORDER_PREFIX:
        return f"book of asset {int.from_bytes(namespace[1:], 'big')}"
    if namespace == GLOBALS_NAMESPACE:
        return "globals"
    return f"namespace {namespace.hex()}"


def state_entries(machine: CoreStateMachine) -> list[Entry]:
    """Every entry of the state, sorted by key."""
    entries: list[Entry] = [(NEXT_ORDER_ID_KEY, cbor2.dumps(machine.next_order_id))]
    for (user, asset), account in machine.balances.nonzero():
        entries.append((balance_key(user, asset), encode_balance(account[0], account[1])))
    for order in machine.orders.values():
        entries.append((order_key(order.asset, order.order_id), encode_order(order)))
    entries.sort()
    return entries


def changed_entries(machine: CoreStateMachine, changes: StateChanges) -> list[Change]:
    """The entries `changes` touched, with their current value or None where removed.

    The next-order-id entry is always included. Sorted by key, one item per key.
    """
    result: dict[bytes, bytes | None] = {
        NEXT_ORDER_ID_KEY: cbor2.dumps(machine.next_order_id)
    }
    accounts = machine.balances.accounts
    for user, asset in changes.balances:
        account = accounts.get((user, asset))
        value = None
        if account is not None and (account[0] or account[1]):
            value = encode_balance(account[0], account[1])
        result[balance_key(user, asset)] = value
    resting = machine.orders
    for order in changes.orders:
        key = order_key(order.asset, order.order_id)
        result[key] = encode_order(order) if resting.get(order.order_id) is order else None
    return sorted(result.items())


def _decode_uint_list(key: bytes, value: bytes, length: int) -> list[object]:
    try:
        decoded = cbor2.loads(value)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise CorruptState(f"{describe_key(key)}: undecodable value ({exc})") from exc
    if not isinstance(decoded, list) or len(decoded) != length:
        raise CorruptState(f"{describe_key(key)}: want an array of {length} items")
    _require_canonical(key, value, decoded)
    return decoded


def _require_canonical(key: bytes, value: bytes, decoded: object) -> None:
    # cbor2.loads accepts trailing bytes and non-minimal heads: one state would then have
    # several encodings, and so several roots.
    try:
        canonical = cbor2.dumps(decoded, canonical=True)
    except Exception as exc:  # whatever cbor2 decoded but cannot encode back
        raise CorruptState(f"{describe_key(key)}: unencodable value ({exc})") from exc
    if canonical != value:
        raise CorruptState(f"{describe_key(key)}: non-canonical CBOR value")


def _uint(key: bytes, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CorruptState(f"{describe_key(key)}: value {value!r} out of range")
    return value


def machine_from_entries(entries: Iterable[Entry]) -> CoreStateMachine:
    """Rebuild a state machine from its canonical entries, checking they are consistent.

    Orders are rested in id order, which is their time priority within a level. Raises
    CorruptState naming the key when an entry is malformed, or when an account's locked
    funds differ from what its resting orders hold.
    """
    machine = CoreStateMachine()
    balances = machine.balances
    orders: list[Order] = []
    seen_next_id = False
    previous_key = b""
    for key, value in entries:
        # Strictly ascending keys: a duplicate would silently overwrite (and double-count
        # an asset's supply); the store iterates in key order anyway.
        if key <= previous_key:
            raise CorruptState(f"{describe_key(key)}: key out of order or repeated")
        previous_key = key
        prefix = key[0]
        if key == NEXT_ORDER_ID_KEY:
            try:
                next_id = cbor2.loads(value)
            except Exception as exc:
                raise CorruptState(f"{describe_key(key)}: undecodable value") from exc
            machine.next_order_id = _uint(key, next_id, 1, MAX_AMOUNT + 1)
            _require_canonical(key, value, next_id)
            seen_next_id = True
        elif prefix == BALANCE_PREFIX and len(key) == 25:
            available, locked = _decode_uint_list(key, value, 2)
            user = "0x" + key[1:21].hex()
            asset = int.from_bytes(key[21:25], "big")
            account = balances.account(user, asset)
            account[0] = _uint(key, available, 0, MAX_BALANCE)
            account[1] = _uint(key, locked, 0, MAX_BALANCE)
            if not (account[0] or account[1]):
                raise CorruptState(f"{describe_key(key)}: zero balances are not stored")
            balances.supply[asset] = balances.supply.get(asset, 0) + account[0] + account[1]
            if balances.supply[asset] > MAX_BALANCE:
                raise CorruptState(f"{describe_key(key)}: supply of asset {asset} overflows")
        elif prefix == ORDER_PREFIX and len(key) == 13:
            side, price, size, user_raw = _decode_uint_list(key, value, 4)
            if not isinstance(user_raw, bytes) or len(user_raw) != 20:
                raise CorruptState(f"{describe_key(key)}: bad user")
            asset = _uint(key, int.from_bytes(key[1:5], "big"), 1, MAX_ASSET)
            order_id = _uint(key, int.from_bytes(key[5:13], "big"), 1, MAX_AMOUNT)
            orders.append(
                Order(
                    order_id,
                    "0x" + user_raw.hex(),
                    asset,
                    Side(_uint(key, side, 0, 1)),
                    _uint(key, price, 1, MAX_AMOUNT),
                    _uint(key, size, 1, MAX_AMOUNT),
                )
            )
        else:
            raise CorruptState(f"{describe_key(key)}: unknown key")
    if not seen_next_id:
        raise CorruptState("globals/next_order_id: missing")

    held: dict[tuple[Address, int], int] = {}
    orders.sort(key=lambda order: order.order_id)
    for order in orders:
        if order.order_id >= machine.next_order_id:
            raise CorruptState(
                f"{describe_key(order_key(order.asset, order.order_id))}: id not yet assigned"
            )
        machine.book(order.asset).add(order)
        machine.orders[order.order_id] = order
        if order.side == Side.BUY:
            lock_key = (order.user, QUOTE_ASSET)
            held[lock_key] = held.get(lock_key, 0) + order.price * order.size
        else:
            lock_key = (order.user, order.asset)
            held[lock_key] = held.get(lock_key, 0) + order.size
    for (user, asset), account in sorted(balances.accounts.items()):
        if account[1] != held.get((user, asset), 0):
            raise CorruptState(
                f"{describe_key(balance_key(user, asset))}: locked {account[1]} but resting "
                f"orders hold {held.get((user, asset), 0)}"
            )
    for user, asset in sorted(held):
        if (user, asset) not in balances.accounts:
            raise CorruptState(f"{describe_key(balance_key(user, asset))}: missing account")
    for asset in sorted(machine.books):
        book = machine.books[asset]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            # Matching never leaves a book crossed.
            raise CorruptState(f"book of asset {asset}: crossed (bid {best_bid} >= ask {best_ask})")
    machine.drain_changes()
    return machine


def book_levels(book: OrderBook) -> dict[str, list[tuple[int, int, int]]]:
    """Both sides of a book as L2 levels, best first."""
    return {"bids": book.depth(Side.BUY), "asks": book.depth(Side.SELL)}
