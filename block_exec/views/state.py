"""The `state` view: books as levels `[price, size, orders]`, best first, and balances."""

from __future__ import annotations

from typing import Any

from state_machine import CoreStateMachine, Side


def book_levels(machine: CoreStateMachine, asset: int) -> dict[str, list[list[int]]]:
    """One book's levels, `bids` and `asks`, each best price first."""
    book = machine.books.get(asset)
    if book is None:
        return {"bids": [], "asks": []}
    return {
        "bids": [list(level) for level in book.depth(Side.BUY)],
        "asks": [list(level) for level in book.depth(Side.SELL)],
    }


def state_json(
    machine: CoreStateMachine, height: int, root: bytes, asset: int | None, user: str | None
) -> dict[str, Any]:
    """The contract's `state` object; `asset`/`user` filter as `--asset`/`--user` do.

    `nonces` (`{U: N}`, addresses sorted) appears only when a nonce exists; `--user`
    keeps that user's only.
    """
    if asset is None:
        assets = sorted(a for a, book in machine.books.items() if not book.is_empty())
    else:
        assets = [asset] if asset >= 1 else []
    books = {str(a): book_levels(machine, a) for a in assets}
    accounts: dict[str, dict[int, dict[str, int]]] = {}
    for (owner, account_asset), account in sorted(machine.balances.nonzero()):
        if user is not None and owner != user:
            continue
        if asset is not None and account_asset != asset:
            continue
        accounts.setdefault(owner, {})[account_asset] = {
            "available": account[0],
            "locked": account[1],
        }
    balances = {
        owner: {str(a): value for a, value in sorted(per_asset.items())}
        for owner, per_asset in accounts.items()
    }
    result = {"height": height, "state_root": root.hex(), "books": books, "balances": balances}
    nonces = sorted(
        (owner, nonce) for owner, nonce in machine.nonces.items() if user in (None, owner)
    )
    if nonces:  # network mode only (spec/signed.md): block-file stores show none
        result["nonces"] = dict(nonces)
    return result
