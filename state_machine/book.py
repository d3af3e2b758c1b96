"""One spot order book: price levels, the best price of each side, FIFO within a level.

Layout, chosen for the hot paths (a resting insert and a cancel, most of a busy venue's
flow; spec/state.md section 3 says what the book is, this is only how it is held):
- each side is a plain `dict` price -> `Level` (finding or creating a level is O(1)) and
  a binary heap of its prices with lazy deletion (`heapq`; the bids' heap holds negated
  prices), so the best price is `heap[0]` once the stale prices on top, whose level has
  gone, are popped: O(1) amortised, each stale price popped once. A price is pushed when
  its level is created and left in the heap when the level goes; when stale prices
  outnumber the levels the heap is rebuilt from the dict (O(levels), amortised O(1) per
  level created), so it holds at most twice the most levels the side has had, plus 17
  (memory bounded by the peak, whatever the churn). A dict and a heap
  cost about 0.1 us where a `SortedDict` level took 1.2 us to open and to close;
- a level is a `list` of orders in arrival order, which is time priority (ids only
  grow), read from index `head` on: the orders before `head` have left the level (filled,
  cancelled or expired at the front) and are dropped when it is compacted. A list, not a
  `deque`: an empty deque is ~630 bytes (its first block of 64 slots), a list ~80 plus 8
  per slot, and most levels hold a few orders (at 100,000 orders over 40,000 levels the
  deques were ~300 of the core's 487 bytes per order); moving `head` is the deque's
  `popleft`. A cancelled order is not searched for: it is marked dead (`size` 0, and gone
  from the machine's order index) and stays in the list until it reaches the front,
  where matching steps over it, or until the list holds more than 2 * live + `DEAD_SLACK`
  orders (dead or before `head`), when the level is compacted (O(level), amortised O(1)
  per order that left; checked after each cancel and once at the end of each take). A
  cancel of the level's first or last order drops it at once. `live` counts the live
  orders: the level leaves the book when it reaches 0, so `bid_levels`/`ask_levels` hold
  exactly the non-empty levels;
- every order at a level shares the level's `price` object (one int per level, not one
  per order);
- the book does not index orders by id: `CoreStateMachine` keeps one global index, which
  cancel needs anyway to tell `unknown_order` from `not_owner`;
- the book is data plus read-only queries: resting, cancelling and matching change the
  levels in `CoreStateMachine` itself, inlined on those hot paths.

Nothing here depends on the iteration order of a dict for a result: every query that
lists levels sorts their prices first; the heaps only ever answer "which price is best",
which does not depend on how they were built.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from itertools import islice

from state_machine.types import Order, Side

L2Level = tuple[int, int, int]  # price, total size, order count
# A level is compacted when its dead orders outnumber its live ones by more than this: a
# small level (most are) then usually empties, and is dropped whole, before it needs one.
DEAD_SLACK = 4


class Level(list[Order]):
    """The orders resting at one price, in time priority, from index `head` on; dead
    orders (size 0) included until they reach the front or the level is compacted.
    `live` counts the others."""

    __slots__ = ("head", "live", "price")

    # No Python `__init__`: list's own C initialiser runs, and `new_level` sets the
    # slots. Calling a Python `__init__` that calls `super().__init__()` costs three times
    # as much (measured: ~3,300 vs ~1,200 CPU instructions), and a sparse book opens a
    # level on most inserts.
    head: int
    live: int
    price: int

    def orders(self) -> list[Order]:
        """The live orders, first in line first: O(len(level))."""
        return [order for order in islice(self, self.head, None) if order.size]

    def compact(self) -> None:
        """Drop the dead orders and those before `head`: O(len(level))."""
        self[:] = self.orders()
        self.head = 0


def new_level(price: int) -> Level:
    """An empty level at `price`: O(1)."""
    level = Level()
    level.price = price
    level.live = 0
    level.head = 0
    return level


def add_level(levels: dict[int, Level], heap: list[int], price: int, sign: int) -> Level:
    """Open the level at `price` and record its heap key `sign * price` (sign -1 for bids):
    O(log levels), or O(levels) when stale keys outnumber the levels and the heap is
    rebuilt from them (amortised O(1) per level opened: a rebuild leaves no stale key)."""
    level = levels[price] = Level()
    level.price = price
    level.live = 0
    level.head = 0
    if len(heap) > 2 * len(levels) + 16:
        rebuild_heap(levels, heap, sign)
    else:
        heappush(heap, sign * price)
    return level


def rebuild_heap(levels: dict[int, Level], heap: list[int], sign: int) -> None:
    """Rebuild a side's heap from its levels' prices (no stale key left): O(levels)."""
    heap[:] = [sign * key for key in levels]
    heapify(heap)


class OrderBook:
    __slots__ = ("ask_heap", "ask_levels", "asset", "bid_heap", "bid_levels")

    def __init__(self, asset: int) -> None:
        self.asset = asset
        self.bid_levels: dict[int, Level] = {}
        self.ask_levels: dict[int, Level] = {}
        self.bid_heap: list[int] = []  # negated prices of bid levels, some stale
        self.ask_heap: list[int] = []  # prices of ask levels, some stale

    def best_bid(self) -> int | None:
        """The highest bid price: O(1) amortised (drops stale heap entries on the way)."""
        heap, levels = self.bid_heap, self.bid_levels
        while heap and -heap[0] not in levels:
            heappop(heap)
        return -heap[0] if heap else None

    def best_ask(self) -> int | None:
        """The lowest ask price: O(1) amortised (drops stale heap entries on the way)."""
        heap, levels = self.ask_heap, self.ask_levels
        while heap and heap[0] not in levels:
            heappop(heap)
        return heap[0] if heap else None

    def is_empty(self) -> bool:
        return not self.bid_levels and not self.ask_levels

    def levels(self, side: Side) -> dict[int, Level]:
        """The price -> level dict of one side (unordered: sort before listing)."""
        return self.bid_levels if side is Side.BUY else self.ask_levels

    def level_count(self, side: Side) -> int:
        return len(self.levels(side))

    def prices(self, side: Side) -> list[int]:
        """The prices of one side's levels in ascending order: O(levels log levels)."""
        return sorted(self.levels(side))

    def level_at(self, side: Side, rank: int) -> tuple[int, list[Order]]:
        """The level of rank `rank` in ascending price order (0 the lowest), as (price, its
        live orders first in line first): O(levels log levels)."""
        price = self.prices(side)[rank]
        return price, self.levels(side)[price].orders()

    def orders(self) -> list[Order]:
        """Every resting order, bids then asks, each side by ascending price, FIFO within a
        level (for tests and audits): O(orders + levels log levels)."""
        return [
            order
            for side in (Side.BUY, Side.SELL)
            for price in self.prices(side)
            for order in self.levels(side)[price].orders()
        ]

    def level_size(self, side: Side, price: int) -> tuple[int, int] | None:
        """(total size, order count) of the level at `price`, None when nothing rests there:
        O(len(level))."""
        level = self.levels(side).get(price)
        if level is None:
            return None
        live = level.orders()
        return sum(order.size for order in live), len(live)

    def depth(self, side: Side, limit: int | None = None) -> list[L2Level]:
        """L2 snapshot of one side, best price first: (price, total size, order count).

        O(levels log levels + orders shown).
        """
        levels = self.levels(side)
        prices = sorted(levels, reverse=side is Side.BUY)
        snapshot: list[L2Level] = []
        for price in islice(prices, limit):
            live = levels[price].orders()
            snapshot.append((price, sum(order.size for order in live), len(live)))
        return snapshot

    def _check(self) -> None:
        """Assert the book's invariants (for tests): O(orders + heap).

        Each level non-empty with `live` its count of live orders, at its own price, of
        its own side and asset, in id order (time priority), sharing the level's price,
        no more dead orders than live + DEAD_SLACK; each level's price in its side's heap, the
        heap a heap;
        the book not crossed (spec/state.md I1).
        """
        for side, levels, heap, sign in (
            (Side.BUY, self.bid_levels, self.bid_heap, -1),
            (Side.SELL, self.ask_levels, self.ask_heap, 1),
        ):
            assert all(heap[(j - 1) // 2] <= heap[j] for j in range(1, len(heap))), "heap"
            in_heap = {sign * key for key in heap}
            for price, level in levels.items():
                assert price in in_heap, "a level missing from the heap"
                assert level.price == price and level.live >= 1, "empty level kept"
                assert 0 <= level.head < len(level), "head past the level's orders"
                live = level.orders()
                assert len(live) == level.live
                assert len(level) <= 2 * level.live + DEAD_SLACK, "dead orders not compacted"
                ids = [order.order_id for order in live]
                assert ids == sorted(ids), "FIFO is id order"
                for order in live:
                    assert (order.asset, order.side, order.price) == (self.asset, side, price)
                    assert order.price is level.price
        best_bid, best_ask = self.best_bid(), self.best_ask()
        assert best_bid is None or best_ask is None or best_bid < best_ask, "I1 crossed"
