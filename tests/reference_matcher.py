"""A deliberately simple model of the exchange core, written from the contract and spec/state.md.

Plain lists and dicts with linear scans, no sorted containers, no up-front locking trick:
a taker pays each fill at the maker's price and only what finally rests is locked. It is
slow and obviously right, so the stateful test can compare `CoreStateMachine` against it
after every operation. It shares no code with `state_machine` beyond the constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_AMOUNT = 2**64 - 1
MAX_BALANCE = 2**256 - 1
QUOTE = 0

# Result tuples compared with the implementation's `OpResult`:
# fill = (maker_order_id, taker_order_id, maker, taker, price, size)
# cancellation = (order_id, user, reason, price, size), reason in user/ioc/market/self_trade
RefFill = tuple[int, int, str, str, int, int]
RefCancellation = tuple[int, str, str, int, int]


@dataclass
class RefOrder:
    order_id: int
    user: str
    asset: int
    side: str  # "buy" | "sell"
    price: int
    size: int


@dataclass
class RefResult:
    ok: bool
    error: str | None = None
    order_id: int | None = None
    fills: list[RefFill] = field(default_factory=list)
    resting: int | None = None
    canceled: list[int] = field(default_factory=list)
    cancellations: list[RefCancellation] = field(default_factory=list)


def _reject(code: str) -> RefResult:
    return RefResult(ok=False, error=code)


class ReferenceExchange:
    def __init__(self) -> None:
        self.balances: dict[tuple[str, int], list[int]] = {}  # (user, asset) -> [avail, locked]
        self.resting: list[RefOrder] = []  # every resting order, any book, any order
        self.next_order_id = 1

    # -- balances ----------------------------------------------------------------------

    def _acct(self, user: str, asset: int) -> list[int]:
        if (user, asset) not in self.balances:
            self.balances[(user, asset)] = [0, 0]
        return self.balances[(user, asset)]

    def available(self, user: str, asset: int) -> int:
        return self.balances.get((user, asset), [0, 0])[0]

    def supply(self, asset: int) -> int:
        total = 0
        for (_, a), (avail, locked) in self.balances.items():
            if a == asset:
                total += avail + locked
        return total

    def nonzero_balances(self) -> dict[tuple[str, int], tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.balances.items() if v[0] or v[1]}

    def deposit(self, user: str, asset: int, amount: int) -> RefResult:
        if self.supply(asset) + amount > MAX_BALANCE:
            return _reject("overflow")
        self._acct(user, asset)[0] += amount
        return RefResult(ok=True)

    def withdraw(self, user: str, asset: int, amount: int) -> RefResult:
        if self.available(user, asset) < amount:
            return _reject("insufficient_balance")
        self._acct(user, asset)[0] -= amount
        return RefResult(ok=True)

    # -- book queries ------------------------------------------------------------------

    def _best(self, asset: int, side: str) -> RefOrder | None:
        """The resting order of `side` with priority: best price, then lowest id."""
        best: RefOrder | None = None
        best_rank: tuple[int, int] = (0, 0)
        for o in self.resting:
            if o.asset != asset or o.side != side:
                continue
            rank = (-o.price if side == "buy" else o.price, o.order_id)
            if best is None or rank < best_rank:
                best, best_rank = o, rank
        return best

    def levels(self, asset: int, side: str) -> list[tuple[int, int, int]]:
        """L2 (price, total size, count), best first."""
        prices: list[int] = []
        for o in self.resting:
            if o.asset == asset and o.side == side and o.price not in prices:
                prices.append(o.price)
        prices.sort(reverse=(side == "buy"))
        out = []
        for p in prices:
            here = [o for o in self.resting if o.asset == asset and o.side == side and o.price == p]
            out.append((p, sum(o.size for o in here), len(here)))
        return out

    def _hold(self, o: RefOrder) -> tuple[int, int]:
        """(asset, amount) that a resting order keeps locked."""
        return (QUOTE, o.price * o.size) if o.side == "buy" else (o.asset, o.size)

    def _expire(self, o: RefOrder, reason: str, result: RefResult) -> None:
        asset, amount = self._hold(o)
        acct = self._acct(o.user, asset)
        acct[1] -= amount
        acct[0] += amount
        self.resting.remove(o)
        result.canceled.append(o.order_id)
        result.cancellations.append((o.order_id, o.user, reason, o.price, o.size))

    # -- matching ----------------------------------------------------------------------

    def _match(
        self,
        user: str,
        asset: int,
        side: str,
        taker_id: int,
        limit: int | None,
        size: int,
        budget: int | None,
        result: RefResult,
    ) -> int:
        """Trade `size` against the other side; returns what is left.

        The taker pays/receives at each maker's price. `limit` None = market. `budget` is
        a market buy's quote spending cap.
        """
        other = "sell" if side == "buy" else "buy"
        left = size
        while left > 0:
            maker = self._best(asset, other)
            if maker is None:
                break
            if limit is not None:
                if side == "buy" and maker.price > limit:
                    break
                if side == "sell" and maker.price < limit:
                    break
            if budget is not None and budget < maker.price:
                break
            if maker.user == user:
                self._expire(maker, "self_trade", result)
                continue
            qty = min(left, maker.size)
            if budget is not None:
                qty = min(qty, budget // maker.price)
                budget -= qty * maker.price
            notional = qty * maker.price
            if side == "buy":
                self._acct(user, QUOTE)[0] -= notional
                self._acct(user, asset)[0] += qty
                self._acct(maker.user, asset)[1] -= qty
                self._acct(maker.user, QUOTE)[0] += notional
            else:
                self._acct(user, asset)[0] -= qty
                self._acct(user, QUOTE)[0] += notional
                self._acct(maker.user, QUOTE)[1] -= notional
                self._acct(maker.user, asset)[0] += qty
            result.fills.append((maker.order_id, taker_id, maker.user, user, maker.price, qty))
            maker.size -= qty
            if maker.size == 0:
                self.resting.remove(maker)
            left -= qty
        return left

    def _take_id(self) -> int:
        order_id = self.next_order_id
        self.next_order_id += 1
        return order_id

    def limit(
        self, user: str, asset: int, side: str, price: int, size: int, tif: str
    ) -> RefResult:
        if side == "buy":
            if self.available(user, QUOTE) < price * size:
                return _reject("insufficient_balance")
        elif self.available(user, asset) < size:
            return _reject("insufficient_balance")
        if tif == "alo":
            best = self._best(asset, "sell" if side == "buy" else "buy")
            if best is not None and (
                (side == "buy" and best.price <= price) or (side == "sell" and best.price >= price)
            ):
                return _reject("would_cross")
        order_id = self._take_id()
        result = RefResult(ok=True, order_id=order_id)
        left = self._match(user, asset, side, order_id, price, size, None, result)
        if left and tif == "ioc":
            result.cancellations.append((order_id, user, "ioc", price, left))
            left_resting = 0
        elif left:
            o = RefOrder(order_id, user, asset, side, price, left)
            self.resting.append(o)
            hold_asset, amount = self._hold(o)
            acct = self._acct(user, hold_asset)
            acct[0] -= amount
            acct[1] += amount
            left_resting = left
        else:
            left_resting = 0
        result.resting = left_resting
        return result

    def market(self, user: str, asset: int, side: str, size: int) -> RefResult:
        budget: int | None = None
        if side == "buy":
            budget = self.available(user, QUOTE)
            best = self._best(asset, "sell")
            if best is not None and budget < best.price:
                return _reject("insufficient_balance")
        elif self.available(user, asset) < size:
            return _reject("insufficient_balance")
        order_id = self._take_id()
        result = RefResult(ok=True, order_id=order_id)
        left = self._match(user, asset, side, order_id, None, size, budget, result)
        if left:
            result.cancellations.append((order_id, user, "market", 0, left))
        return result

    def cancel(self, user: str, asset: int, order_id: int) -> RefResult:
        found = [o for o in self.resting if o.order_id == order_id and o.asset == asset]
        if not found:
            return _reject("unknown_order")
        if found[0].user != user:
            return _reject("not_owner")
        result = RefResult(ok=True)
        self._expire(found[0], "user", result)
        return result
