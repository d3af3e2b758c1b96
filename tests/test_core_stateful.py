"""Random operation sequences against `CoreStateMachine`, checked after every step.

A hypothesis `RuleBasedStateMachine` drives deposits, withdrawals, limit (gtc/ioc/alo),
market and cancel operations over 3 books and 4 users with small prices and sizes (so
orders cross often), plus a rule with values at the bounds. After every step it checks the
invariants of spec/state.md and compares results, books and balances with the simple
reference model of `tests/reference_matcher.py`; and it checks that the drained changes,
applied to the previous entry snapshot, give the new full `state_entries`.
"""

from __future__ import annotations

import cbor2
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from state_machine import (
    MAX_AMOUNT,
    MAX_BALANCE,
    QUOTE_ASSET,
    OpResult,
    Side,
    Tif,
    changed_entries,
    machine_from_entries,
    state_entries,
)
from state_machine.entries import NEXT_ORDER_ID_KEY, balance_key, encode_balance
from state_machine.types import CANCEL_REASON_NAMES, SIDE_NAMES, TIF_NAMES
from tests.named_core import NamedCore, as_named
from tests.reference_matcher import ReferenceExchange, RefResult

USERS = ["0x" + f"{i:02x}" * 20 for i in (0xA1, 0xB2, 0xC3, 0xD4)]
BOOK_ASSETS = [1, 2, 3]
ALL_ASSETS = [QUOTE_ASSET, *BOOK_ASSETS]

users = st.sampled_from(USERS)
book_assets = st.sampled_from(BOOK_ASSETS)
all_assets = st.sampled_from(ALL_ASSETS)
sides = st.sampled_from([Side.BUY, Side.SELL])
tifs = st.sampled_from([Tif.GTC, Tif.GTC, Tif.IOC, Tif.ALO])
small_prices = st.integers(1, 10)
small_sizes = st.integers(1, 10)
big_amounts = st.sampled_from([MAX_AMOUNT, MAX_AMOUNT - 1, 2**63, 2**32])
big_prices = st.sampled_from([MAX_AMOUNT, MAX_AMOUNT - 1, 2**40, 1])
big_sizes = st.sampled_from([MAX_AMOUNT, MAX_AMOUNT - 1, 2**40, 1])


def as_ref(result: OpResult, asset: int, side: Side | None) -> RefResult:
    """The implementation's result in the reference model's terms (checking the extras)."""
    for f in result.fills:
        assert f.asset == asset and f.taker_side == side
    for c in result.cancellations:
        assert c.asset == asset
    return RefResult(
        ok=result.ok,
        error=result.error,
        order_id=result.order_id,
        fills=[
            (f.maker_order_id, f.taker_order_id, f.maker, f.taker, f.price, f.size)
            for f in result.fills
        ],
        resting=result.resting,
        canceled=list(result.canceled),
        cancellations=[
            (c.order_id, c.user, CANCEL_REASON_NAMES[c.reason], c.price, c.size)
            for c in result.cancellations
        ],
    )


