"""The core with its results named, for tests that read a result's fields by name.

`CoreStateMachine`'s operations return plain tuples (`state_machine.Result`, cheaper on
the hot paths); `NamedCore` is the same machine whose operations return the same items as
an `OpResult`. `tests/test_core_receipts.py` checks that the core's own results are exact
tuples in `OpResult`'s field order, so tests through `NamedCore` test the core's values.
"""

from __future__ import annotations

from state_machine import Address, CoreStateMachine, OpResult, Side, Tif

named = OpResult._make


class NamedCore(CoreStateMachine):
    __slots__ = ()

    def limit(
        self, user: Address, asset: int, side: Side, price: int, size: int, tif: Tif = Tif.GTC
    ) -> OpResult:
        return named(super().limit(user, asset, side, price, size, tif))

    def market(self, user: Address, asset: int, side: Side, size: int) -> OpResult:
        return named(super().market(user, asset, side, size))

    def cancel(self, user: Address, asset: int, order_id: int) -> OpResult:
        return named(super().cancel(user, asset, order_id))

    def deposit(self, user: Address, asset: int, amount: int) -> OpResult:
        return named(super().deposit(user, asset, amount))

    def withdraw(self, user: Address, asset: int, amount: int) -> OpResult:
        return named(super().withdraw(user, asset, amount))


def as_named(machine: CoreStateMachine) -> NamedCore:
    """The same machine (e.g. from `machine_from_entries`), its results named from now on."""
    machine.__class__ = NamedCore  # the same layout: `NamedCore` adds no slot
    return machine  # type: ignore[return-value]  # it is one now
