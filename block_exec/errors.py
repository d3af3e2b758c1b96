"""Errors of the block layer: `BlockError`, for every refused block, under the project's
root `CoreledgerError` (state_machine/errors.py).

A `BlockError` refuses a whole block before any of it is applied; its message is one
line naming the block, the tx and the field, and the same facts are attributes
(`height`, `tx_index`, `field`; None where they do not apply or are unknown), so a caller
need not parse the message. Rejections of a single well-formed tx (insufficient balance,
...) are not errors: they are receipts.
"""

from __future__ import annotations

import re

from state_machine.errors import CoreledgerError

_FIELD = re.compile(r'field "([^"]*)"')


def field_named(problem: str) -> str | None:
    """The field a problem text of this package names (`field "price": ...`,
    `missing field "tif"`, `unknown field "x"`), or None. Used where an error is raised,
    so that callers read `BlockError.field` instead of the message."""
    match = _FIELD.search(problem)
    return None if match is None else match.group(1)


class BlockError(CoreledgerError):
    """A block that must be refused as a whole (nothing of it is applied).

    `height`: the block's height when it is known (an int read from the block);
    `tx_index`: the 0-based index of the offending tx in `txs`, None for a block field;
    `field`: the offending field's name (`"height"`, `"time"`, `"txs"`, `"amount"`, ...),
    None when the problem is not one field (bad JSON, an unknown op, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        height: int | None = None,
        tx_index: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.height = height
        self.tx_index = tx_index
        self.field = field


class BlockDecodeError(BlockError):
    """Bytes that are not a block: bad JSON or CBOR, non-canonical CBOR, schema errors."""


class BlockSchemaError(BlockError):
    """A constructed `Block` whose fields are outside the schema (spec/blocks.md)."""


class BlockSequenceError(BlockError):
    """A block that does not follow on: wrong height, or time going backwards."""


class BlockMismatch(BlockError):
    """A block at an already stored height that differs from the stored block."""
