"""History queries over the rows the block log writes: a user's or an order's fills and
orders, in execution order, paged by an opaque cursor (spec/store.md, "History").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import codec
from store import keys as K
from store.errors import CorruptStore, InvalidCursor, StoreError
from store.records import FillRecord, HistoryPage, OrderRecord


def encode_cursor(fill_after: int, order_after: int) -> str:
    return (fill_after.to_bytes(8, "big") + order_after.to_bytes(8, "big")).hex()


def decode_cursor(cursor: str | None) -> tuple[int, int]:
    if cursor is None:
        return 0, 0
    try:
        raw = bytes.fromhex(cursor)
    except ValueError:
        raw = b""
    if len(raw) != 16 or cursor != raw.hex():
        raise InvalidCursor(f"bad history cursor {cursor!r}")
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def order_record(db: Any, order_id: int, value: bytes | None) -> OrderRecord:
    """An order's history row with its fill total and status (O(its fills))."""
    placed, height = codec.decode_order(order_id, value)
    filled = 0
    for index in db.iterator(prefix=K.order_fill_prefix(order_id), include_key=False):
        filled += codec.decode_fill_size(order_id, index)
    cancel = db.get(K.cancel_key(order_id))
    reason = None
    if cancel is not None:
        reason, left, _ = codec.decode_cancel(order_id, cancel)
        status = "canceled"
        if filled + left != placed.size:
            raise CorruptStore(f"history of order {order_id}: fills and remainder disagree")
    elif filled == placed.size:
        status = "filled"
    elif filled < placed.size:
        status = "resting"
    else:
        raise CorruptStore(f"history of order {order_id}: filled more than its size")
    return OrderRecord(placed, height, filled, status, reason)


def _fill_records(db: Any, seqs: Sequence[int]) -> list[FillRecord]:
    get = db.get
    records = []
    for seq in seqs:
        fill, height = codec.decode_fill(seq, get(K.fill_key(seq)))
        records.append(FillRecord(seq, height, fill))
    return records


def _page_size(limit: int | None) -> int | None:
    if limit is None:
        return None
    if type(limit) is not int or limit < 1:
        raise StoreError(f"limit {limit!r} must be at least 1")
    return limit + 1  # one more than asked tells whether anything is left


def _scan_ids(db: Any, prefix: bytes, after: int, take: int | None) -> list[int]:
    ids: list[int] = []
    span = K.ids_after(prefix, after)
    if span is None:
        return ids
    start, stop = span
    for key in db.iterator(start=start, stop=stop, include_value=False):
        ids.append(K.tail_u64(key))
        if take is not None and len(ids) == take:
            break
    return ids


def _next_cursor(
    limit: int | None, fills: list[int], orders: list[int], fill_after: int, order_after: int
) -> tuple[str | None, list[int], list[int]]:
    if limit is None:
        return None, fills, orders
    more = len(fills) > limit or len(orders) > limit
    fills = fills[:limit]
    orders = orders[:limit]
    if not more:
        return None, fills, orders
    return (
        encode_cursor(fills[-1] if fills else fill_after, orders[-1] if orders else order_after),
        fills,
        orders,
    )


def order_history(
    db: Any, order_id: int, limit: int | None = None, after: str | None = None
) -> HistoryPage:
    """One order (as `orders`, one item) and its fills; paged like `user_history`."""
    K.check_u64("order id", order_id, 1)
    fill_after, order_after = decode_cursor(after)
    take = _page_size(limit)
    value = db.get(K.order_key(order_id))
    if value is None:
        return HistoryPage([], [], None)
    fill_seqs = _scan_ids(db, K.order_fill_prefix(order_id), fill_after, take)
    order_ids = [order_id] if order_after < order_id else []
    cursor, fill_seqs, order_ids = _next_cursor(
        limit, fill_seqs, order_ids, fill_after, order_after
    )
    orders = [order_record(db, order_id, value)] if order_ids else []
    return HistoryPage(_fill_records(db, fill_seqs), orders, cursor)


def user_history(
    db: Any, user_raw: bytes, limit: int | None = None, after: str | None = None
) -> HistoryPage:
    """A user's (20 address bytes) fills, as maker or taker, and orders, in execution order.

    With `limit`, at most `limit` of each and a cursor for the rest (None at the end).
    """
    fill_after, order_after = decode_cursor(after)
    take = _page_size(limit)
    fill_seqs = _scan_ids(db, K.user_fill_prefix(user_raw), fill_after, take)
    order_ids = _scan_ids(db, K.user_order_prefix(user_raw), order_after, take)
    cursor, fill_seqs, order_ids = _next_cursor(
        limit, fill_seqs, order_ids, fill_after, order_after
    )
    get = db.get
    orders = [order_record(db, order_id, get(K.order_key(order_id))) for order_id in order_ids]
    return HistoryPage(_fill_records(db, fill_seqs), orders, cursor)
