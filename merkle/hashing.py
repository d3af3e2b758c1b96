"""Hashing and domain separation of the sparse Merkle tree (spec/merkle.md, "Hashing").

A leaf and an inner node can never be confused: their preimages start with different bytes
(0x00 and 0x01), and EMPTY (32 zero bytes) is not a blake3 output anyone can find a preimage of.
"""

from __future__ import annotations

from blake3 import blake3

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY = bytes(HASH_SIZE)
"""Hash of a subtree holding no leaf."""

MAX_DEPTH = 256
"""A path is the 256 bits of blake3(key): no leaf or proof can be deeper."""


def key_hash(key: bytes) -> bytes:
    """The 256-bit path of `key`, read most significant bit first."""
    return blake3(key).digest()


def value_hash(value: bytes) -> bytes:
    return blake3(value).digest()


def leaf_hash(key_hash_: bytes, value_hash_: bytes) -> bytes:
    """Hash of a leaf, from its key hash and value hash (not from the raw key and value)."""
    return blake3(LEAF_PREFIX + key_hash_ + value_hash_).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node from the hashes of its two children."""
    return blake3(NODE_PREFIX + left + right).digest()


def entry_hash(key: bytes, value: bytes) -> bytes:
    """Leaf hash of the entry `key -> value`."""
    return blake3(LEAF_PREFIX + blake3(key).digest() + blake3(value).digest()).digest()
