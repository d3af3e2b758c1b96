"""The default root function: the two-level commitment of `merkle` over state entries.

A store hands its entries over sorted by key, so each namespace's entries are found by
bisection (a book's orders are contiguous; only the balances, whose namespace is the asset
at the end of the key, are grouped one by one): no (namespace, key, value) triple and no
dict per entry is built. The hash-only roots of a large state are computed in two
processes (`_roots_in_two_processes`), the namespaces split between them by size.
"""

from __future__ import annotations

import gc
import os
import signal
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from operator import itemgetter, lt
from typing import TypeAlias

from merkle import MerkleError, NamespacedCommitment
from merkle.build import root_of, root_of_columns
from state_machine import namespace_of
from store.records import ComputeRoots, Entry, Roots

Columns: TypeAlias = "tuple[bytes, Sequence[bytes], Sequence[bytes]]"
"""One namespace's entries as (namespace, keys, values), keys ascending."""

PARALLEL_MIN_ENTRIES = 100_000
"""Below this many entries a second process costs more (fork, copy-on-write) than it saves."""

_BALANCES = 0x01
_ORDERS = 0x02


def roots_of(commitment: NamespacedCommitment) -> Roots:
    """The roots a checkpoint stores, read from a commitment the caller keeps up to date."""
    namespaces = commitment.namespace_roots()
    return Roots(commitment.root(), tuple(sorted(namespaces.items())))


def commitment_of(entries: Iterable[Entry]) -> NamespacedCommitment:
    """The commitment (trees kept, to be updated) of a full state's entries."""
    if not isinstance(entries, list | tuple):
        entries = list(entries)
    columns = namespace_columns(entries)
    if columns is None:
        return NamespacedCommitment((namespace_of(key), key, value) for key, value in entries)
    return NamespacedCommitment.from_columns(columns)


def compute_roots(entries: Sequence[Entry]) -> Roots:
    """Roots of a full state from its canonical entries (the `ComputeRoots` of recovery).

    Hash-only (`merkle.build.root_of_columns`): no tree is built, so use it where only the
    roots are checked (verify); a caller that goes on updating builds `commitment_of`.
    With at least PARALLEL_MIN_ENTRIES entries and two CPUs, half of the hashing runs in a
    forked process (about 1.6-1.9x on two idle cores)."""
    columns = namespace_columns(entries)
    if columns is None:  # not sorted (or repeated keys): the general path sorts it out
        root, namespaces = NamespacedCommitment.roots_of(
            (namespace_of(key), key, value) for key, value in entries
        )
        return Roots(root, tuple(namespaces.items()))
    try:
        if len(entries) >= PARALLEL_MIN_ENTRIES and _cpus() >= 2:
            sub = _roots_in_two_processes(columns)
        else:
            sub = {ns: root_of_columns(keys, values) for ns, keys, values in columns}
    except MerkleError:  # two keys with one path: let the general path name it
        root, namespaces = NamespacedCommitment.roots_of(
            (namespace_of(key), key, value) for key, value in entries
        )
        return Roots(root, tuple(namespaces.items()))
    return Roots(root_of(sub), tuple(sorted(sub.items())))


class PendingRoots:
    """Roots being computed, by `start_roots`: `result()` waits for them, `cancel()` drops
    them (and ends the child computing them, if any)."""

    def __init__(self, compute: ComputeRoots, entries: Sequence[Entry]) -> None:
        self._compute = compute
        self._entries = entries
        self._pid = 0
        self._pipe = -1
        if (
            compute is compute_roots
            and len(entries) >= PARALLEL_MIN_ENTRIES
            and _cpus() >= 2
            and hasattr(os, "fork")
        ):
            self._fork()

    def _fork(self) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, leave without running any cleanup
            status = 1
            try:
                gc.disable()  # a collection would touch (and so copy) the inherited heap
                os.close(read_end)
                roots = _serial_roots(self._entries)
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(_encode_roots(roots))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def result(self) -> Roots:
        """The roots (computed here if no child computes them, or if the child failed)."""
        if not self._pid:
            return self._compute(self._entries)
        with os.fdopen(self._pipe, "rb") as pipe:
            received = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        roots = _decode_roots(received) if status == 0 else None
        return compute_roots(self._entries) if roots is None else roots

    def cancel(self) -> None:
        if self._pid:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            os.close(self._pipe)
            self._pid = 0


def start_roots(compute: ComputeRoots, entries: Sequence[Entry]) -> PendingRoots:
    """Start `compute(entries)` so that it runs while the caller rebuilds the machine.

    Only `compute_roots` (pure: hash-only, no side effect) of a large state on two CPUs
    runs in a forked child at once (about the whole roots time saved off a reopen);
    any other function runs in this process when `result()` is asked for.
    """
    return PendingRoots(compute, entries)


