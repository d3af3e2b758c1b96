"""The one exception family raised by `store`."""

from __future__ import annotations

from state_machine.errors import CoreledgerError


class StoreError(CoreledgerError):
    """Base class of every error `store` raises on purpose (under the project's root)."""


class StoreLocked(StoreError):
    """The node directory is already open, in this process or in another one."""


class CorruptStore(StoreError):
    """A stored value is malformed or inconsistent (bad checksum, bad encoding, wrong root)."""


class StateDiverged(CorruptStore):
    """A restored checkpoint does not hash to the root stored with it."""


class BlockConflict(StoreError):
    """A block at an already stored height differs from the stored one, or leaves a gap."""


class InvalidCursor(StoreError):
    """A history cursor that this store never handed out."""
