"""Per-address nonces of network mode (spec/signed.md, "Nonces"), with change tracking.

Each address has a nonce, 0 at first. A signed tx must carry its signer's current nonce,
and every tx that passes authorization and the nonce check uses it (the nonce goes up by
one), whatever its receipt. A nonce of 0 is not state (no entry), like a zero account, so
a chain that never saw a signed tx has the same entries and root as before nonces existed.

Every address whose nonce changed is recorded in `dirty` (an insertion-ordered dict used
as an ordered set), drained with the core's other changes for the state commitment.
"""

from __future__ import annotations

from collections.abc import Iterator

from state_machine.types import Address

MAX_NONCE = 2**64  # a tx nonce is at most 2^64-1, so the stored nonce never passes 2^64


class Nonces:
    """The nonce table: `get` is O(1); `use` is O(1) and records the change."""

    __slots__ = ("dirty", "table")

    def __init__(self) -> None:
        self.table: dict[Address, int] = {}
        self.dirty: dict[Address, None] = {}

    def get(self, user: Address) -> int:
        """The address's current nonce (0 if it never used one)."""
        return self.table.get(user, 0)

    def use(self, user: Address) -> int:
        """Use the address's current nonce (it goes up by one); return the used value."""
        used = self.table.get(user, 0)
        self.table[user] = used + 1
        self.dirty[user] = None
        return used

    def drain(self) -> list[Address]:
        """The addresses changed since the previous drain, in first-change order."""
        changed = list(self.dirty)
        self.dirty = {}
        return changed

    def items(self) -> Iterator[tuple[Address, int]]:
        """(address, nonce) for every non-zero nonce, in an unspecified order."""
        return iter(self.table.items())

    def __len__(self) -> int:
        return len(self.table)

    def _check(self) -> None:
        """Invariants (tests call this): canonical addresses, nonces in [1, 2^64]."""
        for user, nonce in self.table.items():
            assert len(user) == 42 and user.startswith("0x") and user == user.lower()
            assert type(nonce) is int and 1 <= nonce <= MAX_NONCE
