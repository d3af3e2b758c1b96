"""`apply_block`: apply a schema-valid block's txs to the core, in order.

The block is checked (and hashed) first, so a schema error applies nothing; each tx then
either applies or is rejected with a receipt, and the block goes on (contract: Bad input).
Height and time sequencing is the executor's job: this function knows no previous block.
"""

from __future__ import annotations

import blake3

from block_exec.encode import encode_block_checked
from block_exec.types import (
    Block,
    BlockResult,
    Cancel,
    Deposit,
    Limit,
    Market,
    Receipt,
    Withdraw,
)
from merkle import NamespacedCommitment
from state_machine import CoreStateMachine, namespace_of, state_entries


def full_state_root(state: CoreStateMachine) -> bytes:
    """The state root computed from scratch over every entry: O(state).

    `Executor` keeps the same root incrementally; this is for a caller without one.
    """
    entries = state_entries(state)
    return NamespacedCommitment((namespace_of(key), key, value) for key, value in entries).root()


def apply_block(
    state: CoreStateMachine,
    block: Block,
    checkpoint_interval: int | None = None,
    *,
    block_bytes: bytes | None = None,
) -> BlockResult:
    """Apply every tx of `block` to `state`; raise BlockSchemaError (state untouched) first
    if the block is outside the schema.

    With `checkpoint_interval`, the result carries the state root when the block's height
    is a multiple of it (computed from scratch: `Executor` keeps it incrementally).
    `block_bytes`: the block's canonical CBOR from `validate.checked_block_bytes`, for a
    caller that has checked the block already (the check is then not repeated).
    """
    if block_bytes is None:
        block_bytes = encode_block_checked(block)
    block_hash = blake3.blake3(block_bytes).digest()
    receipts: list[Receipt] = []
    add_receipt = receipts.append
    limit = state.limit
    market = state.market
    cancel = state.cancel
    for tx in block.txs:
        t = type(tx)
        if t is Limit:
            assert isinstance(tx, Limit)
            add_receipt(limit(tx.user, tx.asset, tx.side, tx.price, tx.size, tx.tif))
        elif t is Cancel:
            assert isinstance(tx, Cancel)
            add_receipt(cancel(tx.user, tx.asset, tx.order_id))
        elif t is Market:
            assert isinstance(tx, Market)
            add_receipt(market(tx.user, tx.asset, tx.side, tx.size))
        elif t is Deposit:
            assert isinstance(tx, Deposit)
            add_receipt(state.deposit(tx.user, tx.asset, tx.amount))
        else:
            assert isinstance(tx, Withdraw)
            add_receipt(state.withdraw(tx.user, tx.asset, tx.amount))
    result = BlockResult(
        block.height, block.time, block_hash, tuple(receipts), block.txs, None, block_bytes
    )
    if checkpoint_interval is not None and block.height % checkpoint_interval == 0:
        result.state_root = full_state_root(state)
    return result
