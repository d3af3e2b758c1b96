"""The default root function: the two-level commitment of `merkle` over state entries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from merkle import NamespacedCommitment
from state_machine import namespace_of
from store.records import Entry, Roots


def roots_of(commitment: NamespacedCommitment) -> Roots:
    """The roots a checkpoint stores, read from a commitment the caller keeps up to date."""
    namespaces = commitment.namespace_roots()
    return Roots(commitment.root(), tuple(sorted(namespaces.items())))


def commitment_of(entries: Iterable[Entry]) -> NamespacedCommitment:
    return NamespacedCommitment((namespace_of(key), key, value) for key, value in entries)


def compute_roots(entries: Sequence[Entry]) -> Roots:
    """Roots of a full state from its canonical entries (the `ComputeRoots` of recovery).

    Hash-only (`NamespacedCommitment.roots_of`): no tree is built, so use it where only the
    roots are checked (verify); a caller that goes on updating builds `commitment_of`."""
    root, namespaces = NamespacedCommitment.roots_of(
        (namespace_of(key), key, value) for key, value in entries
    )
    return Roots(root, tuple(namespaces.items()))
