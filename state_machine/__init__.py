"""The pure in-memory exchange core: types, books, matching, balances, `CoreStateMachine`.

Imports none of the project's other packages (see DEVELOPERS.md: imports go one way).
"""

from state_machine.balances import Balances
from state_machine.book import OrderBook
from state_machine.entries import (
    changed_entries,
    describe_key,
    describe_namespace,
    namespace_of,
    state_entries,
)
from state_machine.errors import CoreledgerError
from state_machine.machine import CoreStateMachine, StateChanges
from state_machine.rebuild import machine_from_entries
from state_machine.types import (
    ERROR_CODES,
    INSUFFICIENT_BALANCE,
    MAX_AMOUNT,
    MAX_ASSET,
    MAX_BALANCE,
    NOT_OWNER,
    OVERFLOW,
    QUOTE_ASSET,
    UNKNOWN_ORDER,
    WOULD_CROSS,
    Address,
    Cancellation,
    CancelReason,
    CoreError,
    CorruptState,
    Fill,
    InvalidArgument,
    OpResult,
    Order,
    OrderType,
    Result,
    Side,
    Tif,
    normalize_address,
    rejected,
)

__all__ = [
    "ERROR_CODES",
    "INSUFFICIENT_BALANCE",
    "MAX_AMOUNT",
    "MAX_ASSET",
    "MAX_BALANCE",
    "NOT_OWNER",
    "OVERFLOW",
    "QUOTE_ASSET",
    "UNKNOWN_ORDER",
    "WOULD_CROSS",
    "Address",
    "Balances",
    "CancelReason",
    "Cancellation",
    "CoreError",
    "CoreStateMachine",
    "CoreledgerError",
    "CorruptState",
    "Fill",
    "InvalidArgument",
    "OpResult",
    "Order",
    "OrderBook",
    "OrderType",
    "Result",
    "Side",
    "StateChanges",
    "Tif",
    "changed_entries",
    "describe_key",
    "describe_namespace",
    "machine_from_entries",
    "namespace_of",
    "normalize_address",
    "rejected",
    "state_entries",
]
