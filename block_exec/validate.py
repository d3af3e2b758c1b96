"""Checks a block without applying it (a consensus engine's proposal check).

`validate_block` is everything `Executor.apply_block` refuses a block for: the schema of
the block and of every tx, then the sequence (height, time). Both go through
`checked_block_bytes`, the one place that order is decided (spec/blocks.md section 3:
schema errors before sequence errors), so `Executor.validate` and
`Executor.apply_block` name the same error for the same block. State rejections
(insufficient balance, ...) are not checked here: they are receipts, decided only by
applying.
"""

from __future__ import annotations

from block_exec.encode import MAX_U64, encode_block_checked
from block_exec.errors import BlockSequenceError
from block_exec.types import Block


def check_sequence(block: Block, prev_height: int, prev_time: int) -> None:
    """Raise BlockSequenceError unless `block` follows a block at (prev_height, prev_time).

    Before the first block prev_height is 0 and prev_time is 0.
    """
    height = block.height
    if type(height) is not int or height != prev_height + 1:
        raise BlockSequenceError(
            f"block (height {height!r}): height is not the next one (want {prev_height + 1})",
            height=height if type(height) is int else None, field="height",
        )
    time = block.time
    if type(time) is not int or not 0 <= time <= MAX_U64:
        raise BlockSequenceError(
            f'block (height {height}): field "time": expected an integer in [0, 2^64-1], '
            f"got {time!r}",
            height=height, field="time",
        )
    if time < prev_time:
        raise BlockSequenceError(
            f"block (height {height}): time goes backwards ({time} < previous {prev_time})",
            height=height, field="time",
        )


def check_block_schema(block: Block) -> None:
    """Raise BlockSchemaError if any field of the block or its txs is outside the schema."""
    encode_block_checked(block)


def checked_block_bytes(block: Block, prev_height: int, prev_time: int) -> bytes:
    """The block's canonical CBOR, once it is checked to follow (prev_height, prev_time).

    The precedence of errors (spec/blocks.md section 3): the schema first (the block's own
    fields, then each tx in order: BlockSchemaError), then the sequence (height, then
    time: BlockSequenceError). A block wrong in both ways is refused for its schema.
    """
    block_bytes = encode_block_checked(block)
    check_sequence(block, prev_height, prev_time)
    return block_bytes


def validate_block(block: Block, prev_height: int, prev_time: int) -> None:
    """Raise a BlockError if `block` would be refused after (prev_height, prev_time)."""
    checked_block_bytes(block, prev_height, prev_time)
