"""`CoreStateMachine`: every book, the balances and the order-id counter, and the operations.

The rules are those of the contract (Domain) and `spec/state.md`; each public operation
either rejects with a code and changes nothing, or applies completely. Arguments outside
their domain (spec/state.md section 1: a number that is not an `int`, a side or tif that
is not the enum member, a non-canonical address, a value out of range) raise
`InvalidArgument` (a caller bug) and change nothing; they are never a rejection.

Funds of an incoming order move once up front: a buy limit takes price*size of quote
out of `available`, a sell (limit or market) takes size of base. Each fill then settles at
the maker's price (refunding a buy taker's price improvement), and whatever is left either
rests (moved into `locked`) or is cancelled (given back to `available`). A market buy is
the exception: it has no limit to lock against, so it pays fill by fill from `available`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heappop

from state_machine.balances import Balances
from state_machine.book import DEAD_SLACK, Level, OrderBook, add_level
from state_machine.domain import (
    NO_PRICE,
    check_amount,
    check_asset,
    check_book_asset,
    check_side,
    check_user,
    refuse_order,
)
from state_machine.nonces import Nonces
from state_machine.types import (
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
    Fill,
    OpResult,
    Order,
    Side,
    Tif,
)

BUY = Side.BUY
SELL = Side.SELL
GTC = Tif.GTC
IOC = Tif.IOC
ALO = Tif.ALO
USER_CANCEL = CancelReason.USER
# Builds a result or event named tuple from a tuple in one C call, without the Python-level
# `__new__` of its class (which only names the same fields): for the hot paths.
new_tuple = tuple.__new__
new_object = object.__new__


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What changed since the previous drain: accounts touched and orders touched.

    An order listed here is either still resting (created or partly filled) or gone
    (filled or cancelled): look it up in `CoreStateMachine.orders` to tell which.
    """

    balances: list[tuple[Address, int]]
    orders: list[Order]
    nonces: list[Address] = field(default_factory=list)  # addresses whose nonce changed


