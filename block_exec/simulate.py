"""The built-in simulated market: a deterministic stream of blocks for `coreledger run`.

Market makers quote around each book's mid (skewed a tick at random each block, so the
mid drifts) and re-quote by cancelling resting orders; takers send marketable limits, ioc
and post-only orders and market orders that sweep several levels; users deposit and
withdraw; a few txs are disallowed on purpose (to show rejected receipts). The mix is
close to a busy venue's: about 45% cancels.

Block h is a pure function of (seed, h, the exchange state after block h-1): the
generator reads the books (to quote around the mid and to cancel orders that really
rest) but keeps no state of its own, so a run resumed from a store at height h generates
exactly the blocks an uninterrupted run would have.

A tiny splitmix64 generator stands in for `random`, whose algorithms may change between
Python versions: the stream must be the same bytes on every machine, forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from state_machine import CoreStateMachine, OrderBook, Side

MASK64 = (1 << 64) - 1
GENESIS_TIME_MS = 1_700_000_000_000
BLOCK_INTERVAL_MS = 250

TxObject = dict[str, Any]
BlockObject = dict[str, Any]


class SplitMix64:
    """splitmix64 (Steele, Lea, Flood 2014): small, fast, and fully specified."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """An integer in [0, bound); the modulo bias is irrelevant for a simulation."""
        return self.next() % bound

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self.next() % (high - low + 1)

    def chance(self, per_mille: int) -> bool:
        return self.next() % 1000 < per_mille


def user_address(index: int) -> str:
    return "0x" + index.to_bytes(20, "big").hex()


@dataclass(frozen=True)
class MarketConfig:
    blocks: int = 3000
    seed: int = 42
    assets: tuple[int, ...] = (1, 2, 3, 4)
    start_mids: tuple[int, ...] = (10_000, 2_500, 400, 50_000)
    makers: int = 8
    takers: int = 36
    maker_quotes_per_block: int = 30
    maker_cancels_per_block: int = 28
    taker_orders_per_block: int = 8
    funding: int = 10**15


class SimulatedMarket:
    """Generates blocks as JSON-shaped objects (the contract's Block file form)."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config or MarketConfig()
        self.makers = [user_address(0x1000 + i) for i in range(self.config.makers)]
        self.takers = [user_address(0x2000 + i) for i in range(self.config.takers)]
        self.latecomer = user_address(0x3000)  # never funded: its txs are rejected

    def block(self, height: int, machine: CoreStateMachine) -> BlockObject:
        """Block `height`, given the state after block height-1."""
        rng = SplitMix64(self.config.seed * 0x100000001B3 + height)
        txs = self._genesis_txs() if height == 1 else self._market_txs(rng, machine)
        return {"height": height, "time": GENESIS_TIME_MS + height * BLOCK_INTERVAL_MS, "txs": txs}

    def _genesis_txs(self) -> list[TxObject]:
        txs: list[TxObject] = []
        funding = self.config.funding
        for user in self.makers + self.takers:
            txs.append({"op": "deposit", "user": user, "asset": 0, "amount": funding})
            for asset in self.config.assets:
                txs.append({"op": "deposit", "user": user, "asset": asset, "amount": funding})
        return txs

    def _market_txs(self, rng: SplitMix64, machine: CoreStateMachine) -> list[TxObject]:
        config = self.config
        txs: list[TxObject] = []
        mids = []
        for index, asset in enumerate(config.assets):
            mid = _book_mid(machine.books.get(asset), config.start_mids[index])
            mids.append(max(20, mid + max(1, mid // 2000) * (rng.below(3) - 1)))

        cancelled: set[int] = set()  # membership only: never iterated
        for _ in range(config.maker_cancels_per_block):
            cancel = self._cancel_tx(rng, machine)
            if cancel is not None and cancel["order_id"] not in cancelled:
                cancelled.add(cancel["order_id"])
                txs.append(cancel)
        for _ in range(config.maker_quotes_per_block):
            book = rng.below(len(config.assets))
            mid = mids[book]
            tick = max(1, mid // 2000)
            side = "buy" if rng.below(2) == 0 else "sell"
            offset = tick * rng.between(1, 12)
            price = mid - offset if side == "buy" else mid + offset
            maker = self.makers[rng.below(len(self.makers))]
            tif = "alo" if rng.chance(300) else "gtc"
            txs.append(_limit(maker, config.assets[book], side, price, rng.between(1, 60), tif))
        for _ in range(config.taker_orders_per_block):
            book = rng.below(len(config.assets))
            txs.append(self._taker_tx(rng, config.assets[book], mids[book]))
        if rng.chance(60):
            txs.append(self._transfer_tx(rng))
        if rng.chance(25):
            txs.append(self._disallowed_tx(rng, machine))
        return txs

    def _cancel_tx(self, rng: SplitMix64, machine: CoreStateMachine) -> TxObject | None:
        """Its owner cancels the oldest order of a random level of a random book."""
        asset = self.config.assets[rng.below(len(self.config.assets))]
        book = machine.books.get(asset)
        if book is None:
            return None
        side = Side.BUY if rng.below(2) == 0 else Side.SELL
        count = book.level_count(side)
        if not count:
            return None
        _, orders = book.level_at(side, rng.below(count))  # by rank, lowest price first
        order = orders[0]
        return {"op": "cancel", "user": order.user, "asset": asset, "order_id": order.order_id}

    def _taker_tx(self, rng: SplitMix64, asset: int, mid: int) -> TxObject:
        user = self.takers[rng.below(len(self.takers))]
        tick = max(1, mid // 2000)
        side = "buy" if rng.below(2) == 0 else "sell"
        sign = 1 if side == "buy" else -1
        kind = rng.below(100)
        if kind < 25:  # market order sweeping a few levels
            return {
                "op": "market", "user": user, "asset": asset, "side": side,
                "size": rng.between(5, 60),
            }
        if kind < 60:  # marketable limit, any remainder rests
            price = mid + sign * tick * rng.between(2, 8)
            return _limit(user, asset, side, price, rng.between(1, 60), "gtc")
        if kind < 85:  # ioc through a few levels
            price = mid + sign * tick * rng.between(1, 10)
            return _limit(user, asset, side, price, rng.between(1, 80), "ioc")
        # post-only behind the touch
        price = max(1, mid - sign * tick * rng.between(3, 20))
        return _limit(user, asset, side, price, rng.between(1, 30), "alo")

    def _transfer_tx(self, rng: SplitMix64) -> TxObject:
        user = self.takers[rng.below(len(self.takers))]
        asset = rng.below(len(self.config.assets) + 1)
        op = "deposit" if rng.below(2) == 0 else "withdraw"
        return {"op": op, "user": user, "asset": asset, "amount": rng.between(1, 10**6)}

    def _disallowed_tx(self, rng: SplitMix64, machine: CoreStateMachine) -> TxObject:
        asset = self.config.assets[rng.below(len(self.config.assets))]
        kind = rng.below(4)
        if kind == 0:  # insufficient_balance: a user who never deposited
            return {"op": "withdraw", "user": self.latecomer, "asset": 0, "amount": 1}
        if kind == 1:  # not_owner: someone else's resting order
            cancel = self._cancel_tx(rng, machine)
            if cancel is not None:
                cancel["user"] = self.latecomer
                return cancel
        if kind == 2:  # unknown_order: an id not yet assigned
            return {
                "op": "cancel", "user": self.takers[1], "asset": asset,
                "order_id": machine.next_order_id + 1_000_000,
            }
        # insufficient_balance: a limit from the unfunded user
        return _limit(self.latecomer, asset, "buy", 1, 1, "gtc")


def _limit(user: str, asset: int, side: str, price: int, size: int, tif: str) -> TxObject:
    return {
        "op": "limit", "user": user, "asset": asset, "side": side, "price": price,
        "size": size, "tif": tif,
    }


def _book_mid(book: OrderBook | None, default: int) -> int:
    best_bid = None if book is None else book.best_bid()
    best_ask = None if book is None else book.best_ask()
    if best_bid is None or best_ask is None:
        if best_bid is not None:
            return best_bid
        if best_ask is not None:
            return best_ask
        return default
    return (best_bid + best_ask) // 2
