"""Domain types of the exchange core: ids, sides, orders, fills, results, errors.

Everything here is plain integers and strings: no floats anywhere in the state machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from state_machine.errors import CoreledgerError

QUOTE_ASSET = 0
MAX_ASSET = 2**32 - 1
MAX_AMOUNT = 2**64 - 1  # prices, sizes, amounts and order ids
MAX_BALANCE = 2**256 - 1

Address = str
"""A user: "0x" + 40 lower-case hex digits (see `normalize_address`)."""


class Side(IntEnum):
    BUY = 0
    SELL = 1


class Tif(IntEnum):
    GTC = 0
    IOC = 1
    ALO = 2


class CancelReason(IntEnum):
    USER = 0
    IOC = 1
    MARKET = 2
    SELF_TRADE = 3


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


# Rejection codes of a well-formed but disallowed operation (contract: Domain).
INSUFFICIENT_BALANCE = "insufficient_balance"
OVERFLOW = "overflow"
WOULD_CROSS = "would_cross"
UNKNOWN_ORDER = "unknown_order"
NOT_OWNER = "not_owner"
ERROR_CODES = (INSUFFICIENT_BALANCE, OVERFLOW, WOULD_CROSS, UNKNOWN_ORDER, NOT_OWNER)

SIDE_NAMES = ("buy", "sell")
TIF_NAMES = ("gtc", "ioc", "alo")
CANCEL_REASON_NAMES = ("user", "ioc", "market", "self_trade")
ORDER_TYPE_NAMES = ("limit", "market")


class CoreError(CoreledgerError):
    """Base class of every error the exchange core raises."""


class InvalidArgument(CoreError):
    """An operation was called with a value outside its domain (a caller bug, not a rejection)."""


class CorruptState(CoreError):
    """Canonical state entries that cannot describe a valid state."""


_HEX_DIGITS = frozenset("0123456789abcdef")


def normalize_address(text: str) -> Address:
    """Return the canonical (lower-case) form of a user address, or raise InvalidArgument."""
    if len(text) != 42 or text[:2] not in ("0x", "0X"):
        raise InvalidArgument(f"bad address {text!r}: want 0x + 40 hex digits")
    lowered = text[2:].lower()
    if not _HEX_DIGITS.issuperset(lowered):
        raise InvalidArgument(f"bad address {text!r}: want 0x + 40 hex digits")
    return "0x" + lowered


class Order:
    """A resting or incoming order; `size` is what remains unfilled.

    A plain __slots__ class rather than a dataclass: it is created once per order on the
    hot path and mutated in place by fills, so construction cost and size matter.
    """

    __slots__ = ("asset", "order_id", "price", "side", "size", "user")

    def __init__(
        self, order_id: int, user: Address, asset: int, side: Side, price: int, size: int
    ) -> None:
        self.order_id = order_id
        self.user = user
        self.asset = asset
        self.side = side
        self.price = price
        self.size = size

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, user={self.user}, asset={self.asset}, "
            f"side={SIDE_NAMES[self.side]}, price={self.price}, size={self.size})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Order):
            return NotImplemented
        return (
            self.order_id == other.order_id
            and self.user == other.user
            and self.asset == other.asset
            and self.side == other.side
            and self.price == other.price
            and self.size == other.size
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class Fill(NamedTuple):
    """One trade: `size` of the base `asset` at the maker's `price`.

    An immutable named tuple: one is built per fill on the matching hot path, where
    `tuple.__new__(Fill, (...))` costs a third of a dataclass's `__init__`.
    """

    asset: int
    maker_order_id: int
    taker_order_id: int
    maker: Address
    taker: Address
    price: int
    size: int
    taker_side: Side


class Cancellation(NamedTuple):
    """An order (resting, or a taker's unfilled remainder) that left the book unfilled."""

    order_id: int
    user: Address
    asset: int
    side: Side
    price: int  # the limit price; 0 for a market order's remainder
    size: int  # what was left unfilled
    reason: CancelReason


Result = tuple[
    bool, str | None, int | None, Sequence[Fill], int | None, Sequence[int],
    Sequence[Cancellation],
]
"""What one operation did, as the core returns it: a plain tuple, in `OpResult`'s field
order `(ok, error, order_id, fills, resting, canceled, cancellations)` (spec/state.md
section 8). Read it by unpacking (`ok, error, order_id, fills, *_ = result`) or by
position, or name it with `OpResult._make(result)`.

A plain tuple because it is built once per operation on the hot paths: a named tuple's
`tuple.__new__(OpResult, ...)` and its deallocation cost ~1,600 CPU instructions more
than a tuple (~10% of a resting insert, ~15% of a cancel; callgrind). The sequences are
lists, or the shared empty tuple `()` where nothing could be listed, or a one-item tuple
(a cancel's id and event): compare them as sequences (`not fills`, `list(canceled)`).
"""


class OpResult(NamedTuple):
    """The named view of a `Result` (`OpResult._make(result)`): the same items, by name.

    `canceled` lists resting orders removed by this operation (a user cancel, or makers
    expired by self-trade prevention); `cancellations` are the events with their reasons,
    including a taker's own ioc or market remainder. A `Result` and its `OpResult` are
    equal (`==` compares tuples).
    """

    ok: bool
    error: str | None = None
    order_id: int | None = None
    fills: Sequence[Fill] = ()
    resting: int | None = None
    canceled: Sequence[int] = ()
    cancellations: Sequence[Cancellation] = ()


def rejected(code: str) -> Result:
    """The result of a rejected operation (immutable: one can be shared by every caller)."""
    return (False, code, None, (), None, (), ())


ACCEPTED: Result = (True, None, None, (), None, (), ())
"""The result of an accepted deposit or withdraw (nothing listed)."""
