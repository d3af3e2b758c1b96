"""Value encodings (spec/store.md, "Values").

Rows other than state entries are framed as `crc32(payload) u32 ‖ payload`, payload a
canonical CBOR array: the checksum turns a flipped byte anywhere, block bytes included,
into `CorruptStore` instead of a silently wrong answer. State entries need no checksum:
the state root covers them.

Every decoder raises `CorruptStore` (one line, naming the row) on anything malformed.
"""

from __future__ import annotations

import zlib

import cbor2

from state_machine import Cancellation, Fill
from state_machine.types import (
    MAX_AMOUNT,
    MAX_ASSET,
    CancelReason,
    OrderType,
    Side,
    Tif,
)
from state_machine.values import cbor_head
from store.errors import CorruptStore
from store.records import Canceled, CheckpointInfo, OrderPlaced, Roots, StoreBase, StoredBlock

TOMBSTONE = b"\x00"
PRESENT = b"\x01"
ZERO_HASH = bytes(32)


def frame(items: list[object]) -> bytes:
    payload = cbor2.dumps(items)
    return zlib.crc32(payload).to_bytes(4, "big") + payload


def unframe(
    what: str, value: bytes | None, length: int, longest: int | None = None
) -> list[object]:
    """Check the checksum and decode a CBOR array of `length` (to `longest`) items."""
    if value is None:
        raise CorruptStore(f"{what}: missing")
    if len(value) < 5 or zlib.crc32(value[4:]).to_bytes(4, "big") != value[:4]:
        raise CorruptStore(f"{what}: checksum mismatch (corrupt or truncated value)")
    try:
        items = cbor2.loads(value[4:])
    except Exception as exc:  # cbor2 raises several types on garbage
        raise CorruptStore(f"{what}: undecodable value ({type(exc).__name__})") from None
    if not isinstance(items, list) or not length <= len(items) <= (longest or length):
        raise CorruptStore(f"{what}: want an array of {length} items")
    return items


def uint(what: str, value: object, low: int = 0, high: int = MAX_AMOUNT) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CorruptStore(f"{what}: integer {value!r} out of range")
    return value


