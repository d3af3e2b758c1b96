"""The one exception family raised by `merkle`."""

from __future__ import annotations


class MerkleError(Exception):
    """Base class of every error `merkle` raises on purpose."""


class InvalidEntryError(MerkleError, TypeError):
    """A key, value or namespace is not a byte string (bytes, bytearray or memoryview)."""


class ProofFormatError(MerkleError, ValueError):
    """Proof bytes (or a proof object) are not in the canonical format of spec/merkle.md."""
