"""The order books of a machine rebuilt from its order entries (`state_machine.rebuild`).

Two ways, the same books: `build_books_bulk`, a chunk of orders at a time in C (the
restart path of a node holding millions of orders), and `build_books`, one order at a
time, which names the first bad key; a bulk build that meets a bad value is redone by
the second (see `state_machine.rebuild`'s docstring for why that is enough).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterable
from heapq import heapify
from operator import itemgetter

import cbor2

from state_machine.book import Level, OrderBook
from state_machine.entries import Entry, describe_key
from state_machine.machine import CoreStateMachine
from state_machine.types import (
    MAX_AMOUNT,
    QUOTE_ASSET,
    Address,
    CorruptState,
    Order,
    Side,
)
from state_machine.values import order_value

_SIDES = (Side.BUY, Side.SELL)
_ORDER_KEY = struct.Struct(">xIQ")  # 02 asset(u32) order_id(u64)
_new_object = object.__new__
DECODE_CHUNK = 1 << 16
"""Order values decoded per `cbor2.loads` call: the call's cost is spread, the decoded
items alive at once bounded (~10 MB)."""
Held = dict[tuple[Address, int], int]
"""What the resting orders hold, per (user, asset)."""


def corrupt(key: bytes, problem: str) -> CorruptState:
    """The error for a bad entry, naming its key."""
    return CorruptState(f"{describe_key(key)}: {problem}")


def user_name(users: dict[bytes, Address], raw: bytes) -> Address:
    user = users.get(raw)
    if user is None:
        user = users[raw] = "0x" + raw.hex()
    return user


_BULK_REFUSED = "orders: a bad value (the rebuild is redone order by order to name it)"


def build_books_bulk(
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
    `build_books` runs 165 (1,000,000 orders: CPU 3.41 -> 2.55 s, medians of 3
    interleaved rounds on a loaded machine).

    Any bad value only raises a CorruptState that names nothing: the caller then redoes
    the rebuild entry by entry (`build_books`), which names the first bad key."""
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
        for raw in sorted(set(raws).difference(users)):  # sorted: no set order, ever
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
    `build_books` checks each order: O(values), in C.

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


def build_books(
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
                raise corrupt(key, "no such book or order id")
            book_asset, bids, asks, base_held = asset, {}, {}, {}
        if type(item) is not list or len(item) != 4:
            raise corrupt(key, "want an array of 4 items")
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
            raise corrupt(key, f"bad order {item!r}")
        if check_canonical and order_value(side, price, size, user_raw) != value:
            raise corrupt(key, "non-canonical CBOR value")
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
