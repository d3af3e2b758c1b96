"""Canonical CBOR (RFC 8949 §4.2.1) of the few types spec/ uses, from the spec's byte rules.

Unsigned integers in the shortest head, integers >= 2^64 as tag 2 with a minimal-length
big-endian byte string (spec/state.md §10), byte and text strings, arrays, null, and maps
with their keys sorted by their encoded bytes. Definite lengths only; nothing else.
"""

from __future__ import annotations

CborValue = int | bytes | str | list["CborValue"] | dict[str, "CborValue"] | None


def head(major: int, n: int) -> bytes:
    """The initial byte(s) of an item of major type `major` with argument 0 <= n < 2^64."""
    if n < 24:
        return bytes((major << 5 | n,))
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes((major << 5 | info,)) + n.to_bytes(width, "big")
    raise ValueError(f"{n} needs a bignum")


def encode(value: CborValue) -> bytes:
    if value is None:
        return b"\xf6"
    if isinstance(value, bool):
        raise TypeError("no booleans in coreledger's CBOR")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("unsigned integers only")
        if value < 1 << 64:
            return head(0, value)
        magnitude = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return b"\xc2" + head(2, len(magnitude)) + magnitude
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(encode(item) for item in value)
    pairs = sorted((encode(key), encode(item)) for key, item in value.items())
    return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
