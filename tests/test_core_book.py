"""The book's layout (state_machine/book.py): levels in a dict, best prices from heaps with
lazy deletion, cancelled orders left dead in their level until they reach the front.

Expected values are worked out by hand; the random test checks the layout's own bounds
(`_check`: no empty level, `live` exact, no more dead than live orders per level, every
level's price in its heap) and that the heaps stay bounded however much the book churns.
"""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine import (
    QUOTE_ASSET,
    Side,
    Tif,
    machine_from_entries,
    state_entries,
)
from state_machine.book import DEAD_SLACK
from tests.named_core import NamedCore

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
BUY, SELL, GTC = Side.BUY, Side.SELL, Tif.GTC


def funded() -> NamedCore:
    m = NamedCore()
    for user in (A, B, C):
        assert m.deposit(user, QUOTE_ASSET, 10**9).ok
        assert m.deposit(user, 1, 10**6).ok
    return m


def test_a_taker_skips_orders_cancelled_in_the_middle_of_a_level() -> None:
    m = funded()
    for user in (A, B, A, B, A):  # ids 1..5 at price 10, 2 each
        assert m.limit(user, 1, SELL, 10, 2, GTC).resting == 2
    assert m.cancel(B, 1, 2).ok and m.cancel(A, 1, 3).ok  # the middle of the level
    assert m.cancel(A, 1, 5).ok  # the back: dropped at once
    level = m.book(1).ask_levels[10]
    assert [o.order_id for o in level.orders()] == [1, 4] and level.live == 2
    m._check()
    r = m.limit(C, 1, BUY, 10, 3, GTC)
    assert [(f.maker_order_id, f.size) for f in r.fills] == [(1, 2), (4, 1)]
    assert m.book(1).depth(SELL) == [(10, 1, 1)] and m.orders[4].size == 1
    m._check()


def test_a_level_is_read_from_its_head_and_stays_bounded() -> None:
    """Makers filled or cancelled at the front move the level's head (the deque's popleft)
    and are dropped when the list holds more than 2 * live + DEAD_SLACK orders."""
    m = funded()
    for _ in range(3):
        assert m.limit(A, 1, SELL, 10, 1, GTC).ok  # ids 1, 2, 3
    level = m.book(1).ask_levels[10]
    assert m.limit(B, 1, BUY, 10, 1, GTC).fills  # fills 1
    assert (level.head, level.live, [o.order_id for o in level.orders()]) == (1, 2, [2, 3])
    assert m.cancel(A, 1, 2).ok  # at the head: the head moves past it
    assert (level.head, level.live, [o.order_id for o in level.orders()]) == (2, 1, [3])
    oldest = 3
    for _ in range(100):  # a steady level: one order in, the oldest filled
        newest = m.limit(A, 1, SELL, 10, 1, GTC).order_id
        assert [f.maker_order_id for f in m.limit(B, 1, BUY, 10, 1, GTC).fills] == [oldest]
        assert newest is not None
        oldest = newest
        assert len(level) <= 2 * level.live + DEAD_SLACK
        m._check()
    assert m.book(1).ask_levels[10] is level and [o.order_id for o in level.orders()] == [oldest]
    assert level.head < len(level) <= 2 + DEAD_SLACK


def test_a_level_of_one_order_is_small() -> None:
    """A level is a list with three slots (a deque is ~630 bytes before its first order):
    most levels hold a few orders."""
    m = funded()
    assert m.limit(A, 1, SELL, 10, 1, GTC).ok
    assert sys.getsizeof(m.book(1).ask_levels[10]) <= 160


def test_an_emptied_level_is_gone_and_its_stale_price_never_answers() -> None:
    m = funded()
    assert m.limit(A, 1, SELL, 10, 1, GTC).ok  # id 1
    assert m.limit(A, 1, SELL, 12, 1, GTC).ok  # id 2
    assert m.cancel(A, 1, 1).ok  # level 10 gone; 10 stays in the heap, stale
    assert 10 not in m.book(1).ask_levels
    assert m.book(1).best_ask() == 12
    assert m.limit(A, 1, SELL, 10, 4, GTC).resting == 4  # id 3: level 10 opens again
    assert m.book(1).best_ask() == 10
    assert m.cancel(A, 1, 3).ok  # every 10 in the heap is stale now
    assert m.book(1).best_ask() == 12
    assert m.limit(B, 1, BUY, 11, 1, GTC).resting == 1  # 11 < 12: does not cross
    assert m.book(1).depth(SELL) == [(12, 1, 1)] and m.book(1).depth(BUY) == [(11, 1, 1)]
    m._check()


def test_orders_at_one_level_share_its_price_object() -> None:
    m = funded()
    big = 2**40 + 7
    for _ in range(3):
        assert m.limit(A, 1, SELL, int(str(big)), 1, GTC).ok  # three distinct int objects
    prices = [o.price for o in m.book(1).ask_levels[big].orders()]
    assert prices == [big] * 3 and prices[0] is prices[1] is prices[2]


def test_a_restored_book_behaves_as_the_original() -> None:
    m = funded()
    for i in range(1, 40):
        assert m.limit(A if i % 3 else B, 1, SELL if i % 2 else BUY,
                       100 + i if i % 2 else 100 - i, 1 + i % 4, GTC).ok
    for order_id in (3, 5, 8, 13, 21):
        assert m.cancel(m.orders[order_id].user, 1, order_id).ok
    restored = machine_from_entries(state_entries(m))
    restored._check()
    for machine in (m, restored):
        machine.limit(C, 1, BUY, 130, 40, GTC)
        machine.limit(C, 1, SELL, 70, 30, GTC)
    assert state_entries(restored) == state_entries(m)


operations = st.lists(
    st.tuples(
        st.sampled_from(["limit", "limit", "cancel", "cancel", "cancel", "take"]),
        st.sampled_from([A, B, C]),
        st.sampled_from([BUY, SELL]),
        st.integers(0, 7),  # price offset from the mid
        st.integers(1, 5),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations)
def test_churn_keeps_the_layout_bounded(ops: list[tuple[str, str, Side, int, int]]) -> None:
    m = funded()
    peak = {BUY: 0, SELL: 0}
    for kind, user, side, offset, size in ops:
        if kind == "limit":  # rests on its own side of the mid, never crosses
            m.limit(user, 1, side, 100 - 1 - offset if side is BUY else 100 + 1 + offset, size,
                    GTC)
        elif kind == "cancel" and m.orders:
            ids = sorted(m.orders)
            order = m.orders[ids[(offset * 7 + size) % len(ids)]]
            assert m.cancel(order.user, 1, order.order_id).ok
        elif kind == "take":
            m.limit(user, 1, side, 100 + 8 if side is BUY else 100 - 8, size * 3, Tif.IOC)
        book = m.book(1)
        for s in (BUY, SELL):
            peak[s] = max(peak[s], book.level_count(s))
        assert len(book.bid_heap) <= 2 * peak[BUY] + 17
        assert len(book.ask_heap) <= 2 * peak[SELL] + 17
        m._check()
