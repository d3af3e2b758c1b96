"""User balances: `available` and `locked` per (user, asset), with change tracking.

An account is a two-item list `[available, locked]` mutated in place, so the matching
loop reads and writes it without building objects. Every account touched is recorded in
`dirty` (an insertion-ordered dict used as an ordered set) for the state commitment.

`supply[asset]` is the sum of available + locked over users. Deposits keep it within
MAX_BALANCE, which bounds every single balance too, so transfers between users (fills)
can never overflow and need no check on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator

from state_machine.types import Address

AVAILABLE = 0
LOCKED = 1

BalanceKey = tuple[Address, int]
Account = list[int]


class Balances:
    __slots__ = ("accounts", "dirty", "supply")

    def __init__(self) -> None:
        self.accounts: dict[BalanceKey, Account] = {}
        self.supply: dict[int, int] = {}
        self.dirty: dict[BalanceKey, None] = {}

    def account(self, user: Address, asset: int) -> Account:
        """The live account of (user, asset), created empty on first use and marked dirty."""
        key = (user, asset)
        self.dirty[key] = None
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = [0, 0]
        return account

    def get(self, user: Address, asset: int) -> tuple[int, int]:
        """(available, locked), zeros for an account never used. Does not mark it dirty."""
        account = self.accounts.get((user, asset))
        return (0, 0) if account is None else (account[0], account[1])

    def available(self, user: Address, asset: int) -> int:
        account = self.accounts.get((user, asset))
        return 0 if account is None else account[0]

    def nonzero(self) -> Iterator[tuple[BalanceKey, Account]]:
        """Accounts holding anything, in an unspecified order (sort before committing)."""
        for key, account in self.accounts.items():
            if account[0] or account[1]:
                yield key, account
