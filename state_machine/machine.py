"""`CoreStateMachine`: every book, the balances and the order-id counter, and the operations.

The rules are those of the contract (Domain) and `spec/state.md`; each public operation
either rejects with a code and changes nothing, or applies completely. Arguments outside
their domain (spec/state.md section 1: a number that is not an `int`, a side or tif that
is not the enum member, a non-canonical address, a value out of range) raise
`InvalidArgument` (a caller bug) and change nothing; they are never a rejection.

One job per module: this one holds the state, its queries, its invariant check and the
transfers; order entry (`limit`, `market`, `cancel`) is in `orders`, the take loops in
`matching`, both inherited as mixins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state_machine.balances import Balances
from state_machine.book import OrderBook
from state_machine.domain import check_amount, check_asset, check_user
from state_machine.nonces import Nonces
from state_machine.orders import OrderEntry
from state_machine.types import (
    ACCEPTED,
    INSUFFICIENT_BALANCE,
    MAX_BALANCE,
    OVERFLOW,
    QUOTE_ASSET,
    Address,
    Order,
    Result,
    Side,
    rejected,
)

BUY = Side.BUY
_OVERFLOW = rejected(OVERFLOW)
_NO_FUNDS = rejected(INSUFFICIENT_BALANCE)


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What changed since the previous drain: accounts touched and orders touched.

    An order listed here is either still resting (created or partly filled) or gone
    (filled or cancelled): look it up in `CoreStateMachine.orders` to tell which.
    """

    balances: list[tuple[Address, int]]
    orders: list[Order]
    nonces: list[Address] = field(default_factory=list)  # addresses whose nonce changed


class CoreStateMachine(OrderEntry):
    # With the slots of `OrderEntry` and `Matching` (balances, orders, dirty_orders,
    # books, next_order_id): the instance holds no `__dict__`.
    __slots__ = ("bridge", "nonces")

    def __init__(self) -> None:
        self.books: dict[int, OrderBook] = {}
        self.balances = Balances()
        self.orders: dict[int, Order] = {}  # every resting order, by id
        self.next_order_id = 1
        self.dirty_orders: dict[int, Order] = {}
        # Network mode (spec/signed.md): per-address nonces, and the genesis bridge (the
        # only signer of deposits), set once before the first block and never changed.
        self.nonces = Nonces()
        self.bridge: Address | None = None

    # -- queries -----------------------------------------------------------------------

    def book(self, asset: int) -> OrderBook:
        """The book of `asset`, created empty on first use (an empty book is not state)."""
        book = self.books.get(asset)
        if book is None:
            book = self.books[asset] = OrderBook(asset)
        return book

    def balance(self, user: Address, asset: int) -> tuple[int, int]:
        """(available, locked) of `user` in `asset`."""
        return self.balances.get(user, asset)

    def drain_changes(self) -> StateChanges:
        """Return what changed since the last drain and start recording afresh."""
        changes = StateChanges(
            list(self.balances.dirty), list(self.dirty_orders.values()), self.nonces.drain()
        )
        self.balances.dirty = {}
        self.dirty_orders = {}
        return changes

    def _check(self) -> None:
        """Assert every invariant of spec/state.md section 3 (for tests; O(state)).

        I1 no crossed book, I2 locks = what resting orders hold, I4 supply bounds, I5 ids
        below `next_order_id`; and the layout's own: each book consistent (`OrderBook._check`),
        the order index holding exactly the resting orders, every account's user canonical.
        """
        indexed = 0
        for asset, book in self.books.items():
            book._check()
            assert book.asset == asset
            for levels in (book.bid_levels, book.ask_levels):
                for level in levels.values():
                    for order in level[: level.head]:  # they have left the level
                        assert self.orders.get(order.order_id) is not order, "left but indexed"

            for order in book.orders():
                assert self.orders.get(order.order_id) is order, "book order not indexed"
                assert 0 < order.order_id < self.next_order_id, "I5"
                indexed += 1
        assert indexed == len(self.orders), "the index holds only resting orders"
        held: dict[tuple[Address, int], int] = {}
        for order in self.orders.values():
            if order.side is BUY:
                key, amount = (order.user, QUOTE_ASSET), order.price * order.size
            else:
                key, amount = (order.user, order.asset), order.size
            held[key] = held.get(key, 0) + amount
        supply: dict[int, int] = {}
        for (user, asset), (available, locked) in self.balances.accounts.items():
            check_user(user)
            assert available >= 0 and locked == held.pop((user, asset), 0), "I2"
            supply[asset] = supply.get(asset, 0) + available + locked
        assert not held, "I2: orders hold funds of an account that does not exist"
        for asset, total in supply.items():
            assert total == self.balances.supply.get(asset, 0) <= MAX_BALANCE, "I4"

    # -- transfers ---------------------------------------------------------------------

    def deposit(self, user: Address, asset: int, amount: int) -> Result:
        check_user(user)
        check_asset(asset)
        check_amount("amount", amount)
        supply = self.balances.supply.get(asset, 0) + amount
        if supply > MAX_BALANCE:
            # Bounding the asset's whole supply bounds every balance, fills included.
            return _OVERFLOW
        self.balances.supply[asset] = supply
        self.balances.account(user, asset)[0] += amount
        return ACCEPTED

    def withdraw(self, user: Address, asset: int, amount: int) -> Result:
        check_user(user)
        check_asset(asset)
        check_amount("amount", amount)
        if self.balances.available(user, asset) < amount:
            return _NO_FUNDS
        self.balances.account(user, asset)[0] -= amount
        self.balances.supply[asset] -= amount
        return ACCEPTED
