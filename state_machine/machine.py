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

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NoReturn

from state_machine.balances import Balances
from state_machine.book import OrderBook
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
    InvalidArgument,
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


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What changed since the previous drain: accounts touched and orders touched.

    An order listed here is either still resting (created or partly filled) or gone
    (filled or cancelled): look it up in `CoreStateMachine.orders` to tell which.
    """

    balances: list[tuple[Address, int]]
    orders: list[Order]
    nonces: list[Address] = field(default_factory=list)  # addresses whose nonce changed


# -- argument checks (spec/state.md section 1) -----------------------------------------
# A public operation checks its arguments once, with a combined test that costs a few
# comparisons when they are fine; only a failing test calls the helpers below, which name
# the bad argument. A number must be an `int` itself (not a bool, an IntEnum or a float),
# a side a `Side`, a tif a `Tif`, a user a canonical address: the core refuses any other
# spelling rather than normalising it, so one user is one string and one account.

_HEX_DIGITS = frozenset("0123456789abcdef")
# Addresses already checked canonical; bounded, and only a speed-up: whether an address is
# in it never changes a result.
_KNOWN_USERS: dict[str, None] = {}
_KNOWN_USERS_MAX = 1 << 16


def _check_user(user: object) -> None:
    """Raise InvalidArgument unless `user` is a canonical address: "0x" + 40 lower-case hex.

    O(1) for an address seen before (a bounded cache), O(42) otherwise.
    """
    if type(user) is str and user in _KNOWN_USERS:
        return
    if not (
        type(user) is str
        and len(user) == 42
        and user.startswith("0x")
        and _HEX_DIGITS.issuperset(user[2:])
    ):
        raise InvalidArgument(
            f"user {user!r} is not a canonical address: want 0x + 40 lower-case hex digits"
            " (see normalize_address)"
        )
    if len(_KNOWN_USERS) >= _KNOWN_USERS_MAX:
        _KNOWN_USERS.clear()
    _KNOWN_USERS[user] = None


def _check_number(name: str, value: object, low: int, high: int, domain: str) -> None:
    if type(value) is not int:
        raise InvalidArgument(f"{name} {value!r} is a {type(value).__name__}, not an int")
    if not low <= value <= high:
        raise InvalidArgument(f"{name} {value} out of range {domain}")


def _check_amount(name: str, value: object) -> None:
    _check_number(name, value, 1, MAX_AMOUNT, "[1, 2^64-1]")


def _check_asset(value: object) -> None:
    _check_number("asset", value, 0, MAX_ASSET, "[0, 2^32-1]")


def _check_book_asset(value: object) -> None:
    _check_number("asset", value, 1, MAX_ASSET, "[1, 2^32-1] (a book asset)")


def _check_side(side: object) -> None:
    if type(side) is not Side:
        raise InvalidArgument(f"side {side!r} is not a Side")


def _check_tif(tif: object) -> None:
    if type(tif) is not Tif:
        raise InvalidArgument(f"tif {tif!r} is not a Tif")


_NO_PRICE = object()  # a market order's price argument to `_refuse_order`


def _refuse_order(
    user: object, asset: object, side: object, price: object, size: object, tif: object
) -> NoReturn:
    """Name the first bad argument of an order (the fast combined check failed)."""
    _check_user(user)
    _check_book_asset(asset)
    _check_side(side)
    if price is not _NO_PRICE:
        _check_amount("price", price)
    _check_amount("size", size)
    _check_tif(tif)
    raise AssertionError("unreachable: the fast check failed on a valid order")


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
            _check_user(user)
            assert available >= 0 and locked == held.pop((user, asset), 0), "I2"
            supply[asset] = supply.get(asset, 0) + available + locked
        assert not held, "I2: orders hold funds of an account that does not exist"
        for asset, total in supply.items():
            assert total == self.balances.supply.get(asset, 0) <= MAX_BALANCE, "I4"

    # -- transfers ---------------------------------------------------------------------

    def deposit(self, user: Address, asset: int, amount: int) -> OpResult:
        _check_user(user)
        _check_asset(asset)
        _check_amount("amount", amount)
        supply = self.balances.supply.get(asset, 0) + amount
        if supply > MAX_BALANCE:
            # Bounding the asset's whole supply bounds every balance, fills included.
            return OpResult(False, OVERFLOW)
        self.balances.supply[asset] = supply
        self.balances.account(user, asset)[0] += amount
        return OpResult(True)

    def withdraw(self, user: Address, asset: int, amount: int) -> OpResult:
        _check_user(user)
        _check_asset(asset)
        _check_amount("amount", amount)
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
        so helpers are inlined and attribute lookups hoisted; `bench` measures it.
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
            _refuse_order(user, asset, side, price, size, tif)
        is_buy = side is BUY
        if is_buy:
            funds_key = (user, QUOTE_ASSET)
            held = price * size
        elif side is SELL:
            funds_key = (user, asset)
            held = size
        else:
            _check_side(side)
            raise AssertionError("unreachable")
        balances = self.balances
        book = self.books.get(asset)
        try:
            funds = balances.accounts.get(funds_key)
        except TypeError:  # an unhashable user
            funds = None
        if funds is None or funds[0] < held:
            if funds is None:
                _check_user(user)
            return OpResult(False, INSUFFICIENT_BALANCE)
        crosses = False
        if book is not None:
            if is_buy:
                asks = book.asks
                crosses = bool(asks) and asks.keys()[0] <= price
            else:
                bids = book.bids
                crosses = bool(bids) and bids.keys()[-1] >= price
            if crosses and tif is ALO:
                return OpResult(False, WOULD_CROSS)

        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        result = OpResult(True, None, order_id)
        balances.dirty[funds_key] = None
        funds[0] -= held

        remaining = size
        if crosses:
            assert book is not None
            if is_buy:
                remaining = self._take_asks(book, user, order_id, price, size, None, result)
            else:
                remaining = self._take_bids(book, user, order_id, price, size, result)
            if not remaining:
                result.resting = 0
                return result

        held = price * remaining if is_buy else remaining
        if tif is IOC:
            funds[0] += held
            result.cancellations.append(
                Cancellation(order_id, user, asset, side, price, remaining, CancelReason.IOC)
            )
            result.resting = 0
            return result
        funds[1] += held
        order = Order(order_id, user, asset, side, price, remaining)
        if book is None:
            book = self.book(asset)
        levels = book.bids if is_buy else book.asks
        level = levels.get(price)
        if level is None:
            level = levels[price] = OrderedDict()
        level[order_id] = order
        self.orders[order_id] = order
        self.dirty_orders[order_id] = order
        result.resting = remaining
        return result

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
            _refuse_order(user, asset, side, _NO_PRICE, size, GTC)
        _check_user(user)
        balances = self.balances
        book = self.books.get(asset)
        if side is BUY:
            budget = balances.available(user, QUOTE_ASSET)
            if book is not None and book.asks and budget < book.asks.peekitem(0)[0]:
                return OpResult(False, INSUFFICIENT_BALANCE)
        elif balances.available(user, asset) < size:
            return OpResult(False, INSUFFICIENT_BALANCE)

        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        result = OpResult(True, order_id=order_id)
        remaining = size
        if side is BUY:
            if book is not None and book.asks:
                remaining = self._take_asks(book, user, order_id, MAX_AMOUNT, size, budget, result)
        else:
            funds = balances.account(user, asset)
            funds[0] -= size
            if book is not None and book.bids:
                remaining = self._take_bids(book, user, order_id, 0, size, result)
            funds[0] += remaining
        if remaining:
            result.cancellations.append(
                Cancellation(order_id, user, asset, side, 0, remaining, CancelReason.MARKET)
            )
        return result

    def cancel(self, user: Address, asset: int, order_id: int) -> OpResult:
        """Cancel a resting order of `user` (inlined: a busy venue's most frequent tx)."""
        # Checked once; the user through the order: a resting order's user is canonical,
        # so only the rejection paths check it in full.
        if not (
            type(asset) is int
            and type(order_id) is int
            and 0 < asset <= MAX_ASSET
            and 0 < order_id <= MAX_AMOUNT
        ):
            _check_user(user)
            _check_book_asset(asset)
            _check_amount("order_id", order_id)
        order = self.orders.get(order_id)
        if order is None or order.asset != asset:
            _check_user(user)
            return OpResult(False, UNKNOWN_ORDER)
        if order.user != user:
            _check_user(user)
            return OpResult(False, NOT_OWNER)
        price = order.price
        size = order.size
        if order.side == BUY:
            funds_key = (user, QUOTE_ASSET)
            held = price * size
            levels = self.books[asset].bids
        else:
            funds_key = (user, asset)
            held = size
            levels = self.books[asset].asks
        balances = self.balances
        funds = balances.accounts[funds_key]
        balances.dirty[funds_key] = None
        funds[1] -= held
        funds[0] += held
        del self.orders[order_id]
        self.dirty_orders[order_id] = order
        level = levels[price]
        del level[order_id]
        if not level:
            del levels[price]
        return OpResult(
            True, None, None, [], None, [order_id],
            [Cancellation(order_id, user, asset, order.side, price, size, USER_CANCEL)],
        )

    # -- matching ----------------------------------------------------------------------

    def _release(self, order: Order, reason: CancelReason, result: OpResult) -> None:
        """Unlock what a resting order holds and record its cancellation.

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
        result.canceled.append(order.order_id)
        result.cancellations.append(
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
        result: OpResult,
    ) -> int:
        """A buy taker against the asks; returns the unfilled size.

        With `budget` None the taker is a limit buy that already paid limit_price*size up
        front and is refunded its price improvement per fill; with a budget it is a market
        buy paying each fill from `available`, at most `budget` in all.
        """
        asset = book.asset
        asks = book.asks
        balances = self.balances
        account = balances.account
        orders = self.orders
        dirty_orders = self.dirty_orders
        fills = result.fills
        taker_quote = account(taker, QUOTE_ASSET)
        taker_base = account(taker, asset)
        remaining = size
        while remaining and asks:
            price, level = asks.peekitem(0)
            if price > limit_price:
                break
            while level:
                # A market buy that cannot pay for one unit here stops before it meets the
                # next maker, so it expires none of its own orders at a price it cannot pay
                # (as on arrival, where it is rejected before any self-trade).
                if budget is not None and budget < price:
                    return remaining
                maker = next(iter(level.values()))
                if maker.user == taker:
                    self._release(maker, CancelReason.SELF_TRADE, result)
                    del level[maker.order_id]
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
                fills.append(
                    Fill(asset, maker.order_id, taker_id, maker.user, taker, price, quantity, BUY)
                )
                maker.size -= quantity
                dirty_orders[maker.order_id] = maker
                if not maker.size:
                    del level[maker.order_id]
                    del orders[maker.order_id]
                remaining -= quantity
                if not remaining:
                    break
            if not level:
                del asks[price]
        return remaining

    def _take_bids(
        self,
        book: OrderBook,
        taker: Address,
        taker_id: int,
        limit_price: int,
        size: int,
        result: OpResult,
    ) -> int:
        """A sell taker (which already set aside `size` of base) against the bids."""
        asset = book.asset
        bids = book.bids
        account = self.balances.account
        orders = self.orders
        dirty_orders = self.dirty_orders
        fills = result.fills
        taker_quote = account(taker, QUOTE_ASSET)
        remaining = size
        while remaining and bids:
            price, level = bids.peekitem(-1)
            if price < limit_price:
                break
            while level:
                maker = next(iter(level.values()))
                if maker.user == taker:
                    self._release(maker, CancelReason.SELF_TRADE, result)
                    del level[maker.order_id]
                    continue
                quantity = remaining if remaining < maker.size else maker.size
                notional = quantity * price
                taker_quote[0] += notional
                account(maker.user, QUOTE_ASSET)[1] -= notional
                account(maker.user, asset)[0] += quantity
                fills.append(
                    Fill(asset, maker.order_id, taker_id, maker.user, taker, price, quantity, SELL)
                )
                maker.size -= quantity
                dirty_orders[maker.order_id] = maker
                if not maker.size:
                    del level[maker.order_id]
                    del orders[maker.order_id]
                remaining -= quantity
                if not remaining:
                    break
            if not level:
                del bids[price]
        return remaining
