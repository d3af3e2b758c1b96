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
    Event,
    Limit,
    Market,
    OrderPlaced,
    Receipt,
    Withdraw,
)
from state_machine import CoreStateMachine


def apply_block(state: CoreStateMachine, block: Block) -> BlockResult:
    """Apply every tx of `block` to `state`; raise BlockSchemaError (state untouched) first
    if the block is outside the schema."""
    block_bytes = encode_block_checked(block)
    block_hash = blake3.blake3(block_bytes).digest()
    receipts: list[Receipt] = []
    events: list[Event] = []
    add_receipt = receipts.append
    add_event = events.append
    add_events = events.extend
    limit = state.limit
    market = state.market
    cancel = state.cancel
    for tx in block.txs:
        t = type(tx)
        if t is Limit:
            assert isinstance(tx, Limit)
            result = limit(tx.user, tx.asset, tx.side, tx.price, tx.size, tx.tif)
            if result.ok:
                add_event(OrderPlaced(result.order_id, tx))  # type: ignore[arg-type]
                if result.fills:
                    add_events(result.fills)
                if result.cancellations:
                    add_events(result.cancellations)
        elif t is Cancel:
            assert isinstance(tx, Cancel)
            result = cancel(tx.user, tx.asset, tx.order_id)
            if result.ok:
                add_events(result.cancellations)
        elif t is Market:
            assert isinstance(tx, Market)
            result = market(tx.user, tx.asset, tx.side, tx.size)
            if result.ok:
                add_event(OrderPlaced(result.order_id, tx))  # type: ignore[arg-type]
                if result.fills:
                    add_events(result.fills)
                if result.cancellations:
                    add_events(result.cancellations)
        elif t is Deposit:
            assert isinstance(tx, Deposit)
            result = state.deposit(tx.user, tx.asset, tx.amount)
        else:
            assert isinstance(tx, Withdraw)
            result = state.withdraw(tx.user, tx.asset, tx.amount)
        add_receipt(result)
    return BlockResult(
        block.height, block.time, block_hash, tuple(receipts), tuple(events), None, block_bytes
    )
