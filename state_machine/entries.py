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

import gc
from collections.abc import Callable, Iterable
from heapq import heapify

import cbor2

from state_machine.book import Level, OrderBook, new_level
from state_machine.machine import CoreStateMachine, StateChanges
from state_machine.nonces import MAX_NONCE
from state_machine.types import (
    MAX_AMOUNT,
    MAX_BALANCE,
    QUOTE_ASSET,
    Address,
    CorruptState,
    Order,
    Side,
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
        entries.append((BRIDGE_KEY, cbor2.dumps(bytes.fromhex(machine.bridge[2:]))))
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


def _corrupt(key: bytes, problem: str) -> CorruptState:
    return CorruptState(f"{describe_key(key)}: {problem}")


_SIDES = (Side.BUY, Side.SELL)


def machine_from_entries(
    entries: Iterable[Entry], *, check_canonical: bool = True
) -> CoreStateMachine:
    """Rebuild a state machine from its canonical entries, checking they are consistent.

    Entries must come in strictly ascending key order (as `state_entries` gives them and
    LevelDB stores them): one book's orders are then contiguous and in id order, which is
    their time priority, so each book is built in one pass and its prices heapified once.
    Raises CorruptState naming the key when an entry is malformed, when an account's locked
    funds differ from what its resting orders hold, or when a book is crossed.

    `check_canonical` re-encodes every value to prove it is the canonical encoding (one
    state, one encoding, one root). A caller that checks the restored entries against a
    stored root anyway may skip it: a value that hashes to the committed root is the
    committed (canonical) value. This loop is on the restart path of a node holding
    millions of orders, hence its shape: locals, no per-entry helper calls.
    """
    # Millions of new containers and no cycles: the cyclic collector would only re-scan
    # them over and over (a third of the time at 200,000 orders).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _machine_from_entries(entries, check_canonical)
    finally:
        if collecting:
            gc.enable()


def _machine_from_entries(entries: Iterable[Entry], check_canonical: bool) -> CoreStateMachine:
    machine = CoreStateMachine()
    accounts = machine.balances.accounts
    supply = machine.balances.supply
    resting = machine.orders
    held: dict[tuple[Address, int], int] = {}
    users: dict[bytes, Address] = {}  # one string per user, shared by its orders
    loads = cbor2.loads
    dumps = cbor2.dumps
    book_asset = -1
    bid_levels: dict[int, Level] = {}
    ask_levels: dict[int, Level] = {}
    max_order_id = 0
    seen_next_id = False
    previous_key = b""
    for key, value in entries:
        # Strictly ascending keys: a duplicate would silently overwrite (and double-count
        # an asset's supply); the store iterates in key order anyway.
        if key <= previous_key:
            raise _corrupt(key, "key out of order or repeated")
        previous_key = key
        try:
            decoded = loads(value)
        except Exception as exc:  # cbor2 raises several types on garbage
            raise _corrupt(key, f"undecodable value ({type(exc).__name__})") from None
        if check_canonical and _reencoded(dumps, decoded) != value:
            # cbor2.loads accepts trailing bytes and non-minimal heads: one state would
            # then have several encodings, and so several roots.
            raise _corrupt(key, "non-canonical CBOR value")
        prefix = key[0]
        if prefix == ORDER_PREFIX and len(key) == 13:
            if type(decoded) is not list or len(decoded) != 4:
                raise _corrupt(key, "want an array of 4 items")
            side, price, size, user_raw = decoded
            if not (
                (side == 0 or side == 1)
                and type(side) is int
                and type(price) is int
                and 0 < price <= MAX_AMOUNT
                and type(size) is int
                and 0 < size <= MAX_AMOUNT
                and type(user_raw) is bytes
                and len(user_raw) == 20
            ):
                raise _corrupt(key, f"bad order {decoded!r}")
            asset = int.from_bytes(key[1:5], "big")
            order_id = int.from_bytes(key[5:13], "big")
            if asset == 0 or order_id == 0:
                raise _corrupt(key, "no such book or order id")
            if asset != book_asset:
                _install_book(machine, book_asset, bid_levels, ask_levels)
                book_asset = asset
                bid_levels = {}
                ask_levels = {}
            user = users.get(user_raw)
            if user is None:
                user = users[user_raw] = "0x" + user_raw.hex()
            levels = ask_levels if side else bid_levels
            level = levels.get(price)
            if level is None:
                level = levels[price] = new_level(price)
            order = Order(order_id, user, asset, _SIDES[side], level.price, size)
            level.append(order)
            level.live += 1
            resting[order_id] = order
            if order_id > max_order_id:
                max_order_id = order_id
            lock_key = (user, asset) if side else (user, QUOTE_ASSET)
            held[lock_key] = held.get(lock_key, 0) + (size if side else price * size)
        elif prefix == BALANCE_PREFIX and len(key) == 25:
            if type(decoded) is not list or len(decoded) != 2:
                raise _corrupt(key, "want an array of 2 items")
            available, locked = decoded
            if not (
                type(available) is int
                and type(locked) is int
                and 0 <= available <= MAX_BALANCE
                and 0 <= locked <= MAX_BALANCE
            ):
                raise _corrupt(key, f"bad balance {decoded!r}")
            if not (available or locked):
                raise _corrupt(key, "zero balances are not stored")
            user_raw = key[1:21]
            user = users.get(user_raw)
            if user is None:
                user = users[user_raw] = "0x" + user_raw.hex()
            asset = int.from_bytes(key[21:25], "big")
            accounts[(user, asset)] = [available, locked]
            total = supply.get(asset, 0) + available + locked
            if total > MAX_BALANCE:
                raise _corrupt(key, f"supply of asset {asset} overflows")
            supply[asset] = total
        elif prefix == NONCE_PREFIX and len(key) == 21:
            if type(decoded) is not int or not 1 <= decoded <= MAX_NONCE:
                raise _corrupt(key, f"nonce {decoded!r} out of range [1, 2^64]")
            user_raw = key[1:21]
            user = users.get(user_raw)
            if user is None:
                user = users[user_raw] = "0x" + user_raw.hex()
            machine.nonces.table[user] = decoded
        elif key == BRIDGE_KEY:
            if type(decoded) is not bytes or len(decoded) != 20:
                raise _corrupt(key, "want a 20-byte address")
            machine.bridge = "0x" + decoded.hex()
        elif key == NEXT_ORDER_ID_KEY:
            if type(decoded) is not int or not 1 <= decoded <= MAX_AMOUNT + 1:
                raise _corrupt(key, f"value {decoded!r} out of range")
            machine.next_order_id = decoded
            seen_next_id = True
        else:
            raise _corrupt(key, "unknown key")
    _install_book(machine, book_asset, bid_levels, ask_levels)
    if not seen_next_id:
        raise CorruptState("globals/next_order_id: missing")
    if max_order_id >= machine.next_order_id:
        order = resting[max_order_id]
        raise _corrupt(order_key(order.asset, max_order_id), "id not yet assigned")

    for (user, asset), account in sorted(accounts.items()):
        if account[1] != held.get((user, asset), 0):
            raise _corrupt(
                balance_key(user, asset),
                f"locked {account[1]} but resting orders hold {held.get((user, asset), 0)}",
            )
    for user, asset in sorted(held):
        if (user, asset) not in accounts:
            raise _corrupt(balance_key(user, asset), "missing account")
    for asset in sorted(machine.books):
        book = machine.books[asset]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            # Matching never leaves a book crossed.
            raise CorruptState(f"book of asset {asset}: crossed (bid {best_bid} >= ask {best_ask})")
    machine.drain_changes()
    return machine


def _reencoded(dumps: Callable[[object], bytes], decoded: object) -> bytes:
    try:
        return dumps(decoded)
    except Exception:  # whatever cbor2 decoded but cannot encode back is not canonical
        return b""


def _install_book(
    machine: CoreStateMachine,
    asset: int,
    bid_levels: dict[int, Level],
    ask_levels: dict[int, Level],
) -> None:
    """Give `asset` its book, heapifying each side's prices once (O(levels))."""
    if asset < 0:
        return
    book = machine.books[asset] = OrderBook(asset)
    book.bid_levels = bid_levels
    book.ask_levels = ask_levels
    book.bid_heap = [-price for price in bid_levels]
    book.ask_heap = list(ask_levels)
    heapify(book.bid_heap)
    heapify(book.ask_heap)
