"""The canonical key/value form of the whole state (spec/state.md, "State entries").

Keys (big-endian integers, so LevelDB and sorted iteration keep numeric order):
- `00 "next_order_id"`                      -> CBOR uint: the next order id to assign
- `01 user(20 bytes) asset(u32)`            -> CBOR [available, locked]  (one user contiguous)
- `02 asset(u32) order_id(u64)`             -> CBOR [side, price, size, user(20 bytes)]
                                               (one book contiguous, in time priority)
- `03 user(20 bytes)`                       -> CBOR uint: the user's nonce (network mode)
- `00 "bridge"`                             -> CBOR bstr(20): the genesis bridge (network mode)

An account with available = locked = 0 has no entry, and neither has an empty book or a
nonce of 0 (nor a bridge outside network mode), so
the entries (and the root over them) depend on the state alone, not on its history.

Each key belongs to a commitment namespace, which the state root commits to separately so
that two diverging states name the book or the asset's balances first:
- `00`              the globals
- `01 asset(u32)`   the balances of one asset
- `02 asset(u32)`   the book of one asset
- `03`              every nonce
"""

from __future__ import annotations

import cbor2

from state_machine.machine import CoreStateMachine, StateChanges
from state_machine.types import (
    Address,
    Order,
)
from state_machine.values import balance_value, order_value

GLOBALS_PREFIX = 0x00
BALANCE_PREFIX = 0x01
ORDER_PREFIX = 0x02
NONCE_PREFIX = 0x03
NEXT_ORDER_ID_KEY = b"\x00next_order_id"
BRIDGE_KEY = b"\x00bridge"
GLOBALS_NAMESPACE = b"\x00"
NONCES_NAMESPACE = b"\x03"

Entry = tuple[bytes, bytes]
Change = tuple[bytes, bytes | None]


# Address -> its 20 bytes; only a speed-up (bounded, cleared when full).
_RAW_USERS: dict[Address, bytes] = {}
_RAW_USERS_MAX = 1 << 16


def user_bytes(user: Address) -> bytes:
    """The 20 bytes of a canonical address: O(1), memoised."""
    raw = _RAW_USERS.get(user)
    if raw is None:
        raw = bytes.fromhex(user[2:])
        if len(_RAW_USERS) >= _RAW_USERS_MAX:
            _RAW_USERS.clear()
        _RAW_USERS[user] = raw
    return raw


def balance_key(user: Address, asset: int) -> bytes:
    return b"\x01" + user_bytes(user) + asset.to_bytes(4, "big")


def order_key(asset: int, order_id: int) -> bytes:
    return b"\x02" + asset.to_bytes(4, "big") + order_id.to_bytes(8, "big")


def nonce_key(user: Address) -> bytes:
    return b"\x03" + bytes.fromhex(user[2:])


def encode_balance(available: int, locked: int) -> bytes:
    """CBOR [available, locked] (`values.balance_value`: the bytes of cbor2.dumps)."""
    return balance_value(available, locked)


def encode_order(order: Order) -> bytes:
    """CBOR [side, price, size, user] (`values.order_value`: the bytes of cbor2.dumps)."""
    return order_value(order.side, order.price, order.size, user_bytes(order.user))


def namespace_of(key: bytes) -> bytes:
    """The commitment namespace a state key belongs to."""
    prefix = key[0]
    if prefix == BALANCE_PREFIX:
        return b"\x01" + key[21:25]
    if prefix == ORDER_PREFIX:
        return key[:5]
    if prefix == NONCE_PREFIX:
        return NONCES_NAMESPACE
    return GLOBALS_NAMESPACE


