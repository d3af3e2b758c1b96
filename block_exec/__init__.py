"""Blocks and transactions: decoding, canonical encoding, validation, `apply_block`,
receipts, and the `Executor` (spec/blocks.md).

The names below are loaded on first use (PEP 562): every `coreledger` command imports this
package, and most need only a few of its modules (`coreledger state` has no use for the
encoder, the ABCI server or asyncio), so an eager import would cost each CLI call about
0.2 s of CPU.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        encode_block,
        encode_block_checked,
        encode_tx,
    )
    from block_exec.errors import (
        BlockDecodeError,
        BlockError,
        BlockMismatch,
        BlockSchemaError,
        BlockSequenceError,
    )
    from block_exec.executor import Executor
    from block_exec.receipts_json import (
        block_receipts_line,
        block_receipts_obj,
        receipt_to_json_obj,
    )
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

# Where each public name lives.
_MODULE_OF: dict[str, str] = {
    "Block": "block_exec.types",
    "BlockDecodeError": "block_exec.errors",
    "BlockError": "block_exec.errors",
    "BlockMismatch": "block_exec.errors",
    "BlockResult": "block_exec.types",
    "BlockSchemaError": "block_exec.errors",
    "BlockSequenceError": "block_exec.errors",
    "Cancel": "block_exec.types",
    "Deposit": "block_exec.types",
    "Event": "block_exec.types",
    "Executor": "block_exec.executor",
    "Limit": "block_exec.types",
    "Market": "block_exec.types",
    "OrderPlaced": "block_exec.types",
    "Receipt": "block_exec.types",
    "Tx": "block_exec.types",
    "Withdraw": "block_exec.types",
    "apply_block": "block_exec.apply",
    "block_from_obj": "block_exec.decode",
    "block_hash": "block_exec.encode",
    "block_receipts_line": "block_exec.receipts_json",
    "block_receipts_obj": "block_exec.receipts_json",
    "check_block_schema": "block_exec.validate",
    "check_sequence": "block_exec.validate",
    "decode_cbor_block": "block_exec.decode",
    "decode_json_block": "block_exec.decode",
    "encode_block": "block_exec.encode",
    "encode_block_checked": "block_exec.encode",
    "encode_tx": "block_exec.encode",
    "iter_blocks": "block_exec.decode",
    "iter_cbor_blocks": "block_exec.decode",
    "iter_json_blocks": "block_exec.decode",
    "read_block_file": "block_exec.decode",
    "read_block_stream": "block_exec.decode",
    "receipt_to_json_obj": "block_exec.receipts_json",
    "validate_block": "block_exec.validate",
}



def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'block_exec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

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
