"""The `diff` view: every state entry two states disagree on, plus the book levels those
entries change.

Entries are compared through the commitment's own diff (only namespaces whose roots differ
are descended into), and each differing entry is shown by its kind (views/entries.py), so
an entry kind added there appears here with no change. Book levels are not entries but
sums over a book's orders: a level is listed when an order that differs rests at it on
either side and its `[size, orders]` differ.
"""

from __future__ import annotations

from typing import Any

from block_exec.views.entries import entry_kind, entry_value
from merkle import NamespacedCommitment
from merkle.namespaced import diff_namespaced
from state_machine import CoreStateMachine, Side
from state_machine.entries import ORDER_PREFIX

Difference = dict[str, Any]  # {"key": NAME, "db": VALUE or None, "other": VALUE or None}
LevelRef = tuple[int, str, int]  # asset, "bids" | "asks", price


def state_differences(
    mine: NamespacedCommitment,
    theirs: NamespacedCommitment,
    mine_state: CoreStateMachine,
    theirs_state: CoreStateMachine,
) -> list[Difference]:
    """Every differing entry and book level, in `natural_order` of their names."""
    differences: list[Difference] = []
    levels: set[LevelRef] = set()
    for _, key, in_mine, in_theirs in diff_namespaced(mine, theirs):
        kind = entry_kind(key)
        a, b = entry_value(key, in_mine), entry_value(key, in_theirs)
        differences.append({"key": kind.name, "db": a, "other": b})
        if key[0] == ORDER_PREFIX:
            asset = int.from_bytes(key[1:5], "big")
            levels.update(_level_of(asset, order) for order in (a, b) if order is not None)
    for level in sorted(levels):
        a_level = level_value(mine_state, level)
        b_level = level_value(theirs_state, level)
        if a_level != b_level:
            asset, side, price = level
            differences.append({"key": f"books/{asset}/{side}/{price}", "db": a_level,
                                "other": b_level})
    differences.sort(key=lambda item: natural_order(item["key"]))
    return differences


def _level_of(asset: int, order: dict[str, Any]) -> LevelRef:
    return asset, "bids" if order["side"] == "buy" else "asks", order["price"]


def level_value(machine: CoreStateMachine, level: LevelRef) -> list[int] | None:
    """`[total size, order count]` of one level, None when nothing rests there."""
    asset, side, price = level
    book = machine.books.get(asset)
    if book is None:
        return None
    found = book.level_size(Side.BUY if side == "bids" else Side.SELL, price)
    return None if found is None else list(found)


def natural_order(name: str) -> tuple[tuple[int, int, str], ...]:
    """A name's parts, numbers compared as numbers: `books/2/...` before `books/10/...`."""
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in name.split("/")
    )