def describe_key(key: bytes) -> str:
    """A human name for a state key, for diagnostics: `balances/U/A`, `books/A/orders/ID`."""
    if len(key) == 25 and key[0] == BALANCE_PREFIX:
        return f"balances/0x{key[1:21].hex()}/{int.from_bytes(key[21:25], 'big')}"
    if len(key) == 13 and key[0] == ORDER_PREFIX:
        asset = int.from_bytes(key[1:5], "big")
        return f"books/{asset}/orders/{int.from_bytes(key[5:13], 'big')}"
    if len(key) == 21 and key[0] == NONCE_PREFIX:
        return f"nonces/0x{key[1:21].hex()}"
    if key == NEXT_ORDER_ID_KEY:
        return "globals/next_order_id"
    if key == BRIDGE_KEY:
        return "globals/bridge"
    return f"key/{key.hex()}"


def describe_namespace(namespace: bytes) -> str:
    if len(namespace) == 5 and namespace[0] == BALANCE_PREFIX:
        return f"balances of asset {int.from_bytes(namespace[1:], 'big')}"
    if len(namespace) == 5 and namespace[0] == ORDER_PREFIX:
        return f"book of asset {int.from_bytes(namespace[1:], 'big')}"
    if namespace == GLOBALS_NAMESPACE:
        return "globals"
    if namespace == NONCES_NAMESPACE:
        return "nonces"
    return f"namespace {namespace.hex()}"


def state_entries(machine: CoreStateMachine) -> list[Entry]:
    """Every entry of the state, sorted by key."""
    entries: list[Entry] = [(NEXT_ORDER_ID_KEY, cbor2.dumps(machine.next_order_id))]
    for (user, asset), account in machine.balances.nonzero():
        entries.append((balance_key(user, asset), encode_balance(account[0], account[1])))
    for order in machine.orders.values():
        entries.append((order_key(order.asset, order.order_id), encode_order(order)))
    for user, nonce in machine.nonces.items():
        entries.append((nonce_key(user), cbor2.dumps(nonce)))
    if machine.bridge is not None:
        entries.append((BRIDGE_KEY, _bridge_value(machine.bridge)))
    entries.sort()
    return entries


def entry_value_of(machine: CoreStateMachine, key: bytes) -> bytes | None:
    """The value `state_entries(machine)` pairs with `key`, None if it has no such entry.

    O(1): one lookup in the machine's tables and one encoding, for a reader of one entry
    (a proof of it) beside a state commitment that keeps no values.
    """
    if key == NEXT_ORDER_ID_KEY:
        return cbor2.dumps(machine.next_order_id)
    if key == BRIDGE_KEY:
        bridge = machine.bridge
        return None if bridge is None else _bridge_value(bridge)
    prefix = key[0] if key else None
    if prefix == BALANCE_PREFIX and len(key) == 25:
        account = machine.balances.accounts.get(("0x" + key[1:21].hex(), _u(key[21:])))
        if account is None or not (account[0] or account[1]):
            return None
        return encode_balance(account[0], account[1])
    if prefix == ORDER_PREFIX and len(key) == 13:
        order = machine.orders.get(_u(key[5:]))
        return None if order is None or order.asset != _u(key[1:5]) else encode_order(order)
    if prefix == NONCE_PREFIX and len(key) == 21:
        nonce = machine.nonces.get("0x" + key[1:].hex())
        return cbor2.dumps(nonce) if nonce else None
    return None


def _bridge_value(bridge: Address) -> bytes:
    """The bridge entry's value: CBOR of the address's 20 bytes."""
    return cbor2.dumps(bytes.fromhex(bridge[2:]))


def _u(data: bytes) -> int:
    return int.from_bytes(data, "big")


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
    # About one order per tx: `order_key` and `encode_order` inlined.
    resting = machine.orders
    raw_users = _RAW_USERS
    for order in changes.orders:
        order_id = order.order_id
        key = b"\x02" + order.asset.to_bytes(4, "big") + order_id.to_bytes(8, "big")
        if resting.get(order_id) is order:
            user = order.user
            raw = raw_users.get(user) or user_bytes(user)
            result[key] = order_value(order.side, order.price, order.size, raw)
        else:
            result[key] = None
    nonces = machine.nonces.table
    for user in changes.nonces:
        result[nonce_key(user)] = cbor2.dumps(nonces[user])  # a nonce only goes up
    return sorted(result.items())
