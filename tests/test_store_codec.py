"""The write path's own CBOR encoder for history rows writes exactly cbor2's bytes.

The reference is `cbor2.dumps` of the row's array (spec/store.md: `F[...]` is crc32 of
the payload then the payload), built here from the row's fields, never by the encoder
under test; integers are drawn at every CBOR width boundary.
"""

from __future__ import annotations

import zlib

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from state_machine import Cancellation, CancelReason, Fill, OrderType, Side, Tif
from store import OrderPlaced, codec

U64 = 2**64 - 1
BOUNDARIES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64]
uints = st.one_of(st.sampled_from(BOUNDARIES), st.integers(0, U64))
positive = st.one_of(st.sampled_from(BOUNDARIES[1:]), st.integers(1, U64))
assets = st.one_of(st.sampled_from([1, 23, 24, 255, 256, 2**32 - 1]), st.integers(1, 2**32 - 1))
addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())


def reference(items: list[object]) -> bytes:
    payload = cbor2.dumps(items)
    return zlib.crc32(payload).to_bytes(4, "big") + payload


@given(
    user=addresses, asset=assets, side=st.sampled_from(Side), limit=st.booleans(),
    tif=st.sampled_from(Tif), price=positive, size=positive, height=positive, order_id=positive,
)
def test_order_rows_equal_cbor2(
    user: str, asset: int, side: Side, limit: bool, tif: Tif, price: int, size: int,
    height: int, order_id: int,
) -> None:
    kind = OrderType.LIMIT if limit else OrderType.MARKET
    placed = OrderPlaced(
        order_id, user, asset, side, kind, tif if limit else None, price if limit else None, size
    )
    expected = reference(
        [
            bytes.fromhex(user[2:]), asset, int(side), int(kind),
            int(tif) if limit else None, price if limit else None, size, height,
        ]
    )
    assert codec.encode_order(placed, height) == expected
    assert codec.encode_order(placed, height, bytes.fromhex(user[2:])) == expected
    assert codec.decode_order(order_id, expected) == (placed, height)


@given(
    asset=assets, maker_id=positive, taker_id=positive, maker=addresses, taker=addresses,
    price=positive, size=positive, side=st.sampled_from(Side), height=positive,
)
def test_fill_rows_equal_cbor2(
    asset: int, maker_id: int, taker_id: int, maker: str, taker: str, price: int, size: int,
    side: Side, height: int,
) -> None:
    fill = Fill(asset, maker_id, taker_id, maker, taker, price, size, side)
    expected = reference(
        [
            asset, maker_id, taker_id, bytes.fromhex(maker[2:]), bytes.fromhex(taker[2:]),
            price, size, int(side), height,
        ]
    )
    assert codec.encode_fill(fill, height) == expected
    raw = (bytes.fromhex(maker[2:]), bytes.fromhex(taker[2:]))
    assert codec.encode_fill(fill, height, *raw) == expected
    assert codec.decode_fill(7, expected) == (fill, height)


@given(reason=st.sampled_from(CancelReason), size=positive, height=positive, order_id=positive)
def test_cancel_rows_equal_cbor2(
    reason: CancelReason, size: int, height: int, order_id: int
) -> None:
    cancellation = Cancellation(order_id, "0x" + "11" * 20, 1, Side.BUY, 5, size, reason)
    expected = reference([int(reason), size, height])
    assert codec.encode_cancel(cancellation, height) == expected
    assert codec.decode_cancel(order_id, expected) == (reason, size, height)


@given(height=uints, block_hash=st.binary(min_size=0, max_size=40), seq=positive)
def test_head_rows_equal_cbor2(height: int, block_hash: bytes, seq: int) -> None:
    expected = reference([height, block_hash, seq])
    assert codec.encode_head(height, block_hash, seq) == expected


def test_integers_at_every_width() -> None:
    # Hand-written CBOR heads (RFC 8949 3.1): the shortest form at each boundary.
    cancel = Cancellation(1, "0x" + "11" * 20, 1, Side.BUY, 5, 1, CancelReason.USER)
    for value, head in [
        (1, "01"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"),
        (65536, "1a00010000"), (2**32, "1b0000000100000000"), (U64, "1bffffffffffffffff"),
    ]:
        row = codec.encode_cancel(cancel, value)
        assert row[4:].hex() == "830001" + head
