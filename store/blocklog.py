"""The block log: the rows one applied block adds (its block row, its history rows and the
new head) and the chained reading of stored blocks (spec/store.md, "Blocks", "History").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from state_machine import OrderType
from state_machine.values import CBOR_U32_HEAD
from store import codec
from store import keys as K
from store.errors import BlockConflict, CorruptStore, StoreError
from store.records import MARKET_TIF, BlockRecord, PackedHistory, StoredBlock

Row = tuple[bytes, bytes]


def block_rows(record: BlockRecord, prev_hash: bytes, next_fill_seq: int) -> tuple[list[Row], int]:
    """Every row `record` adds, the head last, and the next fill sequence number after it.

    All rows are built first so the caller writes them in one C-level loop of puts: the
    per-put Python overhead (a closure call, address decoding per row) was a third of the
    cost of persisting a busy block. Addresses are decoded once per block.
    Cost: O(orders + fills + cancellations) of the block.
    """
    height = record.height
    user_raw: dict[str, bytes] = {}
    for placed in record.placed:
        if placed.user not in user_raw:
            user_raw[placed.user] = codec.user_bytes(placed.user)
    for fill in record.fills:
        for user in (fill.maker, fill.taker):
            if user not in user_raw:
                user_raw[user] = codec.user_bytes(user)
    rows: list[Row] = [
        (
            K.block_key(height),
            codec.encode_block(
                record.time,
                record.block_hash,
                prev_hash,
                record.block_bytes,
                record.receipts,
                record.auth,
            ),
        )
    ]
    add = rows.append
    if record.history is not None:
        seq = _packed_history_rows(height, record.history, add, next_fill_seq)
        add((K.HEAD_KEY, codec.encode_head(height, record.block_hash, seq)))
        return rows, seq
    for placed in record.placed:
        order_id = placed.order_id
        K.check_u64("order id", order_id, 1)
        owner = user_raw[placed.user]
        add((K.order_key(order_id), codec.encode_order(placed, height, owner)))
        add((K.user_order_key(owner, order_id), b""))
    seq = next_fill_seq
    for fill in record.fills:
        size = codec.encode_fill_size(fill.size)
        maker = user_raw[fill.maker]
        taker = user_raw[fill.taker]
        add((K.fill_key(seq), codec.encode_fill(fill, height, maker, taker)))
        add((K.order_fill_key(fill.maker_order_id, seq), size))
        add((K.order_fill_key(fill.taker_order_id, seq), size))
        add((K.user_fill_key(maker, seq), b""))
        add((K.user_fill_key(taker, seq), b""))
        seq += 1
    for cancellation in record.cancellations:
        add((K.cancel_key(cancellation.order_id), codec.encode_cancel(cancellation, height)))
    add((K.HEAD_KEY, codec.encode_head(height, record.block_hash, seq)))
    return rows, seq


Tip = tuple[int, bytes, int]  # a head: height, block hash, next fill sequence number


def blocks_rows(records: Sequence[BlockRecord], tip: Tip) -> tuple[list[Row], Tip]:
    """The rows of consecutive blocks above the head `tip` (one batch), and the head
    after them; BlockConflict for a gap."""
    head, head_hash, next_fill_seq = tip
    rows: list[Row] = []
    for record in records:
        if record.height != head + 1:
            raise BlockConflict(f"block {record.height} leaves a gap: the head is {head}")
        K.check_u64("time", record.time)
        block_rows_, next_fill_seq = block_rows(record, head_hash, next_fill_seq)
        rows += block_rows_
        head, head_hash = record.height, record.block_hash
    return rows, (head, head_hash, next_fill_seq)


# Fixed-width pieces of the history rows (big-endian, as `store.keys` lays them out): a
# table prefix and one or two u64s, a CRC32 frame head (and the 5-byte CBOR head of a u32
# argument: `state_machine.values.CBOR_U32_HEAD`).
_KEY_U64 = struct.Struct(">BQ").pack
_KEY_U64_U64 = struct.Struct(">BQQ").pack
_U64 = struct.Struct(">Q").pack
_CRC = struct.Struct(">I").pack


def _packed_history_rows(
    height: int, history: PackedHistory, add: Callable[[Row], None], seq: int
) -> int:
    """The history rows of a PackedHistory, in `block_rows`'s order and bytes; returns
    the next fill sequence number.

    The pipelined writer's hot path (about 165 rows a block, the largest share of the
    writer's own CPU): no event objects, one address decoding per user and block, the
    height's CBOR once, and the keys and values of `store.keys` / `store.codec` written
    out inline, because a Python call per key and per value field was half of the cost
    of a row. The events are read by zipping one iterator (no slices, no index
    arithmetic), the fixed-width keys are packed by `struct` in one call each, and a CBOR
    integer takes the table below 256, `struct` for a u32 argument and `codec.uint_head`
    only beyond. tests/test_store_pipeline.py checks these rows against the codec's, row
    for row, over a simulated flow. Cost: O(orders + fills + cancellations).
    """
    numbers, users = history.numbers, history.users
    n_orders, n_fills, n_cancels = numbers[0], numbers[1], numbers[2]
    if len(numbers) != 3 + 6 * (n_orders + n_fills) + 3 * n_cancels or len(users) != 42 * (
        n_orders + 2 * n_fills
    ):
        raise StoreError(f"block {height}: malformed packed history")
    # Each user slot's 20 bytes, decoded once per distinct user of the block.
    user_raw: dict[str, bytes] = {}
    owners: list[bytes] = []
    for i in range(0, len(users), 42):
        user = users[i : i + 42]
        raw = user_raw.get(user)
        if raw is None:
            raw = user_raw[user] = codec.user_bytes(user)
        owners.append(raw)
    at_height = codec.uint_head(height)
    uint, small, crc32, key, key2, u64, crc, u32 = (
        codec.uint_head, codec.SMALL_UINT, zlib.crc32, _KEY_U64, _KEY_U64_U64, _U64, _CRC,
        CBOR_U32_HEAD,
    )
    # Value heads: CBOR array of 8 with the user's byte-string head; the order type with
    # the tif and price of a market order (null, null).
    order_head = b"\x88\x54"
    limit_type, market_tail = small[OrderType.LIMIT], small[OrderType.MARKET] + codec.NULL * 2
    order_table, user_order, fill_table = K.ORDER[0], K.USER_ORDER, K.FILL[0]
    order_fill, user_fill, cancel_table = K.ORDER_FILL[0], K.USER_FILL, K.CANCEL[0]
    events = iter(numbers)
    next(events), next(events), next(events)  # the counts
    orders = zip(*(events,) * 6, owners, strict=False)  # owners: then the fills' users
    for order_id, asset, side, tif, price, size, owner in islice(orders, n_orders):
        if order_id < 1:
            K.check_u64("order id", order_id, 1)
        order_key = key(order_table, order_id)
        if tif == MARKET_TIF:
            tail = market_tail
        else:
            tail = limit_type + small[tif] + (
                u32(0x1A, price) if 0xFFFF < price <= 0xFFFFFFFF else uint(price)
            )
        payload = b"".join((
            order_head, owner, small[asset] if asset < 256 else uint(asset), small[side], tail,
            small[size] if size < 256 else uint(size), at_height,
        ))
        add((order_key, crc(crc32(payload)) + payload))
        add((user_order + owner + order_key[1:], b""))
    fill_users = iter(owners[n_orders:])
    fills = zip(*(events,) * 6, fill_users, fill_users, strict=False)
    for asset, maker_id, taker_id, price, size, side, maker, taker in islice(fills, n_fills):
        fill_size = u64(size)
        seq_bytes = u64(seq)
        payload = b"".join((
            b"\x89", small[asset] if asset < 256 else uint(asset),
            u32(0x1A, maker_id) if 0xFFFF < maker_id <= 0xFFFFFFFF else uint(maker_id),
            u32(0x1A, taker_id) if 0xFFFF < taker_id <= 0xFFFFFFFF else uint(taker_id),
            b"\x54", maker, b"\x54", taker,
            u32(0x1A, price) if 0xFFFF < price <= 0xFFFFFFFF else uint(price),
            small[size] if size < 256 else uint(size), small[side], at_height,
        ))
        add((key(fill_table, seq), crc(crc32(payload)) + payload))
        add((key2(order_fill, maker_id, seq), fill_size))
        add((key2(order_fill, taker_id, seq), fill_size))
        add((user_fill + maker + seq_bytes, b""))
        add((user_fill + taker + seq_bytes, b""))
        seq += 1
    for order_id, reason, size in islice(zip(*(events,) * 3, strict=False), n_cancels):
        payload = b"\x83" + small[reason] + (small[size] if size < 256 else uint(size)) + at_height
        add((key(cancel_table, order_id), crc(crc32(payload)) + payload))
    return seq


def read_block(db: Any, height: int) -> StoredBlock:
    return codec.decode_block(height, db.get(K.block_key(height)))


def chained_blocks(db: Any, height: int, prev_hash: bytes, head: int) -> Iterator[StoredBlock]:
    """The stored blocks above `height` (whose hash is `prev_hash`) up to `head`, in order,
    checking that each is present and chains to the one before."""
    expected = height + 1
    if expected > head:
        return
    for key, value in db.iterator(start=K.block_key(expected), stop=K.BLOCK_END):
        block_height = K.table_id(key)
        if block_height != expected or len(key) != K.TABLE_KEY_LEN:
            raise CorruptStore(f"block {expected} is missing (found {key.hex()})")
        block = codec.decode_block(block_height, value)
        if block.prev_hash != prev_hash:
            raise CorruptStore(f"block {block_height} does not chain to block {height}")
        yield block
        prev_hash = block.block_hash
        height = block_height
        expected += 1
        if block_height == head:
            return
    raise CorruptStore(f"block {expected} is missing: the head is {head}")

