"""A deliberately simple order book, the baseline `coreledger bench` measures against.

Plain lists and linear scans, as a first implementation would write it: each side is one
list of orders kept in priority order by inserting at the first worse position, and a
cancel searches the list. It is correct for resting inserts and cancels, which is all the
benchmark asks of it; the ratio to it shows what the real structures buy at each depth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SimpleOrder:
    order_id: int
    user: str
    price: int
    size: int


class SimpleBook:
    def __init__(self) -> None:
        self.bids: list[SimpleOrder] = []  # best (highest) first, FIFO within a price
        self.asks: list[SimpleOrder] = []  # best (lowest) first, FIFO within a price

    def add(self, order: SimpleOrder, is_buy: bool) -> None:
        side = self.bids if is_buy else self.asks
        for index, other in enumerate(side):
            worse = other.price < order.price if is_buy else other.price > order.price
            if worse:
                side.insert(index, order)
                return
        side.append(order)

    def cancel(self, order_id: int) -> bool:
        for side in (self.bids, self.asks):
            for index, order in enumerate(side):
                if order.order_id == order_id:
                    del side[index]
                    return True
        return False
