"""`machine_from_entries`: a state machine rebuilt from its canonical entries, checked.

On the restart path of a node holding millions of orders (spec/store.md, "Recovery"), so
the orders, nearly all of the entries, are built in bulk, a chunk at a time: their keys
are unpacked by one `struct` call and their values decoded by ONE `cbor2.loads` of a flat
array of their items (the C decoder without a Python call per value: ~0.35 us per order
where one `loads` per value took ~1.2 us), checked column by column in C, then one loop
with no helper call per order builds each book. The few other entries (globals,
accounts, nonces) go one by one.

A bulk decode reads the values as one byte string, so a value that is not exactly one
CBOR item (trailing bytes) shifts the items after it. Where that shows, as an item of the
wrong shape, the whole rebuild is redone entry by entry, which names the bad key as before.
Where it cannot show (`check_canonical=False`, a corrupt value whose extra bytes happen to
look like orders), the machine may differ from the bytes: such a caller checks the entries
against a root (as every caller does), which they then fail. With `check_canonical` each
order value is compared with its canonical encoding (`values.order_value`, the bytes of
cbor2.dumps), which also proves that the items were aligned: CBOR items are prefix-free,
so an item decoded at the start of a canonical value spans exactly that value.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from operator import itemgetter, lt

import cbor2

from state_machine.entries import (
    BALANCE_PREFIX,
    BRIDGE_KEY,
    NEXT_ORDER_ID_KEY,
    NONCE_PREFIX,
    ORDER_PREFIX,
    Entry,
    balance_key,
    order_key,
)
from state_machine.machine import CoreStateMachine
from state_machine.nonces import MAX_NONCE
from state_machine.rebuild_books import (
    Held,
    build_books,
    build_books_bulk,
    corrupt,
    user_name,
)
from state_machine.types import (
    MAX_AMOUNT,
    MAX_BALANCE,
    Address,
    CorruptState,
)

_ORDERS_START = (bytes((ORDER_PREFIX,)),)  # bisect bounds: below every order key...
_ORDERS_END = (bytes((ORDER_PREFIX + 1,)),)  # ... and above every one


def machine_from_entries(
    entries: Iterable[Entry], *, check_canonical: bool = True
) -> CoreStateMachine:
    """Rebuild a state machine from its canonical entries, checking they are consistent.

    Entries must come in strictly ascending key order (as `state_entries` gives them and
    LevelDB stores them): one book's orders are then contiguous and in id order, which is
    their time priority, so each book is built in one pass and its prices heapified once.
    Raises CorruptState naming the key when an entry is malformed, when an account's locked
    funds differ from what its resting orders hold, or when a book is crossed.

    `check_canonical` proves every value is the canonical encoding (one state, one
    encoding, one root). A caller that checks the restored entries against a stored root
    anyway may skip it: a value that hashes to the committed root is the committed
    (canonical) value, and only then is the machine that of the entries (see the module's
    docstring). O(entries + levels); about 1 us per order.
    """
    entries = entries if isinstance(entries, list) else list(entries)
    # Millions of new objects and no cycles: the cyclic collector would only re-scan them
    # over and over (a third of the time at 200,000 orders).
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            return _rebuild(entries, check_canonical, bulk=True)
        except CorruptState:
            # A bulk decode may have shifted a bad value's error onto a later entry: find
            # the first bad entry one by one (raises, or accepts what the check allows).
            return _rebuild(entries, check_canonical, bulk=False)
    finally:
        if collecting:
            gc.enable()


def _check_ascending(entries: list[Entry]) -> None:
    """Strictly ascending keys (a duplicate would silently overwrite, and double-count an
    asset's supply): O(entries), the comparisons in C."""
    keys = list(map(itemgetter(0), entries))
    if all(map(lt, keys, islice(keys, 1, None))):
        return
    for previous, key in zip(keys, islice(keys, 1, None), strict=False):
        if not previous < key:
            raise corrupt(key, "key out of order or repeated")


def _rebuild(entries: list[Entry], check_canonical: bool, bulk: bool) -> CoreStateMachine:
    _check_ascending(entries)
    machine = CoreStateMachine()
    users: dict[bytes, Address] = {}  # one string per user, shared by its orders
    lo = bisect_left(entries, _ORDERS_START)
    hi = bisect_left(entries, _ORDERS_END)
    seen_next_id = _other_entries(machine, entries[:lo], users, check_canonical)
    seen_next_id |= _other_entries(machine, entries[hi:], users, check_canonical)
    held: Held = {}
    orders = entries[lo:hi]
    _check_order_keys(orders)
    if bulk:
        build_books_bulk(machine, orders, users, held, check_canonical)
    else:
        decoded = _decode_each(orders, check_canonical)
        build_books(machine, orders, decoded, users, held, check_canonical)
    if not seen_next_id:
        raise CorruptState("globals/next_order_id: missing")
    _check_totals(machine, held)
    machine.drain_changes()
    return machine


def _check_order_keys(orders: list[Entry]) -> None:
    """Every key of the orders' range 13 bytes long (02 asset order_id): O(orders)."""
    lengths = set(map(len, map(itemgetter(0), orders)))
    if lengths and lengths != {13}:
        raise corrupt(next(key for key, _ in orders if len(key) != 13), "unknown key")


def _decode_each(entries: list[Entry], check_canonical: bool) -> Iterator[object]:
    """Each value decoded on its own (raises CorruptState naming the first bad key)."""
    for key, value in entries:
        yield _decode(key, value, check_canonical)


def _decode(key: bytes, value: bytes, check_canonical: bool) -> object:
    try:
        decoded = cbor2.loads(value)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise corrupt(key, f"undecodable value ({type(exc).__name__})") from None
    if check_canonical and _reencoded(cbor2.dumps, decoded) != value:
        # cbor2.loads accepts trailing bytes and non-minimal heads: one state would
        # then have several encodings, and so several roots.
        raise corrupt(key, "non-canonical CBOR value")
    return decoded


def _reencoded(dumps: Callable[[object], bytes], decoded: object) -> bytes:
    try:
        return dumps(decoded)
    except Exception:  # whatever cbor2 decoded but cannot encode back is not canonical
        return b""


def _other_entries(
    machine: CoreStateMachine, entries: list[Entry], users: dict[bytes, Address],
    check_canonical: bool,
) -> bool:
    """The globals, accounts and nonces, one by one: O(entries). Whether the next order
    id was among them."""
    seen_next_id = False
    accounts = machine.balances.accounts
    supply = machine.balances.supply
    for key, value in entries:
        decoded = _decode(key, value, check_canonical)
        prefix = key[0]
        if prefix == BALANCE_PREFIX and len(key) == 25:
            if type(decoded) is not list or len(decoded) != 2:
                raise corrupt(key, "want an array of 2 items")
            available, locked = decoded
            if not (
                type(available) is int
                and type(locked) is int
                and 0 <= available <= MAX_BALANCE
                and 0 <= locked <= MAX_BALANCE
            ):
                raise corrupt(key, f"bad balance {decoded!r}")
            if not (available or locked):
                raise corrupt(key, "zero balances are not stored")
            asset = int.from_bytes(key[21:25], "big")
            accounts[(user_name(users, key[1:21]), asset)] = [available, locked]
            total = supply.get(asset, 0) + available + locked
            if total > MAX_BALANCE:
                raise corrupt(key, f"supply of asset {asset} overflows")
            supply[asset] = total
        elif prefix == NONCE_PREFIX and len(key) == 21:
            if type(decoded) is not int or not 1 <= decoded <= MAX_NONCE:
                raise corrupt(key, f"nonce {decoded!r} out of range [1, 2^64]")
            machine.nonces.table[user_name(users, key[1:21])] = decoded
        elif key == BRIDGE_KEY:
            if type(decoded) is not bytes or len(decoded) != 20:
                raise corrupt(key, "want a 20-byte address")
            machine.bridge = "0x" + decoded.hex()
        elif key == NEXT_ORDER_ID_KEY:
            if type(decoded) is not int or not 1 <= decoded <= MAX_AMOUNT + 1:
                raise corrupt(key, f"value {decoded!r} out of range")
            machine.next_order_id = decoded
            seen_next_id = True
        else:
            raise corrupt(key, "unknown key")
    return seen_next_id


def _check_totals(machine: CoreStateMachine, held: Held) -> None:
    """Ids below the next id (I5), locks = what the resting orders hold (I2), no book
    crossed (I1): O(accounts log accounts + books)."""
    resting = machine.orders
    if resting:
        max_order_id = max(resting)
        if max_order_id >= machine.next_order_id:
            order = resting[max_order_id]
            raise corrupt(order_key(order.asset, max_order_id), "id not yet assigned")
    accounts = machine.balances.accounts
    for (user, asset), account in sorted(accounts.items()):
        if account[1] != held.get((user, asset), 0):
            raise corrupt(
                balance_key(user, asset),
                f"locked {account[1]} but resting orders hold {held.get((user, asset), 0)}",
            )
    for user, asset in sorted(held):
        if (user, asset) not in accounts:
            raise corrupt(balance_key(user, asset), "missing account")
    for asset in sorted(machine.books):
        book = machine.books[asset]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            # Matching never leaves a book crossed.
            raise CorruptState(f"book of asset {asset}: crossed (bid {best_bid} >= ask {best_ask})")
