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
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from heapq import heapify
from itertools import islice
from operator import itemgetter, lt

import cbor2

from state_machine.book import Level, OrderBook
from state_machine.entries import (
    BALANCE_PREFIX,
    BRIDGE_KEY,
    NEXT_ORDER_ID_KEY,
    NONCE_PREFIX,
    ORDER_PREFIX,
    Entry,
    balance_key,
    describe_key,
    order_key,
)
from state_machine.machine import CoreStateMachine
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
from state_machine.values import order_value

_SIDES = (Side.BUY, Side.SELL)
_ORDER_KEY = struct.Struct(">xIQ")  # 02 asset(u32) order_id(u64)
_ORDERS_START = (bytes((ORDER_PREFIX,)),)  # bisect bounds: below every order key...
_ORDERS_END = (bytes((ORDER_PREFIX + 1,)),)  # ... and above every one
_new_object = object.__new__
DECODE_CHUNK = 1 << 16
"""Order values decoded per `cbor2.loads` call: the call's cost is spread, the decoded
items alive at once bounded (~10 MB)."""
Held = dict[tuple[Address, int], int]


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


def _corrupt(key: bytes, problem: str) -> CorruptState:
    return CorruptState(f"{describe_key(key)}: {problem}")


def _check_ascending(entries: list[Entry]) -> None:
    """Strictly ascending keys (a duplicate would silently overwrite, and double-count an
    asset's supply): O(entries), the comparisons in C."""
    keys = list(map(itemgetter(0), entries))
    if all(map(lt, keys, islice(keys, 1, None))):
        return
    for previous, key in zip(keys, islice(keys, 1, None), strict=False):
        if not previous < key:
            raise _corrupt(key, "key out of order or repeated")


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
        _build_books_bulk(machine, orders, users, held, check_canonical)
    else:
        decoded = _decode_each(orders, check_canonical)
        _build_books(machine, orders, decoded, users, held, check_canonical)
    if not seen_next_id:
        raise CorruptState("globals/next_order_id: missing")
    _check_totals(machine, held)
    machine.drain_changes()
    return machine


def _check_order_keys(orders: list[Entry]) -> None:
    """Every key of the orders' range 13 bytes long (02 asset order_id): O(orders)."""
    lengths = set(map(len, map(itemgetter(0), orders)))
    if lengths and lengths != {13}:
        raise _corrupt(next(key for key, _ in orders if len(key) != 13), "unknown key")


def _decode_each(entries: list[Entry], check_canonical: bool) -> Iterator[object]:
    """Each value decoded on its own (raises CorruptState naming the first bad key)."""
    for key, value in entries:
        yield _decode(key, value, check_canonical)


def _decode(key: bytes, value: bytes, check_canonical: bool) -> object:
    try:
        decoded = cbor2.loads(value)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise _corrupt(key, f"undecodable value ({type(exc).__name__})") from None
    if check_canonical and _reencoded(cbor2.dumps, decoded) != value:
        # cbor2.loads accepts trailing bytes and non-minimal heads: one state would
        # then have several encodings, and so several roots.
        raise _corrupt(key, "non-canonical CBOR value")
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
            asset = int.from_bytes(key[21:25], "big")
            accounts[(_user(users, key[1:21]), asset)] = [available, locked]
            total = supply.get(asset, 0) + available + locked
            if total > MAX_BALANCE:
                raise _corrupt(key, f"supply of asset {asset} overflows")
            supply[asset] = total
        elif prefix == NONCE_PREFIX and len(key) == 21:
            if type(decoded) is not int or not 1 <= decoded <= MAX_NONCE:
                raise _corrupt(key, f"nonce {decoded!r} out of range [1, 2^64]")
            machine.nonces.table[_user(users, key[1:21])] = decoded
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
    return seen_next_id


def _user(users: dict[bytes, Address], raw: bytes) -> Address:
    user = users.get(raw)
    if user is None:
        user = users[raw] = "0x" + raw.hex()
    return user


_BULK_REFUSED = "orders: a bad value (the rebuild is redone order by order to name it)"


