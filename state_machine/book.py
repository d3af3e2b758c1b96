"""One spot order book: price levels in sorted order, FIFO within a level.

Layout, chosen for the hot paths:
- each side is a `SortedDict` price -> level, so finding or creating a level is
  O(log levels) and the best price is `peekitem(0)` (asks) or `peekitem(-1)` (bids);
- a level is an `OrderedDict` order id -> Order: insertion order is time priority (ids
  only grow), a cancel deletes in O(1), and the head is O(1) to reach. A plain `dict`
  would be ~50 bytes per order smaller, but reaching its head after deleting k orders
  from the front costs O(k) (CPython leaves the dead slots until the next resize:
  20 us with 50,000 dead), which a level drained by many small takers would hit;
- the book does not index orders by id: `CoreStateMachine` keeps one global index, which
  cancel needs anyway to tell `unknown_order` from `not_owner`;
- the book is data plus read-only queries: resting, cancelling and matching change the
  levels in `CoreStateMachine` itself, inlined on those hot paths, so there is one place
  that mutates a level, not a method beside an inlined copy of it.
"""

from __future__ import annotations

from collections import OrderedDict

from sortedcontainers import SortedDict

from state_machine.types import Order, Side

Level = OrderedDict[int, Order]
L2Level = tuple[int, int, int]  # price, total size, order count


class OrderBook:
    __slots__ = ("asks", "asset", "bids")

    def __init__(self, asset: int) -> None:
        self.asset = asset
        self.bids: SortedDict[int, Level] = SortedDict()
        self.asks: SortedDict[int, Level] = SortedDict()

    def best_bid(self) -> int | None:
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def is_empty(self) -> bool:
        return not self.bids and not self.asks

    def orders(self) -> list[Order]:
        """Every resting order of the book, bids then asks, each side by price, FIFO within
        a level (for tests and audits; O(orders))."""
        return [
            order
            for levels in (self.bids, self.asks)
            for level in levels.values()
            for order in level.values()
        ]

    def _check(self) -> None:
        """Assert the book's invariants (for tests; O(orders)): no empty level, each order at
        its own level and side, FIFO = id order, and not crossed (spec/state.md I1)."""
        for side, levels in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            for price, level in levels.items():
                assert level, "empty level"
                assert list(level) == sorted(level), "FIFO is id order"
                for order_id, order in level.items():
                    assert order.order_id == order_id and order.size >= 1
                    assert (order.asset, order.side, order.price) == (self.asset, side, price)
        best_bid, best_ask = self.best_bid(), self.best_ask()
        assert best_bid is None or best_ask is None or best_bid < best_ask, "I1 crossed"

    def depth(self, side: Side, limit: int | None = None) -> list[L2Level]:
        """L2 snapshot of one side, best price first: (price, total size, order count)."""
        levels = self.bids if side == Side.BUY else self.asks
        prices = reversed(levels.keys()) if side == Side.BUY else iter(levels.keys())
        snapshot: list[L2Level] = []
        for price in prices:
            if limit is not None and len(snapshot) >= limit:
                break
            level = levels[price]
            snapshot.append((price, sum(o.size for o in level.values()), len(level)))
        return snapshot