class CoreStateMachine:
    __slots__ = ("balances", "books", "bridge", "dirty_orders", "next_order_id", "nonces",
                 "orders")

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

    def deposit(self, user: Address, asset: int, amount: int) -> OpResult:
        check_user(user)
        check_asset(asset)
        check_amount("amount", amount)
        supply = self.balances.supply.get(asset, 0) + amount
        if supply > MAX_BALANCE:
            # Bounding the asset's whole supply bounds every balance, fills included.
            return OpResult(False, OVERFLOW)
        self.balances.supply[asset] = supply
        self.balances.account(user, asset)[0] += amount
        return OpResult(True)

    def withdraw(self, user: Address, asset: int, amount: int) -> OpResult:
        check_user(user)
        check_asset(asset)
        check_amount("amount", amount)
        if self.balances.available(user, asset) < amount:
            return OpResult(False, INSUFFICIENT_BALANCE)
        self.balances.account(user, asset)[0] -= amount
        self.balances.supply[asset] -= amount
        return OpResult(True)

    # -- orders ------------------------------------------------------------------------

    def limit(
        self, user: Address, asset: int, side: Side, price: int, size: int, tif: Tif = Tif.GTC
    ) -> OpResult:
        """A limit order: match what crosses, then rest (gtc), cancel (ioc) or refuse (alo).

        The hot path of the whole engine (a resting insert is most of a busy venue's flow),
        so helpers are inlined and attribute lookups hoisted; `bench` measures it. A resting
        insert is O(1) amortised, plus O(log levels) when it opens a level (a heap push);
        a taker adds O(fills + makers expired + levels emptied * log levels).
        """
        # Argument checks, once: `type(x) is int` refuses bools, enums and floats; side and
        # tif must be the enum members themselves. The user is checked through its account:
        # every account key holds a canonical address (deposit checks it), so a user with
        # funds is canonical, and only the path that finds no funds checks it in full.
        if not (
            type(asset) is int
            and type(price) is int
            and type(size) is int
            and 0 < asset <= MAX_ASSET
            and 0 < price <= MAX_AMOUNT
            and 0 < size <= MAX_AMOUNT
            and (tif is GTC or tif is IOC or tif is ALO)
        ):
            refuse_order(user, asset, side, price, size, tif)
        is_buy = side is BUY
        if is_buy:
            funds_key = (user, QUOTE_ASSET)
            held = price * size
        elif side is SELL:
            funds_key = (user, asset)
            held = size
        else:
            check_side(side)
            raise AssertionError("unreachable")
        balances = self.balances
        book = self.books.get(asset)
        try:
            funds = balances.accounts.get(funds_key)
        except TypeError:  # an unhashable user
            funds = None
        if funds is None or funds[0] < held:
            if funds is None:
                check_user(user)
            return OpResult(False, INSUFFICIENT_BALANCE)
        crosses = False
        if book is not None:
            # The best opposite price: the top of its heap once stale prices are dropped.
            if is_buy:
                heap = book.ask_heap
                levels = book.ask_levels
                while heap and heap[0] not in levels:
                    heappop(heap)
                crosses = bool(heap) and heap[0] <= price
            else:
                heap = book.bid_heap
                levels = book.bid_levels
                while heap and -heap[0] not in levels:
                    heappop(heap)
                crosses = bool(heap) and -heap[0] >= price
            if crosses and tif is ALO:
                return OpResult(False, WOULD_CROSS)

        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        balances.dirty[funds_key] = None
        funds[0] -= held

        remaining = size
        fills: list[Fill] | tuple[()] = ()
        canceled: list[int] | tuple[()] = ()
        cancellations: list[Cancellation] | tuple[()] = ()
        if crosses:
            assert book is not None
            fills, canceled, cancellations = [], [], []
            if is_buy:
                remaining = self._take_asks(
                    book, user, order_id, price, size, None, fills, canceled, cancellations
                )
            else:
                remaining = self._take_bids(
                    book, user, order_id, price, size, fills, canceled, cancellations
                )
            if not remaining:
                return new_tuple(OpResult, (True, None, order_id, fills, 0, canceled,
                                            cancellations))

        held = price * remaining if is_buy else remaining
        if tif is IOC:
            funds[0] += held
            ioc = Cancellation(order_id, user, asset, side, price, remaining, CancelReason.IOC)
            return OpResult(True, None, order_id, fills, 0, canceled, [*cancellations, ioc])
        funds[1] += held
        if book is None:
            book = self.books[asset] = OrderBook(asset)
        if is_buy:
            levels = book.bid_levels
            level = levels.get(price)
            if level is None:
                level = add_level(levels, book.bid_heap, price, -1)
        else:
            levels = book.ask_levels
            level = levels.get(price)
            if level is None:
                level = add_level(levels, book.ask_heap, price, 1)
        # `Order(...)` runs a Python `__init__`; storing the slots of a bare object costs
        # about 60% of that (measured ~1,400 vs ~2,300 CPU instructions per order).
        order = new_object(Order)
        order.order_id = order_id
        order.user = user
        order.asset = asset
        order.side = side
        order.price = level.price
        order.size = remaining
        level.append(order)
        level.live += 1
        self.orders[order_id] = order
        self.dirty_orders[order_id] = order
        return new_tuple(OpResult, (True, None, order_id, fills, remaining, canceled,
                                    cancellations))

    def market(self, user: Address, asset: int, side: Side, size: int) -> OpResult:
        """A market order: take until filled or the other side is empty; cancel the rest.

        A market buy pays level by level from its available quote and stops as soon as it
        cannot pay for one unit at the current price (before expiring any of its own orders
        there); it is rejected when it cannot pay for one unit at the best ask on arrival.
        """
        if not (
            type(asset) is int
            and type(size) is int
            and 0 < asset <= MAX_ASSET
            and 0 < size <= MAX_AMOUNT
            and (side is BUY or side is SELL)
        ):
            refuse_order(user, asset, side, NO_PRICE, size, GTC)
        check_user(user)
        balances = self.balances
        book = self.books.get(asset)
        if side is BUY:
            budget = balances.available(user, QUOTE_ASSET)
            best_ask = None if book is None else book.best_ask()
            if best_ask is not None and budget < best_ask:
                return OpResult(False, INSUFFICIENT_BALANCE)
        elif balances.available(user, asset) < size:
            return OpResult(False, INSUFFICIENT_BALANCE)

        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        fills: list[Fill] = []
        canceled: list[int] = []
        cancellations: list[Cancellation] = []
        remaining = size
        if side is BUY:
            if book is not None and book.ask_levels:
                remaining = self._take_asks(
                    book, user, order_id, MAX_AMOUNT, size, budget, fills, canceled,
                    cancellations,
                )
        else:
            funds = balances.account(user, asset)
            funds[0] -= size
            if book is not None and book.bid_levels:
                remaining = self._take_bids(
                    book, user, order_id, 0, size, fills, canceled, cancellations
                )
            funds[0] += remaining
        if remaining:
            cancellations.append(
                Cancellation(order_id, user, asset, side, 0, remaining, CancelReason.MARKET)
            )
        return OpResult(True, None, order_id, fills, None, canceled, cancellations)

    def cancel(self, user: Address, asset: int, order_id: int) -> OpResult:
        """Cancel a resting order of `user` (inlined: a busy venue's most frequent tx).

        O(1) amortised: the order is found by id and marked dead where it stands in its
        level (dropped at once from either end of it), the level compacted when its dead
        outnumber its live by more than DEAD_SLACK (O(level), paid for by those cancels),
        and an emptied level leaves its side's dict, its price left stale in the heap (see
        `book`).
        """
        # Checked once; the user through the order: a resting order's user is canonical,
        # so only the rejection paths check it in full.
        if not (
            type(asset) is int
            and type(order_id) is int
            and 0 < asset <= MAX_ASSET
            and 0 < order_id <= MAX_AMOUNT
        ):
            check_user(user)
            check_book_asset(asset)
            check_amount("order_id", order_id)
        order = self.orders.get(order_id)
        if order is None or order.asset != asset:
            check_user(user)
            return OpResult(False, UNKNOWN_ORDER)
        if order.user != user:
            check_user(user)
            return OpResult(False, NOT_OWNER)
        price = order.price
        size = order.size
        side = order.side
        if side is BUY:
            funds_key = (user, QUOTE_ASSET)
            held = price * size
            levels = self.books[asset].bid_levels
        else:
            funds_key = (user, asset)
            held = size
            levels = self.books[asset].ask_levels
        balances = self.balances
        funds = balances.accounts[funds_key]
        balances.dirty[funds_key] = None
        funds[1] -= held
        funds[0] += held
        del self.orders[order_id]
        self.dirty_orders[order_id] = order
        order.size = 0  # dead: matching drops it when it reaches the front of its level
        level = levels[price]
        live = level.live - 1
        if live:
            level.live = live
            head = level.head
            if level[head] is order:
                level.head = head + 1
            elif level[-1] is order:
                level.pop()
            if len(level) > 2 * live + DEAD_SLACK:
                level.compact()
        else:
            del levels[price]  # its price stays in the heap, stale, until it is on top
        return new_tuple(OpResult, (
            True, None, None, (), None, [order_id],
            [new_tuple(Cancellation, (order_id, user, asset, side, price, size, USER_CANCEL))],
        ))

    # -- matching ----------------------------------------------------------------------

    def _release(
        self,
        order: Order,
        reason: CancelReason,
        canceled: list[int],
        cancellations: list[Cancellation],
    ) -> None:
        """Unlock what a resting order holds and record its cancellation: O(1).

        The caller takes the order out of its book level.
        """
        if order.side == BUY:
            account = self.balances.account(order.user, QUOTE_ASSET)
            held = order.price * order.size
        else:
            account = self.balances.account(order.user, order.asset)
            held = order.size
        account[1] -= held
        account[0] += held
        del self.orders[order.order_id]
        self.dirty_orders[order.order_id] = order
        canceled.append(order.order_id)
        cancellations.append(
            Cancellation(
                order.order_id, order.user, order.asset, order.side, order.price, order.size,
                reason,
            )
        )

    def _take_asks(
        self,
        book: OrderBook,
        taker: Address,
        taker_id: int,
        limit_price: int,
        size: int,
        budget: int | None,
        fills: list[Fill],
        canceled: list[int],
        cancellations: list[Cancellation],
    ) -> int:
        """A buy taker against the asks; returns the unfilled size.

        With `budget` None the taker is a limit buy that already paid limit_price*size up
        front and is refunded its price improvement per fill; with a budget it is a market
        buy paying each fill from `available`, at most `budget` in all.

        O(fills + makers expired + dead orders dropped + levels emptied * log levels); the
        last level met, if any of it is left, is compacted if its dead outnumber its live
        by more than DEAD_SLACK.
        """
        asset = book.asset
        asks = book.ask_levels
        heap = book.ask_heap
        balances = self.balances
        account = balances.account
        orders = self.orders
        dirty_orders = self.dirty_orders
        taker_quote = account(taker, QUOTE_ASSET)
        taker_base = account(taker, asset)
        remaining = size
        level: Level | None = None
        out_of_budget = False
        while remaining:
            while heap and heap[0] not in asks:
                heappop(heap)
            if not heap:
                break
            price = heap[0]
            if price > limit_price:
                break
            level = asks[price]
            # `i` walks the level from its head; `live` is its live count (both stored
            # back when the walk stops).
            i = level.head
            live = level.live
            while True:
                maker = level[i]
                if not maker.size:  # cancelled while in line
                    i += 1
                    continue
                # A market buy that cannot pay for one unit here stops before it meets the
                # next maker, so it expires none of its own orders at a price it cannot pay
                # (as on arrival, where it is rejected before any self-trade).
                if budget is not None and budget < price:
                    out_of_budget = True
                    break
                if maker.user == taker:
                    i += 1
                    live -= 1
                    self._release(maker, CancelReason.SELF_TRADE, canceled, cancellations)
                    if not live:
                        break
                    continue
                quantity = remaining if remaining < maker.size else maker.size
                if budget is not None:
                    affordable = budget // price
                    if affordable < quantity:
                        quantity = affordable
                    budget -= quantity * price
                    taker_quote[0] -= quantity * price
                else:
                    taker_quote[0] += (limit_price - price) * quantity
                taker_base[0] += quantity
                maker_base = account(maker.user, asset)
                maker_base[1] -= quantity
                account(maker.user, QUOTE_ASSET)[0] += quantity * price
                fills.append(new_tuple(
                    Fill, (asset, maker.order_id, taker_id, maker.user, taker, price, quantity, BUY)
                ))
                maker.size -= quantity
                dirty_orders[maker.order_id] = maker
                if not maker.size:
                    i += 1
                    live -= 1
                    del orders[maker.order_id]
                remaining -= quantity
                if not remaining or not live:
                    break
            level.head = i
            level.live = live
            if out_of_budget:
                break
            if not live:
                del asks[price]
                heappop(heap)  # `price`: nothing was pushed since it was read at the top
                level = None
        if level is not None and len(level) > 2 * level.live + DEAD_SLACK:
            level.compact()
        return remaining

    def _take_bids(
        self,
        book: OrderBook,
        taker: Address,
        taker_id: int,
        limit_price: int,
        size: int,
        fills: list[Fill],
        canceled: list[int],
        cancellations: list[Cancellation],
    ) -> int:
        """A sell taker (which already set aside `size` of base) against the bids.

        O(fills + makers expired + dead orders dropped + levels emptied * log levels), as
        `_take_asks`.
        """
        asset = book.asset
        bids = book.bid_levels
        heap = book.bid_heap
        account = self.balances.account
        orders = self.orders
        dirty_orders = self.dirty_orders
        taker_quote = account(taker, QUOTE_ASSET)
        remaining = size
        level: Level | None = None
        while remaining:
            while heap and -heap[0] not in bids:
                heappop(heap)
            if not heap:
                break
            price = -heap[0]
            if price < limit_price:
                break
            level = bids[price]
            i = level.head  # as in `_take_asks`
            live = level.live
            while True:
                maker = level[i]
                if not maker.size:  # cancelled while in line
                    i += 1
                    continue
                if maker.user == taker:
                    i += 1
                    live -= 1
                    self._release(maker, CancelReason.SELF_TRADE, canceled, cancellations)
                    if not live:
                        break
                    continue
                quantity = remaining if remaining < maker.size else maker.size
                notional = quantity * price
                taker_quote[0] += notional
                account(maker.user, QUOTE_ASSET)[1] -= notional
                account(maker.user, asset)[0] += quantity
                fills.append(new_tuple(
                    Fill, (asset, maker.order_id, taker_id, maker.user, taker, price, quantity,
                           SELL)
                ))
                maker.size -= quantity
                dirty_orders[maker.order_id] = maker
                if not maker.size:
                    i += 1
                    live -= 1
                    del orders[maker.order_id]
                remaining -= quantity
                if not remaining or not live:
                    break
            level.head = i
            level.live = live
            if not live:
                del bids[price]
                heappop(heap)  # `-price`: nothing was pushed since it was read at the top
                level = None
        if level is not None and len(level) > 2 * level.live + DEAD_SLACK:
            level.compact()
        return remaining
