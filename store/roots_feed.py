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
"""

from __future__ import annotations

import os
import subprocess
from bisect import bisect_left
from typing import IO

from merkle import MerkleError
from merkle.build import root_of, root_of_columns
from merkle.worker import LOCATION, streamed_column, write_all
from store import roots as R
from store.records import ComputeRoots, Entry, Roots

_SHIPPED_PREFIXES = (0x01, 0x02)  # balances (01 + asset), books (02 + asset)


class RootsFeed:
    """The roots of entries handed over chunk by chunk as a scan reads them.

    `scanned(entries)` after each chunk (the list so far, only ever appended to), then
    `finish(entries)` once with the whole list gives the pending roots, whose `result()`
    the caller asks for after its rebuild (`cancel()` if the scan fails). Only
    `compute_roots` is fed, with at least `PARALLEL_MIN_ENTRIES` expected entries on two
    CPUs; otherwise no worker starts, and `finish` is `start_roots(compute, entries)`.
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
        if (
            compute is R.compute_roots
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
            self._worker = subprocess.Popen(
                R.worker_command("--stream", str(data)),
                stdin=pipe[0],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # it dies silently: this process does the rest
                pass_fds=(data,),
                env=R._worker_environment(),
            )
        except OSError:
            if pipe is not None:
                os.close(pipe[1])
            self._close_inputs()
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

    def cancel(self) -> None:
        """End the worker, if any (the scan failed): idempotent."""
        self._stop()

    def _stop(self) -> None:
        """Give up feeding: end the worker, forget what was shipped."""
        self._close_inputs()
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


def _roots_of_kept(kept: list[R.Columns]) -> dict[bytes, bytes]:
    """Each kept namespace's root; a namespace met in two chunks (the globals' entries
    beyond the known prefixes) is hashed over both (a root takes its entries in any order)."""
    merged: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    for namespace, keys, values in kept:
        group = merged.setdefault(namespace, ([], []))
        group[0].extend(keys)
        group[1].extend(values)
    return {namespace: root_of_columns(*group) for namespace, group in merged.items()}
