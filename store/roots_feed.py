"""Roots of a state being scanned, hashed by a worker while the scan is still reading it.

`store.roots.PendingRoots` starts its worker once the caller holds every entry; on a
reopen the scan of the entries (about 1.2 s at 1,000,000 orders) then leaves the second
core idle. A `RootsFeed` instead starts the worker before the scan, and the scan calls
`scanned(entries)` after each chunk it reads: each namespace the scan has passed (a book's
orders, and the balances once the scan is past them) goes to the worker at once
(`merkle.worker`'s streamed mode), so hashing overlaps the scan and then the rebuild.

A namespace is whole once the scan is past it because the entries come in ascending key
order: one book's orders (prefix 02 asset) are contiguous, and so are all the balances
(prefix 01), the only entries whose namespace is 01 + asset. Every other namespace (the
globals, the nonces, whatever a corrupt store holds) is kept back and hashed in this
process at the end. If the keys are not strictly ascending (a corrupt store), the feed
stops, ends its worker and `finish` hands over the whole-state path
(`store.roots.start_roots`), which takes the general path that names what is wrong.

Fed for a `store.roots.CommitmentRoots` (a node's restart, which keeps the trees), the
worker builds each shipped namespace's tree (`merkle.worker --trees`) instead of its root
alone, and `FedTrees.result()` loads them (about 0.2 us per entry, where a build costs
about 8): the roots are those of the trees, hashed once, in the worker for the most part.
"""

from __future__ import annotations

import os
import subprocess
from bisect import bisect_left
from collections.abc import Sequence
from operator import itemgetter
from typing import IO

from merkle import MerkleError, NamespacedCommitment, SparseMerkleTree
from merkle.build import root_of, root_of_columns
from merkle.nodes import without_gc
from merkle.worker import LOCATION, streamed_column, tree_from_bytes, write_all
from store import roots as R
from store.records import ComputeRoots, Entry, Roots

_SHIPPED_PREFIXES = (0x01, 0x02)  # balances (01 + asset), books (02 + asset)