def _build_books_bulk(
    machine: CoreStateMachine,
    orders: list[Entry],
    users: dict[bytes, Address],
    held: Held,
    check_canonical: bool,
) -> None:
    """Every book from its orders, DECODE_CHUNK orders at a time: the keys unpacked by
    one `struct` call, the values decoded as one flat CBOR array split into columns (side,
    price, size, user; see `_order_columns`) and checked whole in C, the users mapped to
    their shared strings by one `map`; then `_rest_orders` per book segment builds the
    objects: O(orders + levels log levels). About 67 bytecodes per order where
    `_build_books` runs 165 (1,000,000 orders: CPU 3.41 -> 2.55 s, medians of 3
    interleaved rounds on a loaded machine).

    Any bad value only raises a CorruptState that names nothing: the caller then redoes
    the rebuild entry by entry (`_build_books`), which names the first bad key."""
    books: dict[int, _BookParts] = {}
    quote_held: dict[Address, int] = {}
    key_formats: dict[int, struct.Struct] = {}  # a chunk's keys in one unpack (2 sizes)
    for start in range(0, len(orders), DECODE_CHUNK):
        chunk = orders[start : start + DECODE_CHUNK]
        keys = key_formats.get(len(chunk))
        if keys is None:
            keys = key_formats[len(chunk)] = struct.Struct(">" + "xIQ" * len(chunk))
        asset_and_id = keys.unpack(b"".join(map(itemgetter(0), chunk)))
        assets, order_ids = asset_and_id[0::2], asset_and_id[1::2]
        if 0 in assets or 0 in order_ids:  # no book 0; ids ascend in a book: 0 only first
            raise CorruptState(_BULK_REFUSED)
        values = list(map(itemgetter(1), chunk))
        sides, prices, sizes, raws = _order_columns(values)
        if check_canonical and list(map(order_value, sides, prices, sizes, raws)) != values:
            raise CorruptState(_BULK_REFUSED)
        for raw in set(raws).difference(users):  # (a lookup table: its order is not used)
            users[raw] = "0x" + raw.hex()
        names = list(map(users.__getitem__, raws))
        at = 0
        while at < len(assets):  # one segment per book: its orders are contiguous
            asset = assets[at]
            end = bisect_right(assets, asset, at)
            parts = books.get(asset)
            if parts is None:
                parts = books[asset] = ({}, {}, {})
            _rest_orders(
                machine.orders, asset, parts, quote_held,
                zip(order_ids[at:end], sides[at:end], prices[at:end], sizes[at:end],
                    names[at:end], strict=True),
            )
            at = end
    for asset, (bids, asks, base_held) in books.items():  # ascending: keys are sorted
        _install_book(machine, asset, bids, asks, base_held, held)
    for user, amount in quote_held.items():
        held[(user, QUOTE_ASSET)] = amount


_BookParts = tuple[dict[int, Level], dict[int, Level], dict[Address, int]]
"""A book being built: its bids, its asks, the base its sells hold per user."""
_Columns = tuple[list[int], list[int], list[int], list[bytes]]
_FIRST_BYTE = itemgetter(0)
_AFTER_HEAD = itemgetter(slice(1, None))
_ARRAY_OF_4 = b"\x84"


def _order_columns(values: list[bytes]) -> _Columns:
    """The order values as columns (sides, prices, sizes, users), each checked whole as
    `_build_books` checks each order: O(values), in C.

    Every value must open with 0x84 (an array of 4 items); without that byte the values
    are decoded as ONE flat array of 4 items per order (no list per order built and
    dropped), which the slices [k::4] split into columns."""
    try:
        if bytes(map(_FIRST_BYTE, values)) != _ARRAY_OF_4 * len(values):
            raise CorruptState(_BULK_REFUSED)
    except IndexError:  # an empty value
        raise CorruptState(_BULK_REFUSED) from None
    count = 4 * len(values)
    try:
        flat = cbor2.loads(
            b"\x9b" + count.to_bytes(8, "big") + b"".join(map(_AFTER_HEAD, values))
        )
    except Exception:  # cbor2 raises several types on garbage
        flat = None
    if type(flat) is not list or len(flat) != count:
        raise CorruptState(_BULK_REFUSED)
    sides, prices, sizes, raws = flat[0::4], flat[1::4], flat[2::4], flat[3::4]
    if not (
        set(map(type, sides)) == set(map(type, prices)) == set(map(type, sizes)) == {int}
        and set(sides) <= {0, 1}
        and 0 < min(prices) <= max(prices) <= MAX_AMOUNT
        and 0 < min(sizes) <= max(sizes) <= MAX_AMOUNT
        and set(map(type, raws)) == {bytes}
        and set(map(len, raws)) == {20}
    ):
        raise CorruptState(_BULK_REFUSED)
    return sides, prices, sizes, raws