def raw(what: str, value: object, length: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        raise CorruptStore(f"{what}: want a byte string")
    return value


def address(what: str, value: object) -> str:
    return "0x" + raw(what, value, 20).hex()


def user_bytes(user: str) -> bytes:
    return bytes.fromhex(user[2:])


# -- a small exact CBOR encoder for the fixed row shapes of the write path ---------------
#
# `cbor2.dumps` of a short list costs ~1 us of call and dispatch; the history rows of a
# block (one per order, fill and cancellation) have fixed shapes of unsigned integers,
# 20-byte addresses, small enumerations and nulls, so they are written directly. The bytes
# are exactly cbor2's (tests/test_store_codec.py checks them against cbor2 for every shape
# and integer width); anything outside these shapes goes through cbor2.

_MAX_U64 = 2**64 - 1
_SMALL_UINT = tuple(cbor_head(0, n) for n in range(256))
_ADDRESS_HEAD = b"\x54"  # a byte string of 20
_NULL = b"\xf6"


def _uint(n: int) -> bytes:
    """The CBOR encoding of an integer as cbor2 writes it: 0 <= n <= 2^64-1 by
    `state_machine.values.cbor_head` (the project's one writer of CBOR heads; the 256
    smallest from a table), a negative or a bignum by cbor2."""
    if 0 <= n < 256:
        return _SMALL_UINT[n]
    if 0 <= n <= _MAX_U64:
        return cbor_head(0, n)
    return cbor2.dumps(n)


def _framed(payload: bytes) -> bytes:
    return zlib.crc32(payload).to_bytes(4, "big") + payload


# -- meta -------------------------------------------------------------------------------


def encode_head(height: int, block_hash: bytes, next_fill_seq: int) -> bytes:
    if len(block_hash) != 32:
        return frame([height, block_hash, next_fill_seq])
    return _framed(b"\x83" + _uint(height) + b"\x58\x20" + block_hash + _uint(next_fill_seq))


def decode_head(value: bytes | None) -> tuple[int, bytes, int]:
    height, block_hash, next_fill_seq = unframe("head", value, 3)
    return uint("head", height), raw("head", block_hash), uint("head", next_fill_seq, 1)


def encode_base(height: int, time: int, block_hash: bytes) -> bytes:
    return frame([height, time, block_hash])


def decode_base(value: bytes | None) -> StoreBase | None:
    if value is None:
        return None
    height, time, block_hash = unframe("base", value, 3)
    return StoreBase(uint("base", height, 1), uint("base", time), raw("base", block_hash, 32))


def decode_chain_id(value: bytes | None) -> str | None:
    """The meta row `00 "chain_id"` (network mode), None when absent."""
    if value is None:
        return None
    (chain_id,) = unframe("chain id", value, 1)
    try:
        return raw("chain id", chain_id).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptStore("chain id: not UTF-8") from None


# -- blocks -----------------------------------------------------------------------------


def encode_block(
    time: int,
    block_hash: bytes,
    prev_hash: bytes,
    block_bytes: bytes,
    receipts: bytes,
    auth: bytes = b"",
) -> bytes:
    """A block row; a network block's non-empty `auth` is a sixth item (spec/store.md)."""
    items: list[object] = [time, block_hash, prev_hash, block_bytes, receipts]
    if auth:
        items.append(auth)
    return frame(items)


def decode_block(height: int, value: bytes | None) -> StoredBlock:
    what = f"block {height}"
    items = unframe(what, value, 5, 6)
    auth = raw(what, items[5]) if len(items) == 6 else b""
    if len(items) == 6 and not auth:
        raise CorruptStore(f"{what}: an empty auth item is never stored")
    return StoredBlock(
        height,
        uint(what, items[0]),
        raw(what, items[1]),
        raw(what, items[2]),
        raw(what, items[3]),
        raw(what, items[4]),
        auth,
    )


# -- history ----------------------------------------------------------------------------


def encode_order(placed: OrderPlaced, height: int, user: bytes | None = None) -> bytes:
    """F[user, asset, side, type, tif, price, size, height]; `user` its 20 bytes if known."""
    return order_value(
        user_bytes(placed.user) if user is None else user,
        placed.asset,
        placed.side,
        placed.order_type,
        _NULL if placed.tif is None else _SMALL_UINT[placed.tif],
        _NULL if placed.price is None else _uint(placed.price),
        placed.size,
        _uint(height),
    )


def order_value(
    user: bytes, asset: int, side: int, order_type: int, tif: bytes, price: bytes, size: int,
    height: bytes,
) -> bytes:
    """The order row from its fields, `tif`, `price` and `height` already CBOR (the
    writer's packed path shares it with `encode_order`)."""
    return _framed(
        b"".join(
            (
                b"\x88" + _ADDRESS_HEAD,
                user,
                _uint(asset),
                _SMALL_UINT[side],
                _SMALL_UINT[order_type],
                tif,
                price,
                _uint(size),
                height,
            )
        )
    )


def decode_order(order_id: int, value: bytes | None) -> tuple[OrderPlaced, int]:
    what = f"history of order {order_id}"
    user, asset, side, order_type, tif, price, size, height = unframe(what, value, 8)
    kind = OrderType(uint(what, order_type, 0, 1))
    if kind == OrderType.LIMIT:
        tif_value: Tif | None = Tif(uint(what, tif, 0, 2))
        price_value: int | None = uint(what, price, 1)
    elif tif is None and price is None:
        tif_value = price_value = None
    else:
        raise CorruptStore(f"{what}: a market order with a tif or price")
    placed = OrderPlaced(
        order_id,
        address(what, user),
        uint(what, asset, 1, MAX_ASSET),
        Side(uint(what, side, 0, 1)),
        kind,
        tif_value,
        price_value,
        uint(what, size, 1),
    )
    return placed, uint(what, height, 1)


def encode_fill(
    fill: Fill, height: int, maker: bytes | None = None, taker: bytes | None = None
) -> bytes:
    """F[asset, maker_order_id, taker_order_id, maker, taker, price, size, taker_side,
    height]; `maker`, `taker` the addresses' 20 bytes if known."""
    return fill_value(
        fill.asset,
        fill.maker_order_id,
        fill.taker_order_id,
        user_bytes(fill.maker) if maker is None else maker,
        user_bytes(fill.taker) if taker is None else taker,
        fill.price,
        fill.size,
        fill.taker_side,
        _uint(height),
    )


def fill_value(
    asset: int, maker_order_id: int, taker_order_id: int, maker: bytes, taker: bytes,
    price: int, size: int, taker_side: int, height: bytes,
) -> bytes:
    """The fill row from its fields, `height` already CBOR (shared with `encode_fill`)."""
    return _framed(
        b"".join(
            (
                b"\x89",
                _uint(asset),
                _uint(maker_order_id),
                _uint(taker_order_id),
                _ADDRESS_HEAD,
                maker,
                _ADDRESS_HEAD,
                taker,
                _uint(price),
                _uint(size),
                _SMALL_UINT[taker_side],
                height,
            )
        )
    )


def decode_fill(seq: int, value: bytes | None) -> tuple[Fill, int]:
    what = f"history fill {seq}"
    asset, maker_id, taker_id, maker, taker, price, size, side, height = unframe(what, value, 9)
    fill = Fill(
        uint(what, asset, 1, MAX_ASSET),
        uint(what, maker_id, 1),
        uint(what, taker_id, 1),
        address(what, maker),
        address(what, taker),
        uint(what, price, 1),
        uint(what, size, 1),
        Side(uint(what, side, 0, 1)),
    )
    return fill, uint(what, height, 1)


def encode_fill_size(size: int) -> bytes:
    return size.to_bytes(8, "big")


def decode_fill_size(order_id: int, value: bytes) -> int:
    if len(value) != 8:
        raise CorruptStore(f"history of order {order_id}: bad fill index entry")
    return int.from_bytes(value, "big")


def encode_cancel(cancellation: Cancellation | Canceled, height: int) -> bytes:
    return cancel_value(cancellation.reason, cancellation.size, _uint(height))


def cancel_value(reason: int, size: int, height: bytes) -> bytes:
    """The cancellation row, `height` already CBOR (shared with `encode_cancel`)."""
    return _framed(b"\x83" + _SMALL_UINT[reason] + _uint(size) + height)


uint_head = _uint  # the CBOR of 0 <= n <= 2^64-1, as the row encoders write it

NULL = _NULL
SMALL_UINT = _SMALL_UINT


def decode_cancel(order_id: int, value: bytes | None) -> tuple[CancelReason, int, int]:
    what = f"cancellation of order {order_id}"
    reason, size, height = unframe(what, value, 3)
    return CancelReason(uint(what, reason, 0, 3)), uint(what, size, 1), uint(what, height, 1)


# -- checkpoints ------------------------------------------------------------------------


def encode_checkpoint(info: CheckpointInfo) -> bytes:
    namespaces = [[namespace, root] for namespace, root in info.roots.namespaces]
    return frame(
        [info.block_hash, info.roots.root, namespaces, info.entry_count, info.changed_count]
    )


def decode_checkpoint(height: int, value: bytes | None) -> CheckpointInfo:
    what = f"checkpoint {height}"
    block_hash, root, namespaces, entry_count, changed_count = unframe(what, value, 5)
    if not isinstance(namespaces, list):
        raise CorruptStore(f"{what}: bad namespace roots")
    pairs: list[tuple[bytes, bytes]] = []
    for pair in namespaces:
        if not isinstance(pair, list) or len(pair) != 2:
            raise CorruptStore(f"{what}: bad namespace roots")
        pairs.append((raw(what, pair[0]), raw(what, pair[1])))
    return CheckpointInfo(
        height,
        raw(what, block_hash),
        Roots(raw(what, root), tuple(pairs)),
        uint(what, entry_count),
        uint(what, changed_count),
    )
