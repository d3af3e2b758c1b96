"""Canonical CBOR of the two fixed-shape state values, written out by hand.

`changed_entries` encodes one value per order and account a block touched, so this is on
the apply path of every block (about two values per tx). `cbor2.dumps` of a small array
costs ~1 us; these functions build the same bytes from a few table lookups and one
`bytes` concatenation. Tests check them byte for byte against `cbor2.dumps` (the
reference, and what `machine_from_entries` decodes with) over the whole domain,
including the bignum form of balances past 2^64-1, which is delegated to cbor2.

- an order:   [side, price, size, user(20 bytes)]  (side 0/1, price and size < 2^64)
- an account: [available, locked]                   (each < 2^256)
"""

from __future__ import annotations

import struct

import cbor2

_MAX_U64 = 2**64 - 1


def cbor_head(major: int, n: int) -> bytes:
    """The shortest CBOR head of major type `major` (0 unsigned int, 2 byte string, 4
    array, ...) with argument 0 <= n <= 2^64-1: the project's one writer of CBOR heads
    (the encoders of blocks and of snapshot chunks use it too)."""
    base = major << 5
    if n < 24:
        return bytes((base | n,))
    if n < 0x100:
        return bytes((base | 24, n))
    if n < 0x10000:
        return bytes((base | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((base | 26,)) + n.to_bytes(4, "big")
    return bytes((base | 27,)) + n.to_bytes(8, "big")


CBOR_U32_HEAD = struct.Struct(">BI").pack
"""`CBOR_U32_HEAD(0x1A, n)` is `cbor_head(0, n)` for 0x10000 <= n <= 0xFFFFFFFF (the 5-byte
head) in one C call, where `cbor_head` is a Python call plus `to_bytes` and a concatenation:
for the hot paths that write such heads inline (the block decoder's order ids, the writer's
history rows: ids, prices and heights of a busy chain pass 2^16 early)."""


# The encodings of the integers below 4096 (order sizes and small balances), ~150 kB.
_SMALL = tuple(cbor_head(0, n) for n in range(1 << 12))


def uint(n: int) -> bytes:
    """The canonical CBOR of an unsigned integer 0 <= n <= 2^64-1: O(1)."""
    if n < 4096:
        return _SMALL[n]
    if n < 0x10000:
        return b"\x19" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x1a" + n.to_bytes(4, "big")
    return b"\x1b" + n.to_bytes(8, "big")


_ORDER_HEAD = (b"\x84\x00", b"\x84\x01")  # array(4), side
_USER_HEAD = b"\x54"  # byte string of 20 bytes


def order_value(side: int, price: int, size: int, user_raw: bytes) -> bytes:
    """CBOR [side, price, size, user]: side 0 or 1, 0 < price, size < 2^64, user 20 bytes."""
    return b"".join((_ORDER_HEAD[side], uint(price), uint(size), _USER_HEAD, user_raw))


def balance_value(available: int, locked: int) -> bytes:
    """CBOR [available, locked] for balances 0 <= x < 2^256 (bignums past 2^64-1)."""
    if available > _MAX_U64 or locked > _MAX_U64:
        return cbor2.dumps([available, locked])
    return b"\x82" + uint(available) + uint(locked)
