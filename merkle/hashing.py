"""Hashing and domain separation of the sparse Merkle tree (spec/merkle.md, "Hashing").

A leaf and an inner node can never be confused: their preimages start with different bytes
(0x00 and 0x01), and EMPTY (32 zero bytes) is not a blake3 output anyone can find a preimage of.
"""

from __future__ import annotations

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY = bytes(HASH_SIZE)
"""Hash of a subtree holding no leaf."""

MAX_DEPTH = 256
"""A path is the 256 bits of blake3(key): no leaf or proof can be deeper."""

