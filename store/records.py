"""What the store accepts per block and per checkpoint, and what its queries return.

The store knows nothing of block formats: a block arrives as opaque canonical bytes, its
hash and its encoded receipts, plus history events built from `state_machine` types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from state_machine import Cancellation, Fill
from state_machine.types import (
    CANCEL_REASON_NAMES,
    ORDER_TYPE_NAMES,
    SIDE_NAMES,
    TIF_NAMES,
    Address,
    CancelReason,
    OrderType,
    Side,
    Tif,
)

Entry = tuple[bytes, bytes]
Change = tuple[bytes, bytes | None]
JSON = dict[str, object]


@dataclass(slots=True)  # not frozen: one per order on the write path (5x cheaper)
class OrderPlaced:
    """An accepted limit or market order, as sent (`size` is the original size)."""

    order_id: int
    user: Address
    asset: int
    side: Side
    order_type: OrderType
    tif: Tif | None  # None for a market order
    price: int | None  # None for a market order
    size: int


class Canceled(NamedTuple):
    """What history keeps of a cancellation (row `23`), all a pipelined writer is sent;
    a `state_machine.Cancellation` has the same three fields."""

    order_id: int
    reason: CancelReason
    size: int  # what was left unfilled


MARKET_TIF = 255  # in a PackedHistory order: a market order (no tif, no price)


@dataclass(frozen=True, slots=True)
class PackedHistory:
    """A block's history events as integers, and the users they name: the form a
    pipelined executor hands them to its writer process in (cheaper to build there and
    to read here than objects; the rows are the same).

    `numbers`: the counts of orders, fills and cancellations, then per order `order_id,
    asset, side, tif (MARKET_TIF: a market order), price (0: market), size`, per fill
    `asset, maker_order_id, taker_order_id, price, size, taker_side`, per cancellation
    `order_id, reason, size`. `users`: per order its user, then per fill its maker and
    its taker, 42 characters each.
    """

    numbers: Sequence[int]
    users: str


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One applied block: opaque bytes for replay plus its history events in tx order."""

    height: int
    time: int
    block_hash: bytes
    block_bytes: bytes
    receipts: bytes
    placed: Sequence[OrderPlaced]
    fills: Sequence[Fill]
    cancellations: Sequence[Cancellation | Canceled]
    auth: bytes = b""  # network mode: who signed each tx (opaque here; empty otherwise)
    # The same events packed (then placed, fills and cancellations are empty).
    history: PackedHistory | None = None


@dataclass(frozen=True, slots=True)
class Roots:
    """A state root and the root of each namespace (sorted by namespace) under it."""

    root: bytes
    namespaces: tuple[tuple[bytes, bytes], ...]


ComputeRoots = Callable[[Sequence[Entry]], Roots]
"""Recomputes the roots of a full state given as canonical entries sorted by key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state at `height`: the entries changed since the previous checkpoint, and roots.

    `changes` is what `state_machine.changed_entries` returns (None = removed); it may list
    keys whose value did not change: the store writes only real changes.
    """

    height: int
    changes: Sequence[Change]
    roots: Roots


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    height: int
    block_hash: bytes
    roots: Roots
    entry_count: int  # entries in the state at `height`
    changed_count: int  # entries written (changed or removed) by this checkpoint


@dataclass(frozen=True, slots=True)
class StoreBase:
    """Where a store restored from a snapshot starts: no block at or below `height`."""

    height: int
    time: int  # the block time of `height`
    block_hash: bytes  # the block hash of `height`: the next block's prev_hash


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    time: int
    block_hash: bytes
    prev_hash: bytes
    block_bytes: bytes
    receipts: bytes
    auth: bytes = b""  # network mode: the block's auth as stored (empty otherwise)


@dataclass(frozen=True, slots=True)
class FillRecord:
    """A fill in history: contract `F+`."""

    seq: int  # global execution order, from 1
    height: int
    fill: Fill

    def to_json(self) -> JSON:
        fill = self.fill
        return {
            "maker_order_id": fill.maker_order_id,
            "taker_order_id": fill.taker_order_id,
            "maker": fill.maker,
            "taker": fill.taker,
            "price": fill.price,
            "size": fill.size,
            "asset": fill.asset,
            "height": self.height,
            "taker_side": SIDE_NAMES[fill.taker_side],
        }


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order in history: contract `O`, with status and filled size derived at query time."""

    placed: OrderPlaced
    height: int
    filled: int
    status: str  # "resting" | "filled" | "canceled"
    cancel_reason: CancelReason | None

    def to_json(self) -> JSON:
        placed = self.placed
        result: JSON = {
            "order_id": placed.order_id,
            "user": placed.user,
            "asset": placed.asset,
            "side": SIDE_NAMES[placed.side],
            "type": ORDER_TYPE_NAMES[placed.order_type],
            "tif": None if placed.tif is None else TIF_NAMES[placed.tif],
        }
        if placed.price is not None:
            result["price"] = placed.price
        result["size"] = placed.size
        result["filled"] = self.filled
        result["height"] = self.height
        result["status"] = self.status
        result["cancel_reason"] = (
            None if self.cancel_reason is None else CANCEL_REASON_NAMES[self.cancel_reason]
        )
        return result


@dataclass(frozen=True, slots=True)
class HistoryPage:
    fills: list[FillRecord]
    orders: list[OrderRecord]
    next: str | None  # opaque cursor for the rest, None at the end

    def to_json(self) -> JSON:
        return {
            "fills": [fill.to_json() for fill in self.fills],
            "orders": [order.to_json() for order in self.orders],
            "next": self.next,
        }
