"""Matching: a taker against the resting orders of one side of a book.

The inner loops of the engine (a taker's fills, the makers it expires by self-trade
prevention, the dead orders it steps over), apart from order entry (`orders`) and the
machine's state (`machine`). `CoreStateMachine` inherits them through `OrderEntry`; they
read and change the machine's balances, order index and set of changed orders.
"""

from __future__ import annotations

from heapq import heappop

from state_machine.balances import Balances
from state_machine.book import DEAD_SLACK, Level, OrderBook
from state_machine.types import (
    QUOTE_ASSET,
    Address,
    Cancellation,
    CancelReason,
    Fill,
    Order,
    Side,
)

BUY = Side.BUY
SELL = Side.SELL
# Builds a result or event named tuple from a tuple in one C call, without the Python-level
# `__new__` of its class (which only names the same fields): for the hot paths.
new_tuple = tuple.__new__


class Matching:
    """The take loops of `CoreStateMachine`, the base of its class chain (`Matching` ->
    `OrderEntry` -> `CoreStateMachine`): each class declares the slots of the state it
    works on, the machine's `__init__` fills them all."""

    __slots__ = ("balances", "dirty_orders", "orders")
    balances: Balances
    orders: dict[int, Order]
    dirty_orders: dict[int, Order]

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
