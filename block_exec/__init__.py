"""Blocks and transactions: decoding, canonical encoding, validation, `apply_block`,
receipts, and the `Executor` (spec/blocks.md)."""

from block_exec.apply import apply_block
from block_exec.decode import (
    block_from_obj,
    decode_cbor_block,
    decode_json_block,
    iter_blocks,
    iter_cbor_blocks,
    iter_json_blocks,
    read_block_file,
    read_block_stream,
)
from block_exec.encode import (
    block_hash,
    block_receipts_line,
    block_receipts_obj,
    encode_block,
    encode_block_checked,
    encode_tx,
    receipt_to_json_obj,
)
from block_exec.errors import (
    BlockDecodeError,
    BlockError,
    BlockMismatch,
    BlockSchemaError,
    BlockSequenceError,
)
from block_exec.executor import Executor
from block_exec.types import (
    Block,
    BlockResult,
    Cancel,
    Deposit,
    Event,
    Limit,
    Market,
    OrderPlaced,
    Receipt,
    Tx,
    Withdraw,
)
from block_exec.validate import check_block_schema, check_sequence, validate_block

__all__ = [
    "Block",
    "BlockDecodeError",
    "BlockError",
    "BlockMismatch",
    "BlockResult",
    "BlockSchemaError",
    "BlockSequenceError",
    "Cancel",
    "Deposit",
    "Event",
    "Executor",
    "Limit",
    "Market",
    "OrderPlaced",
    "Receipt",
    "Tx",
    "Withdraw",
    "apply_block",
    "block_from_obj",
    "block_hash",
    "block_receipts_line",
    "block_receipts_obj",
    "check_block_schema",
    "check_sequence",
    "decode_cbor_block",
    "decode_json_block",
    "encode_block",
    "encode_block_checked",
    "encode_tx",
    "iter_blocks",
    "iter_cbor_blocks",
    "iter_json_blocks",
    "read_block_file",
    "read_block_stream",
    "receipt_to_json_obj",
    "validate_block",
]