def _rest_orders(
    resting: dict[int, Order],
    asset: int,
    parts: _BookParts,
    quote_held: dict[Address, int],
    rows: Iterable[tuple[int, int, int, int, Address]],
) -> None:
    """Rest checked orders (order_id, side, price, size, user) of one book in id order,
    and add up what they lock per user (base in `parts`, quote in `quote_held`): O(rows).

    The hot loop of a restart: locals only, no call per order but `append`, an order
    built as a bare object with its slots stored (~60% of `Order(...)`), every order of
    a level sharing the level's price object."""
    bids, asks, base_held = parts
    bids_get = bids.get
    asks_get = asks.get
    base_get = base_held.get
    buy = Side.BUY
    sell = Side.SELL
    quote_get = quote_held.get
    new = _new_object
    order_class = Order
    level_class = Level
    for order_id, side, price, size, user in rows:
        order = new(order_class)
        order.order_id = order_id
        order.user = user
        order.asset = asset
        order.size = size
        if side:
            order.side = sell
            level = asks_get(price)
            if level is None:
                level = asks[price] = level_class()
                level.price = price
            base_held[user] = base_get(user, 0) + size
        else:
            order.side = buy
            level = bids_get(price)
            if level is None:
                level = bids[price] = level_class()
                level.price = price
            quote_held[user] = quote_get(user, 0) + price * size
        order.price = level.price
        level.append(order)
        resting[order_id] = order


def _build_books(
    machine: CoreStateMachine,
    orders: list[Entry],
    decoded: Iterable[object],
    users: dict[bytes, Address],
    held: Held,
    check_canonical: bool,
) -> None:
    """Every book from its orders (contiguous per asset, in id order), and into `held`
    what they lock per account: O(orders + levels log levels).

    The hot loop of a restart: locals only, no helper call per order, an order built as a
    bare object with its slots stored (~60% of `Order(...)`), each level's `live` set once
    the book is built (every restored order is live)."""
    resting = machine.orders
    users_get = users.get
    book_asset = -1
    bids: dict[int, Level] = {}
    asks: dict[int, Level] = {}
    base_held: dict[Address, int] = {}
    quote_held: dict[Address, int] = {}
    ids = _ORDER_KEY.iter_unpack(b"".join(map(itemgetter(0), orders)))
    for (asset, order_id), item, (key, value) in zip(ids, decoded, orders, strict=True):
        if asset != book_asset:
            _install_book(machine, book_asset, bids, asks, base_held, held)
            if asset == 0 or order_id == 0:  # ids ascend in a book: 0 can only be first
                raise _corrupt(key, "no such book or order id")
            book_asset, bids, asks, base_held = asset, {}, {}, {}
        if type(item) is not list or len(item) != 4:
            raise _corrupt(key, "want an array of 4 items")
        side, price, size, user_raw = item
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
            raise _corrupt(key, f"bad order {item!r}")
        if check_canonical and order_value(side, price, size, user_raw) != value:
            raise _corrupt(key, "non-canonical CBOR value")
        user = users_get(user_raw)
        if user is None:
            user = users[user_raw] = "0x" + user_raw.hex()
        if side:
            level = asks.get(price)
            if level is None:
                level = asks[price] = Level()
                level.price = price
            base_held[user] = base_held.get(user, 0) + size
        else:
            level = bids.get(price)
            if level is None:
                level = bids[price] = Level()
                level.price = price
            quote_held[user] = quote_held.get(user, 0) + price * size
        order = _new_object(Order)
        order.order_id = order_id
        order.user = user
        order.asset = asset
        order.side = _SIDES[side]
        order.price = level.price
        order.size = size
        level.append(order)
        resting[order_id] = order
    _install_book(machine, book_asset, bids, asks, base_held, held)
    for user, amount in quote_held.items():
        held[(user, QUOTE_ASSET)] = amount


def _install_book(
    machine: CoreStateMachine,
    asset: int,
    bids: dict[int, Level],
    asks: dict[int, Level],
    base_held: dict[Address, int],
    held: Held,
) -> None:
    """Give `asset` its book, each level its live count and each side's prices one
    heapify (O(levels)); record the base its sells hold."""
    if asset < 0:
        return
    book = machine.books[asset] = OrderBook(asset)
    for levels in (bids, asks):
        for level in levels.values():
            level.live = len(level)
            level.head = 0
    book.bid_levels = bids
    book.ask_levels = asks
    book.bid_heap = [-price for price in bids]
    book.ask_heap = list(asks)
    heapify(book.bid_heap)
    heapify(book.ask_heap)
    for user, amount in base_held.items():
        held[(user, asset)] = amount


def _check_totals(machine: CoreStateMachine, held: Held) -> None:
    """Ids below the next id (I5), locks = what the resting orders hold (I2), no book
    crossed (I1): O(accounts log accounts + books)."""
    resting = machine.orders
    if resting:
        max_order_id = max(resting)
        if max_order_id >= machine.next_order_id:
            order = resting[max_order_id]
            raise _corrupt(order_key(order.asset, max_order_id), "id not yet assigned")
    accounts = machine.balances.accounts
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
