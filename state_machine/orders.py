"""Order entry: limit, market and cancel, the operations a trader sends.

Funds of an incoming order move once up front: a buy limit takes price*size of quote
out of `available`, a sell (limit or market) takes size of base. Each fill then settles at
the maker's price (refunding a buy taker's price improvement), and whatever is left either
rests (moved into `locked`) or is cancelled (given back to `available`). A market buy is
the exception: it has no limit to lock against, so it pays fill by fill from `available`.

These are the engine's hot paths (a resting insert and a cancel are most of a busy
venue's flow): helpers are inlined and attribute lookups hoisted; `bench` measures them.
"""

from __future__ import annotations

from heapq import heappop, heappush

from state_machine.book import DEAD_SLACK, Level, OrderBook, rebuild_heap
from state_machine.domain import (
    NO_PRICE,
    check_cancel,
    check_side,
    check_user,
    refuse_order,
)
from state_machine.matching import Matching, new_tuple
from state_machine.types import (
    INSUFFICIENT_BALANCE,
    MAX_AMOUNT,
    MAX_ASSET,
    NOT_OWNER,
    QUOTE_ASSET,
    UNKNOWN_ORDER,
    WOULD_CROSS,
    Address,
    Cancellation,
    CancelReason,
    Fill,
    Order,
    Result,
    Side,
    Tif,
    rejected,
)

BUY = Side.BUY
SELL = Side.SELL
GTC = Tif.GTC
IOC = Tif.IOC
ALO = Tif.ALO
USER_CANCEL = CancelReason.USER
new_object = object.__new__
# The rejections, shared (a result is immutable).
_NO_FUNDS = rejected(INSUFFICIENT_BALANCE)
_CROSSES = rejected(WOULD_CROSS)
_UNKNOWN = rejected(UNKNOWN_ORDER)
_NOT_OWNER = rejected(NOT_OWNER)


class OrderEntry(Matching):
    """`limit`, `market` and `cancel` of `CoreStateMachine` (see `Matching` for the class
    chain and its slots)."""

    __slots__ = ("books", "next_order_id")
    books: dict[int, OrderBook]
    next_order_id: int

    def limit(
        self, user: Address, asset: int, side: Side, price: int, size: int, tif: Tif = Tif.GTC
    ) -> Result:
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
            return _NO_FUNDS
        crosses = False
        if book is not None:
            # The best opposite price: the top of its heap once stale prices are dropped.
            # (`if ...: crosses = True`, not `bool(heap) and ...`: no call of `bool`.)
            if is_buy:
                heap = book.ask_heap
                levels = book.ask_levels
                while heap and heap[0] not in levels:
                    heappop(heap)
                if heap and heap[0] <= price:
                    crosses = True
            else:
                heap = book.bid_heap
                levels = book.bid_levels
                while heap and -heap[0] not in levels:
                    heappop(heap)
                if heap and -heap[0] >= price:
                    crosses = True
            if crosses and tif is ALO:
                return _CROSSES

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
                return True, None, order_id, fills, 0, canceled, cancellations
            held = price * remaining if is_buy else remaining  # what is left to hold

        if tif is IOC:
            funds[0] += held
            ioc = Cancellation(order_id, user, asset, side, price, remaining, CancelReason.IOC)
            return True, None, order_id, fills, 0, canceled, [*cancellations, ioc]
        funds[1] += held
        if book is None:
            book = self.books[asset] = OrderBook(asset)
        if is_buy:
            levels = book.bid_levels
            heap = book.bid_heap
            key = -price
        else:
            levels = book.ask_levels
            heap = book.ask_heap
            key = price
        level = levels.get(price)
        if level is not None:
            level.live += 1
        else:
            # `book.add_level` inlined (its call was ~15% of opening a level): the same
            # steps, the new order counted at once, the heap rebuilt there when its stale
            # keys outnumber the levels.
            level = levels[price] = Level()
            level.price = price
            level.live = 1
            level.head = 0
            if len(heap) > 2 * len(levels) + 16:
                rebuild_heap(levels, heap, key // price)
            else:
                heappush(heap, key)
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
        self.orders[order_id] = order
        self.dirty_orders[order_id] = order
        return True, None, order_id, fills, remaining, canceled, cancellations

    def market(self, user: Address, asset: int, side: Side, size: int) -> Result:
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
                return _NO_FUNDS
        elif balances.available(user, asset) < size:
            return _NO_FUNDS

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
        return True, None, order_id, fills, None, canceled, cancellations

    def cancel(self, user: Address, asset: int, order_id: int) -> Result:
        """Cancel a resting order of `user` (inlined: a busy venue's most frequent tx).

        O(1) amortised: the order is found by id and marked dead where it stands in its
        level (dropped at once from either end of it), the level compacted when its dead
        outnumber its live by more than DEAD_SLACK (O(level), paid for by those cancels),
        and an emptied level leaves its side's dict, its price left stale in the heap (see
        `book`).
        """
        # Only the types are tested on the way to a cancel; the rest is checked through the
        # order: an order found under an `int` id, of an `int` asset equal to its own and
        # of this user, has an id, an asset and a user in their domains (the core made it
        # so). The rejection paths check all three in full first, so an argument outside
        # its domain still raises InvalidArgument. (The two range tests cost ~19 of a
        # cancel's ~170 bytecodes; `type` stays: `True` would find order 1.)
        if type(asset) is not int or type(order_id) is not int:
            check_cancel(user, asset, order_id)
        order = self.orders.get(order_id)
        if order is None or order.asset != asset:
            check_cancel(user, asset, order_id)
            return _UNKNOWN
        if order.user != user:
            check_cancel(user, asset, order_id)
            return _NOT_OWNER
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
        # One-item tuples, not lists: from the tuple free list, no separate item array.
        return True, None, None, (), None, (order_id,), (
            new_tuple(Cancellation, (order_id, user, asset, side, price, size, USER_CANCEL)),
        )
