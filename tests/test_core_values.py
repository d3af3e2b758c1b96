"""The hand-written CBOR of state values equals cbor2's (the reference decoder's) bytes."""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from state_machine.entries import encode_balance, encode_order, user_bytes
from state_machine.types import Order, Side
from state_machine.values import balance_value, order_value, uint

# Every boundary of the CBOR integer heads, and the range of each.
EDGES = [0, 23, 24, 255, 256, 4095, 4096, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
u64 = st.one_of(st.sampled_from(EDGES), st.integers(0, 2**64 - 1))
u256 = st.one_of(u64, st.sampled_from([2**64, 2**256 - 1]), st.integers(0, 2**256 - 1))


@given(u64)
def test_uint_is_cbor2s_encoding(n: int) -> None:
    assert uint(n) == cbor2.dumps(n)


@given(
    st.sampled_from([0, 1]), u64.filter(bool), u64.filter(bool),
    st.binary(min_size=20, max_size=20),
)
def test_order_value_is_cbor2s_encoding(side: int, price: int, size: int, user: bytes) -> None:
    assert order_value(side, price, size, user) == cbor2.dumps([side, price, size, user])


@given(u256, u256)
def test_balance_value_is_cbor2s_encoding(available: int, locked: int) -> None:
    assert balance_value(available, locked) == cbor2.dumps([available, locked])
    assert encode_balance(available, locked) == cbor2.dumps([available, locked])


def test_encode_order_takes_the_enum_side_and_the_address_bytes() -> None:
    user = "0x" + "ab" * 19 + "0f"
    order = Order(7, user, 3, Side.SELL, 1_000_001, 42)
    raw = bytes.fromhex("ab" * 19 + "0f")
    assert user_bytes(user) == raw
    assert encode_order(order) == cbor2.dumps([1, 1_000_001, 42, raw])
    # by hand: array(4), 1, uint32 head 0x1a + 000f4241, 0x18 2a, bytes(20)
    assert encode_order(order) == bytes.fromhex("8401" "1a000f4241" "182a" "54") + raw