class CoreMachineTest(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = NamedCore()
        self.ref = ReferenceExchange()
        self.net: dict[int, int] = {}  # per asset: deposits - withdrawals (+ seeded funds)
        self.snapshot: dict[bytes, bytes] = dict(state_entries(self.machine))
        self.steps = 0

    # -- setup ---------------------------------------------------------------------------

    @initialize(huge=st.booleans(), funded=st.integers(0, 3))
    def seed(self, huge: bool, funded: int) -> None:
        """Most runs start with funded users (so orders are accepted and cross often); half
        start from entries holding balances close to 2^256-1."""
        if huge:
            self._seed_huge()
        if funded:
            for user in USERS:
                self.deposit(user, QUOTE_ASSET, 2000)
                for asset in BOOK_ASSETS:
                    self.deposit(user, asset, 60)

    def _seed_huge(self) -> None:
        seeded = {
            (USERS[0], QUOTE_ASSET): MAX_BALANCE - 10**6,
            (USERS[1], 1): MAX_BALANCE - 10**6,
        }
        entries = [(NEXT_ORDER_ID_KEY, cbor2.dumps(1))]
        entries += [(balance_key(u, a), encode_balance(v, 0)) for (u, a), v in seeded.items()]
        self.machine = as_named(machine_from_entries(sorted(entries)))
        for (u, a), v in seeded.items():
            self.ref.balances[(u, a)] = [v, 0]
            self.net[a] = self.net.get(a, 0) + v
        self.snapshot = dict(state_entries(self.machine))

    # -- operations ----------------------------------------------------------------------

    def _resting_before(self) -> dict[int, tuple[int, str, Side]]:
        return {i: (o.price, o.user, o.side) for i, o in self.machine.orders.items()}

    def _check_fills(
        self,
        result: OpResult,
        before: dict[int, tuple[int, str, Side]],
        user: str,
        side: Side,
        limit: int | None,
    ) -> None:
        for f in result.fills:
            maker_price, maker_user, maker_side = before[f.maker_order_id]
            assert f.price == maker_price, "a fill is at the maker's price"
            assert f.maker == maker_user and maker_side != side
            assert f.taker == user != f.maker, "no self-trade fill"
            assert f.taker_order_id == result.order_id
            assert f.size >= 1
            if limit is not None:
                assert f.price <= limit if side == Side.BUY else f.price >= limit
        for order_id in result.canceled:
            assert order_id in before and order_id not in self.machine.orders

    def _same(self, got: OpResult, want: RefResult, asset: int, side: Side | None) -> None:
        assert as_ref(got, asset, side) == want
        if not got.ok:
            assert got.order_id is None and not got.fills and not got.canceled

    @rule(user=users, asset=all_assets, amount=st.integers(1, 300))
    def deposit(self, user: str, asset: int, amount: int) -> None:
        got = self.machine.deposit(user, asset, amount)
        self._same(got, self.ref.deposit(user, asset, amount), asset, None)
        if got.ok:
            self.net[asset] = self.net.get(asset, 0) + amount

    @rule(user=users, asset=all_assets, amount=st.integers(1, 150))
    def withdraw(self, user: str, asset: int, amount: int) -> None:
        got = self.machine.withdraw(user, asset, amount)
        self._same(got, self.ref.withdraw(user, asset, amount), asset, None)
        if got.ok:
            self.net[asset] = self.net.get(asset, 0) - amount

    def _limit(self, user: str, asset: int, side: Side, price: int, size: int, tif: Tif) -> None:
        before = self._resting_before()
        got = self.machine.limit(user, asset, side, price, size, tif)
        want = self.ref.limit(user, asset, SIDE_NAMES[side], price, size, TIF_NAMES[tif])
        self._same(got, want, asset, side)
        self._check_fills(got, before, user, side, price)

    def _market(self, user: str, asset: int, side: Side, size: int) -> None:
        before = self._resting_before()
        got = self.machine.market(user, asset, side, size)
        self._same(got, self.ref.market(user, asset, SIDE_NAMES[side], size), asset, side)
        self._check_fills(got, before, user, side, None)

    # Three limit rules: hypothesis picks rules uniformly, and limits are what build books.
    @rule(user=users, asset=book_assets, side=sides, price=small_prices, size=small_sizes, tif=tifs)
    def limit(self, user: str, asset: int, side: Side, price: int, size: int, tif: Tif) -> None:
        self._limit(user, asset, side, price, size, tif)

    @rule(user=users, asset=book_assets, side=sides, price=small_prices, size=small_sizes, tif=tifs)
    def limit_again(
        self, user: str, asset: int, side: Side, price: int, size: int, tif: Tif
    ) -> None:
        self._limit(user, asset, side, price, size, tif)

    @rule(user=users, side=sides, price=small_prices, size=small_sizes)
    def limit_gtc_busy_book(self, user: str, side: Side, price: int, size: int) -> None:
        self._limit(user, 1, side, price, size, Tif.GTC)

    @rule(user=users, asset=book_assets, side=sides, size=st.integers(1, 25))
    def market(self, user: str, asset: int, side: Side, size: int) -> None:
        self._market(user, asset, side, size)

    @rule(user=users, asset=book_assets, keep=st.integers(0, 40), size=st.integers(1, 40))
    def market_buy_on_a_budget(self, user: str, asset: int, keep: int, size: int) -> None:
        """Withdraw the user's quote down to `keep`, then market buy: the budget runs out."""
        available = self.machine.balance(user, QUOTE_ASSET)[0]
        if available - keep > MAX_AMOUNT:
            return  # a seeded near-2^256 balance: one withdrawal cannot empty it
        if available > keep:
            self.withdraw(user, QUOTE_ASSET, available - keep)
        self._market(user, asset, Side.BUY, size)

    @rule(user=users, asset=book_assets, order_id=st.integers(1, 50))
    def cancel_any(self, user: str, asset: int, order_id: int) -> None:
        got = self.machine.cancel(user, asset, order_id)
        self._same(got, self.ref.cancel(user, asset, order_id), asset, None)

    @precondition(lambda self: bool(self.machine.orders))
    @rule(data=st.data(), own=st.booleans())
    def cancel_resting(self, data: st.DataObject, own: bool) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.machine.orders)))
        order = self.machine.orders[order_id]
        user = order.user if own else data.draw(users)
        got = self.machine.cancel(user, order.asset, order_id)
        self._same(got, self.ref.cancel(user, order.asset, order_id), order.asset, None)

    @rule(
        user=users,
        asset=st.sampled_from(ALL_ASSETS),
        amount=big_amounts,
        book=book_assets,
        side=sides,
        price=big_prices,
        size=big_sizes,
        kind=st.sampled_from(["deposit", "withdraw", "limit", "ioc", "market"]),
    )
    def at_the_bounds(
        self,
        user: str,
        asset: int,
        amount: int,
        book: int,
        side: Side,
        price: int,
        size: int,
        kind: str,
    ) -> None:
        if kind == "deposit":
            self.deposit(user, asset, amount)
        elif kind == "withdraw":
            self.withdraw(user, asset, amount)
        elif kind in ("limit", "ioc"):
            self._limit(user, book, side, price, size, Tif.GTC if kind == "limit" else Tif.IOC)
        else:
            self._market(user, book, side, size)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def books_agree_and_are_sane(self) -> None:
        m = self.machine
        m._check()
        indexed = 0
        for asset, book in sorted(m.books.items()):
            best_bid, best_ask = book.best_bid(), book.best_ask()
            assert best_bid is None or best_ask is None or best_bid < best_ask, "crossed book"
            for side in (Side.BUY, Side.SELL):
                for price in book.prices(side):
                    level = book.levels(side)[price].orders()
                    assert level, "no empty level"
                    ids = [order.order_id for order in level]
                    assert ids == sorted(ids), "FIFO = id order within a level"
                    for order in level:
                        order_id = order.order_id
                        assert m.orders[order_id] is order
                        assert (order.asset, order.side, order.price) == (asset, side, price)
                        assert order.size >= 1 and order_id < m.next_order_id
                        indexed += 1
                want = self.ref.levels(asset, SIDE_NAMES[side])
                assert book.depth(side) == want
        assert indexed == len(m.orders), "the order index holds only resting orders"
        mine = sorted(
            (o.order_id, o.user, o.asset, SIDE_NAMES[o.side], o.price, o.size)
            for o in m.orders.values()
        )
        theirs = sorted(
            (o.order_id, o.user, o.asset, o.side, o.price, o.size) for o in self.ref.resting
        )
        assert mine == theirs
        assert m.next_order_id == self.ref.next_order_id

    @invariant()
    def balances_agree_and_conserve(self) -> None:
        m = self.machine
        mine = {k: (a[0], a[1]) for k, a in m.balances.nonzero()}
        assert mine == self.ref.nonzero_balances()
        held: dict[tuple[str, int], int] = {}
        for o in m.orders.values():
            key = (o.user, QUOTE_ASSET) if o.side == Side.BUY else (o.user, o.asset)
            held[key] = held.get(key, 0) + (o.price * o.size if o.side == Side.BUY else o.size)
        supply: dict[int, int] = {}
        for (user, asset), (available, locked) in m.balances.accounts.items():
            assert available >= 0 and locked >= 0
            assert available + locked <= MAX_BALANCE
            assert locked == held.get((user, asset), 0), "locked = what resting orders hold"
            supply[asset] = supply.get(asset, 0) + available + locked
        for asset in set(supply) | set(self.net):
            assert supply.get(asset, 0) == self.net.get(asset, 0), "conservation"
            assert m.balances.supply.get(asset, 0) == self.net.get(asset, 0)

    @invariant()
    def changes_replay_to_entries(self) -> None:
        self.steps += 1
        if self.steps % 3:
            return  # drained every third step: changes accumulate over several operations
        changes = self.machine.drain_changes()
        applied = dict(self.snapshot)
        for key, value in changed_entries(self.machine, changes):
            if value is None:
                applied.pop(key, None)
            else:
                applied[key] = value
        full = state_entries(self.machine)
        assert sorted(applied.items()) == full
        self.snapshot = dict(full)


CoreMachineTest.TestCase.settings = settings(
    settings.default, max_examples=300, stateful_step_count=50
)
TestCoreMachine = CoreMachineTest.TestCase
