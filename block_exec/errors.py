"""Errors of the block layer: one base class, `BlockError`, for every refused block.

A `BlockError` refuses a whole block before any of it is applied; its message is one
line naming the block, the tx and the field. Rejections of a single well-formed tx
(insufficient balance, ...) are not errors: they are receipts.
"""

from __future__ import annotations


class BlockError(Exception):
    """A block that must be refused as a whole (nothing of it is applied)."""


class BlockDecodeError(BlockError):
    """Bytes that are not a block: bad JSON or CBOR, non-canonical CBOR, schema errors."""


class BlockSchemaError(BlockError):
    """A constructed `Block` whose fields are outside the schema (spec/blocks.md)."""


class BlockSequenceError(BlockError):
    """A block that does not follow on: wrong height, or time going backwards."""