def _serial_roots(entries: Sequence[Entry]) -> Roots:
    columns = namespace_columns(entries)
    if columns is None:
        return compute_roots(entries)
    sub = {ns: root_of_columns(keys, values) for ns, keys, values in columns}
    return Roots(root_of(sub), tuple(sorted(sub.items())))


def _encode_roots(roots: Roots) -> bytes:
    parts = [roots.root]
    for namespace, root in roots.namespaces:
        parts += [len(namespace).to_bytes(2, "big"), namespace, root]
    return b"".join(parts)


def _decode_roots(data: bytes) -> Roots | None:
    """`_encode_roots` read back; None if `data` is not such an encoding (a failed child)."""
    if len(data) < 32:
        return None
    namespaces: list[tuple[bytes, bytes]] = []
    at = 32
    while at < len(data):
        size = int.from_bytes(data[at : at + 2], "big")
        namespace = data[at + 2 : at + 2 + size]
        root = data[at + 2 + size : at + 34 + size]
        if len(namespace) != size or len(root) != 32:
            return None
        namespaces.append((namespace, root))
        at += 34 + size
    return Roots(data[:32], tuple(namespaces))


def namespace_columns(entries: Sequence[Entry]) -> list[Columns] | None:
    """Each non-empty namespace's entries as columns, in namespace order; None unless the
    keys are strictly ascending (then the caller takes the general path).

    O(n) at C speed (column extraction, the order check) plus O(namespaces · log n)
    bisections, and one Python step per balance entry (their namespace is at the end of the
    key, so they are not contiguous).
    """
    keys = list(map(itemgetter(0), entries))
    if not all(map(lt, keys, keys[1:])):
        return None
    values = list(map(itemgetter(1), entries))
    chunks: dict[bytes, list[tuple[int, int]]] = {}
    balances: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    n = len(keys)
    i = 0
    while i < n:
        key = keys[i]
        if not key:
            return None  # no state key is empty: let the general path refuse it
        first = key[0]
        end = n if first == 0xFF else bisect_left(keys, bytes((first + 1,)), i)
        if first == _ORDERS:
            while i < end:  # one run per book: all keys starting with the same 5 bytes
                namespace = keys[i][:5]
                if len(namespace) < 5:
                    j = i + 1  # a short key is a namespace of its own
                else:
                    bound = (int.from_bytes(namespace, "big") + 1).to_bytes(5, "big")
                    j = bisect_left(keys, bound, i, end)
                chunks.setdefault(namespace, []).append((i, j))
                i = j
        elif first == _BALANCES:
            for j in range(i, end):
                namespace = namespace_of(keys[j])
                group = balances.get(namespace)
                if group is None:
                    group = balances[namespace] = ([], [])
                group[0].append(keys[j])
                group[1].append(values[j])
            i = end
        else:  # one namespace per leading byte (the globals or the nonces)
            chunks.setdefault(namespace_of(key), []).append((i, end))
            i = end
    columns: list[Columns] = []
    for namespace, spans in chunks.items():
        if len(spans) == 1:
            lo, hi = spans[0]
            columns.append((namespace, keys[lo:hi], values[lo:hi]))
        else:
            columns.append(
                (
                    namespace,
                    [k for lo, hi in spans for k in keys[lo:hi]],
                    [v for lo, hi in spans for v in values[lo:hi]],
                )
            )
    columns.extend((namespace, ks, vs) for namespace, (ks, vs) in balances.items())
    columns.sort(key=itemgetter(0))
    return columns


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _roots_in_two_processes(columns: list[Columns]) -> dict[bytes, bytes]:
    """{namespace: root} of `columns`, the namespaces split by entry count between this
    process and a forked child that sends its roots back through a pipe.

    The child only hashes data it inherited (copy-on-write) and leaves by `os._exit`: it
    touches no lock, file or store of the parent. If it fails in any way its share is
    computed here, so the result never depends on it (the same roots either way).
    """
    mine: list[Columns] = []
    theirs: list[Columns] = []
    load = [0, 0]
    for group in sorted(columns, key=lambda c: -len(c[1])):  # largest first, to the lighter
        side = 0 if load[0] <= load[1] else 1
        (mine if side == 0 else theirs).append(group)
        load[side] += len(group[1])
    if not theirs or not hasattr(os, "fork"):
        return {ns: root_of_columns(keys, values) for ns, keys, values in columns}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running any cleanup
        status = 1
        try:
            gc.disable()  # a collection would touch (and so copy) the inherited heap
            os.close(read_end)
            out = b"".join(root_of_columns(keys, values) for _, keys, values in theirs)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        roots = {ns: root_of_columns(keys, values) for ns, keys, values in mine}
        with os.fdopen(read_end, "rb") as pipe:
            received = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if status != 0 or len(received) != 32 * len(theirs):
        received = b"".join(root_of_columns(keys, values) for _, keys, values in theirs)
    for at, (ns, _, _) in enumerate(theirs):
        roots[ns] = received[32 * at : 32 * at + 32]
    return roots