class RootsFeed:
    """The roots of entries handed over chunk by chunk as a scan reads them.

    `scanned(entries)` after each chunk (the list so far, only ever appended to), then
    `finish(entries)` once with the whole list gives the pending roots, whose `result()`
    the caller asks for after its rebuild (`cancel()` if the scan fails). Only
    `compute_roots` (hash-only roots) and a `CommitmentRoots` (trees) are fed, with at least
    `PARALLEL_MIN_ENTRIES` expected entries on two CPUs; otherwise no worker starts, and
    `finish` is `start_roots(compute, entries)`.
    """

    def __init__(self, compute: ComputeRoots, expected_entries: int) -> None:
        self._compute = compute
        self._done = 0  # entries[:_done] are shipped or kept back
        self._last_key = b""  # the last key of entries[:_done]
        self._shipped: list[R.Columns] = []
        self._kept: list[R.Columns] = []
        self._worker: subprocess.Popen[bytes] | None = None
        self._file: IO[bytes] | None = None  # the columns shipped, appended one by one
        self._control = -1  # the pipe their LOCATION records go down
        self._offset = 0
        # A CommitmentRoots wants the trees: the worker writes them to this file.
        self._trees: IO[bytes] | None = None
        if (
            (compute is R.compute_roots or isinstance(compute, R.CommitmentRoots))
            and expected_entries >= R.PARALLEL_MIN_ENTRIES
            and R._cpus() >= 2
        ):
            self._spawn()

    def _spawn(self) -> None:
        """Start the worker on an empty file and a control pipe; if it cannot start, the
        feed stays off and `finish` falls back to `start_roots`."""
        pipe: tuple[int, int] | None = None
        try:
            self._file = R._anonymous_file()
            pipe = os.pipe()
            data = self._file.fileno()
            arguments = ["--stream", str(data)]
            descriptors = [data]
            if isinstance(self._compute, R.CommitmentRoots):
                self._trees = R._anonymous_file()
                arguments += ["--trees", str(self._trees.fileno())]
                descriptors.append(self._trees.fileno())
            self._worker = subprocess.Popen(
                R.worker_command(*arguments),
                stdin=pipe[0],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # it dies silently: this process does the rest
                pass_fds=descriptors,
                env=R._worker_environment(),
            )
        except OSError:
            if pipe is not None:
                os.close(pipe[1])
            self._close_inputs()
            self._close_trees()
            return
        finally:
            if pipe is not None:
                os.close(pipe[0])
        self._control = pipe[1]

    @property
    def feeding(self) -> bool:
        """Whether a worker is being fed."""
        return self._worker is not None

    def scanned(self, entries: list[Entry]) -> None:
        """Ship the namespaces `entries` (the scan so far) holds whole: O(new entries) at C
        speed (key columns, the order check, bisections), one Python step per balance."""
        if self._worker is None or not entries:
            return
        last = entries[-1][0]
        if not last:
            self._stop()  # no state key is empty: the general path refuses it
            return
        # The last key's group (its book, or its leading byte) may go on in the next chunk.
        group = last[:5] if last[0] == 0x02 else last[:1]
        self._take(entries, bisect_left(entries, (group,), self._done))

    def _take(self, entries: list[Entry], end: int) -> None:
        if end <= self._done or self._worker is None:
            return
        chunk = entries[self._done : end]
        columns = R.namespace_columns(chunk)
        if columns is None or not self._last_key < chunk[0][0]:
            self._stop()
            return
        self._done, self._last_key = end, chunk[-1][0]
        for column in columns:
            namespace = column[0]
            if len(namespace) == 5 and namespace[0] in _SHIPPED_PREFIXES:
                self._ship(column)
            else:
                self._kept.append(column)

    def _ship(self, column: R.Columns) -> None:
        _, keys, values = column
        if self._file is None:  # an earlier write failed: this process hashes the rest
            self._kept.append(column)
            return
        data = streamed_column(keys, values)
        try:
            write_all(self._file.fileno(), data)
            os.write(self._control, LOCATION.pack(self._offset, len(data)))  # < PIPE_BUF
        except OSError:  # no memory for the file, a dead worker: this process hashes it
            self._kept.append(column)
            self._close_inputs()
            return
        self._offset += len(data)
        self._shipped.append(column)

    def _close_inputs(self) -> None:
        """Tell the worker there is no more (the pipe's end) and drop the file here (the
        worker holds its own descriptor)."""
        if self._control >= 0:
            os.close(self._control)
            self._control = -1
        if self._file is not None:
            self._file.close()
            self._file = None

    def _close_trees(self) -> None:
        if self._trees is not None:
            self._trees.close()
            self._trees = None

    def cancel(self) -> None:
        """End the worker, if any (the scan failed): idempotent."""
        self._stop()

    def _stop(self) -> None:
        """Give up feeding: end the worker, forget what was shipped."""
        self._close_inputs()
        self._close_trees()
        if self._worker is not None:
            self._worker.kill()
            self._worker.wait()
            assert self._worker.stdout is not None
            self._worker.stdout.close()
            self._worker = None

    def finish(self, entries: list[Entry]) -> R.PendingRoots:
        """The roots of `entries` (the whole scan), pending: the worker goes on with what
        it was shipped while the caller rebuilds; `result()` shares what is left."""
        if self._worker is not None:
            self._take(entries, len(entries))
        worker = self._worker
        if worker is None:
            return R.start_roots(self._compute, entries)
        self._close_inputs()
        self._worker = None  # the pending roots own it now
        if isinstance(self._compute, R.CommitmentRoots) and self._trees is not None:
            trees, self._trees = self._trees, None
            return FedTrees(self._compute, entries, self._shipped, self._kept, worker, trees)
        return FedRoots(entries, self._shipped, self._kept, worker)


class FedRoots(R.PendingRoots):
    """`PendingRoots` whose worker was fed `shipped` (in that order) during the scan; the
    `kept` namespaces are hashed in this process. The same roots as `compute_roots`."""

    def __init__(
        self,
        entries: list[Entry],
        shipped: list[R.Columns],
        kept: list[R.Columns],
        worker: subprocess.Popen[bytes],
    ) -> None:
        super().__init__(R.compute_roots, [])  # no entries: it starts no worker of its own
        self._entries = entries
        self._columns = shipped
        self._kept = kept
        self._worker = worker
        assert worker.stdout is not None
        self._pipe = worker.stdout.fileno()
        os.set_blocking(self._pipe, False)

    def result(self) -> Roots:
        """The roots: the kept namespaces here, the shipped ones shared with the worker
        (`PendingRoots._shared`); the general path if two keys share a path."""
        try:
            sub = _roots_of_kept(self._kept)
            sub.update(self._shared(self._columns or []))
        except MerkleError:
            return R._general_roots(self._entries)
        finally:
            self.cancel()
        return Roots(root_of(sub), tuple(sorted(sub.items())))


class FedTrees(FedRoots):
    """`FedRoots` of a `CommitmentRoots` whose worker was fed `shipped` (in that order)
    during the scan and writes their trees to the file `trees`: `result()` builds the kept
    namespaces' trees here, then, as `PendingRoots` shares roots, builds the shipped ones
    from the last down until it meets the worker, and loads the worker's; it sets the
    commitment of the `CommitmentRoots` and gives the roots read off its trees. A tree the
    worker did not write (it died, or is slow) is built here; a MerkleError (two keys with
    one path) gives the general path, `CommitmentRoots` called on every entry."""

    def __init__(
        self,
        compute: R.CommitmentRoots,
        entries: list[Entry],
        shipped: list[R.Columns],
        kept: list[R.Columns],
        worker: subprocess.Popen[bytes],
        trees: IO[bytes],
    ) -> None:
        super().__init__(entries, shipped, kept, worker)
        self._commitment_roots = compute
        self._trees_file: IO[bytes] | None = trees

    def result(self) -> Roots:
        """The roots of the commitment now in the `CommitmentRoots` (O(n log n), most of it
        in the worker; loading a tree it built is O(n) in C)."""
        try:
            trees = without_gc(self._all_trees)
        except MerkleError:
            self.cancel()
            return self._commitment_roots(self._entries)
        finally:
            self.cancel()
        commitment = NamespacedCommitment.from_trees(trees)
        self._commitment_roots.commitment = commitment
        return R.roots_of(commitment)

    def _all_trees(self) -> list[tuple[bytes, SparseMerkleTree]]:
        trees = [(ns, _tree_of(keys, values)) for ns, keys, values in _merged(self._kept)]
        trees.extend(self._shared_trees(self._columns or []))
        trees.sort(key=_NAMESPACE)
        return trees

    def _shared_trees(self, columns: list[R.Columns]) -> list[tuple[bytes, SparseMerkleTree]]:
        mine, received = self._meet_worker(
            len(columns), LOCATION.size, lambda i: _tree_of(columns[i][1], columns[i][2])
        )
        # Where the worker's trees are in its file, in column order (whole records only).
        whole = len(received) - len(received) % LOCATION.size
        places = list(LOCATION.iter_unpack(received[:whole]))
        return [
            (ns, mine[i] if i in mine else self._load(places[i], keys, values))
            for i, (ns, keys, values) in enumerate(columns)
        ]

    def _load(
        self, place: tuple[int, int], keys: Sequence[bytes], values: Sequence[bytes]
    ) -> SparseMerkleTree:
        """The worker's tree at `place` in the file, or (if it is not one of `len(keys)`
        entries) the tree built here."""
        offset, length = place
        assert self._trees_file is not None
        data = os.pread(self._trees_file.fileno(), length, offset)
        try:
            tree = tree_from_bytes(data)
        except MerkleError:
            tree = None
        if tree is None or len(data) != length or len(tree) != len(keys):
            return _tree_of(keys, values)
        return tree

    def cancel(self) -> None:
        """End the worker and drop its file of trees; idempotent."""
        super().cancel()
        if self._trees_file is not None:
            self._trees_file.close()
            self._trees_file = None


_NAMESPACE = itemgetter(0)


def _tree_of(keys: Sequence[bytes], values: Sequence[bytes]) -> SparseMerkleTree:
    return SparseMerkleTree.from_columns(keys, values, keep_values=False)


def _merged(kept: list[R.Columns]) -> list[R.Columns]:
    """The kept columns, one per namespace: a namespace met in two chunks (the globals'
    entries beyond the known prefixes) has its entries of both (a tree takes its entries in
    any order)."""
    merged: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    for namespace, keys, values in kept:
        group = merged.setdefault(namespace, ([], []))
        group[0].extend(keys)
        group[1].extend(values)
    return [(namespace, keys, values) for namespace, (keys, values) in merged.items()]


def _roots_of_kept(kept: list[R.Columns]) -> dict[bytes, bytes]:
    """Each kept namespace's root (see `_merged`)."""
    return {namespace: root_of_columns(keys, values) for namespace, keys, values in _merged(kept)}
