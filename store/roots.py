"""The default root function: the two-level commitment of `merkle` over state entries.

A store hands its entries over sorted by key, so each namespace's entries are found by
bisection (a book's orders are contiguous; only the balances, whose namespace is the asset
at the end of the key, are grouped one by one): no (namespace, key, value) triple and no
dict per entry is built. The hash-only roots of a large state are shared with a worker
process (`PendingRoots`, `merkle.worker`), which can start them while the caller rebuilds
the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter, lt
from typing import IO, TypeAlias, TypeVar

import merkle
from merkle import MerkleError, NamespacedCommitment
from merkle.build import root_of, root_of_columns
from merkle.worker import write_columns
from state_machine import namespace_of
from store.records import ComputeRoots, Entry, Roots

_Built = TypeVar("_Built")

Columns: TypeAlias = "tuple[bytes, Sequence[bytes], Sequence[bytes]]"
"""One namespace's entries as (namespace, keys, values), keys ascending."""

PARALLEL_MIN_ENTRIES = 100_000
"""Below this many entries a second process costs more (its start, the copy of the entries)
than it saves."""

_BALANCES = 0x01
_ORDERS = 0x02


def roots_of(commitment: NamespacedCommitment) -> Roots:
    """The roots a checkpoint stores, read from a commitment the caller keeps up to date."""
    namespaces = commitment.namespace_roots()
    return Roots(commitment.root(), tuple(sorted(namespaces.items())))


def commitment_of(
    entries: Iterable[Entry], *, keep_values: bool = False
) -> NamespacedCommitment:
    """The commitment (trees kept, to be updated) of a full state's entries.

    Its trees keep no values unless `keep_values` (the machine holds them: about 105 B per
    entry less at 1,000,000 entries); a caller that reads values or diffs through it either
    keeps them (a one-shot command) or reads them from the machine
    (`state_machine.entries.entry_value_of`)."""
    if not isinstance(entries, list | tuple):
        entries = list(entries)
    columns = namespace_columns(entries)
    if columns is None:
        return NamespacedCommitment(
            ((namespace_of(key), key, value) for key, value in entries), keep_values=keep_values
        )
    return NamespacedCommitment.from_columns(columns, keep_values=keep_values)


def compute_roots(entries: Sequence[Entry]) -> Roots:
    """Roots of a full state from its canonical entries (the `ComputeRoots` of recovery).

    Hash-only (`merkle.build.root_of_columns`): no tree is built, so use it where only the
    roots are checked (verify); a caller that goes on updating builds `commitment_of`.
    With at least PARALLEL_MIN_ENTRIES entries and two CPUs the namespaces are shared
    with a worker process (see `PendingRoots`)."""
    return PendingRoots(compute_roots, entries).result()


class CommitmentRoots:
    """A `ComputeRoots` that keeps the commitment it builds (`commitment`), for a caller that
    goes on updating it (a node's restart: `block_exec.executor.Executor.open`).

    Called, it builds `commitment_of(entries)` in this process. Given to `Store.restore`, a
    reopen's `store.roots_feed.RootsFeed` instead has a worker build each book's and each
    asset's balances tree while the scan reads the rest and this process rebuilds the
    machine, and sets `commitment` from those trees: the roots are read from the trees,
    never hashed twice.
    """

    def __init__(self) -> None:
        self.commitment: NamespacedCommitment | None = None

    def __call__(self, entries: Sequence[Entry]) -> Roots:
        self.commitment = commitment_of(entries)
        return roots_of(self.commitment)


def start_roots(compute: ComputeRoots, entries: Sequence[Entry]) -> PendingRoots:
    """Start `compute(entries)` so that it runs while the caller rebuilds the machine.

    Only `compute_roots` (pure: hash-only, no side effect) of a large state on two CPUs
    starts at once, in a worker process; any other function runs in this process when
    `result()` is asked for.
    """
    return PendingRoots(compute, entries)


class PendingRoots:
    """Roots being computed: `result()` gives them, `cancel()` drops them.

    For `compute_roots` of a large state on two CPUs, a worker process (`merkle.worker`)
    hashes the namespaces from the first on and writes each root (32 bytes) to a pipe as
    soon as it has it; `result()` hashes them from the last one down, reading the pipe
    between two, until the two meet, then ends the worker. So the work is shared whether or
    not the caller did something else meanwhile (a rebuild), and a worker that dies or is
    slow only leaves more to this process: the roots are the same either way.

    The worker is a fresh interpreter started by `subprocess` (fork+exec done in C), never
    an `os.fork` of this one: the caller may run threads (LevelDB's background compaction,
    a node's servers), and a forked copy of a threaded process can inherit a lock some other
    thread held (Python 3.12+ warns about it). The entries reach it through an anonymous
    in-memory file (memfd) as its stdin: a join and a length array per column here, O(n) at
    C speed; it reads the file mapped and touches no lock, file or store of this process.
    """

    def __init__(self, compute: ComputeRoots, entries: Sequence[Entry]) -> None:
        self._compute = compute
        self._entries = entries
        self._columns: list[Columns] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        if compute is compute_roots:
            self._columns = namespace_columns(entries)
            if (
                self._columns is not None
                and len(self._columns) >= 2
                and len(entries) >= PARALLEL_MIN_ENTRIES
                and _cpus() >= 2
            ):
                self._spawn(self._columns)

    def _spawn(self, columns: list[Columns]) -> None:
        """Start the worker; if it cannot start (no memory, no process left, no file), this
        process computes every root itself."""
        try:
            with _anonymous_file() as file:
                write_columns(file.fileno(), [(keys, values) for _, keys, values in columns])
                os.lseek(file.fileno(), 0, os.SEEK_SET)
                self._worker = subprocess.Popen(
                    worker_command(),
                    stdin=file,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,  # it dies silently: this process does the rest
                    env=_worker_environment(),
                )
        except OSError:
            return
        assert self._worker.stdout is not None
        self._pipe = self._worker.stdout.fileno()
        os.set_blocking(self._pipe, False)

    def result(self) -> Roots:
        """The roots (computed here as far as the worker did not compute them)."""
        if self._compute is not compute_roots:
            return self._compute(self._entries)
        columns = self._columns
        try:
            if columns is None:  # not sorted (or repeated keys): the general path
                return _general_roots(self._entries)
            sub = self._shared(columns)
        except MerkleError:  # two keys with one path: let the general path name it
            return _general_roots(self._entries)
        finally:
            self.cancel()
        return Roots(root_of(sub), tuple(sorted(sub.items())))

    def _shared(self, columns: list[Columns]) -> dict[bytes, bytes]:
        mine, received = self._meet_worker(
            len(columns), 32, lambda i: root_of_columns(columns[i][1], columns[i][2])
        )
        return {
            ns: mine[i] if i in mine else received[32 * i : 32 * i + 32]
            for i, (ns, _, _) in enumerate(columns)
        }

    def _meet_worker(
        self, count: int, size: int, build: Callable[[int], _Built]
    ) -> tuple[dict[int, _Built], bytes]:
        """Share `count` columns with the worker, which writes one `size`-byte record per
        column from the first on: `build(i)` them here from the last one down, reading its
        records between two, until the two meet. Returns what was built here (by column)
        and the worker's records (each column not built here has its whole record)."""
        received = bytearray()
        mine: dict[int, _Built] = {}
        at = count - 1
        while at >= len(received) // size:
            if self._worker is not None:
                received += self._available()
                if at < len(received) // size:
                    break
            mine[at] = build(at)
            at -= 1
        return mine, bytes(received)

    def _available(self) -> bytes:
        """What the worker has written so far (it never blocks)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self._pipe, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break  # the worker is done (or dead)
            chunks.append(chunk)
        return b"".join(chunks)

    def cancel(self) -> None:
        """End the worker (if any); idempotent."""
        worker = self._worker
        if worker is not None:
            self._worker = None
            worker.kill()  # (a no-op if it has exited)
            worker.wait()
            assert worker.stdout is not None
            worker.stdout.close()


def _anonymous_file() -> IO[bytes]:
    """A new unnamed read-write file: in memory (memfd) where the OS has it, else temporary."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("coreledger-roots", os.MFD_CLOEXEC), "w+b", buffering=0)
    return tempfile.TemporaryFile(buffering=0)


def worker_command(*arguments: str) -> list[str]:
    """The command line of `merkle.worker`: this interpreter, with `-P` so that a `merkle`
    directory in the working directory cannot stand in for the package."""
    return [sys.executable, "-P", "-m", "merkle.worker", *arguments]


def _worker_environment() -> dict[str, str]:
    """This environment, with the directory this process imports `merkle` from first on the
    worker's path (so it runs the same code, installed or not; the worker runs with `-P`,
    or `-m` would put the current directory before it)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(merkle.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (here, env.get("PYTHONPATH"))))
    return env


def _general_roots(entries: Iterable[Entry]) -> Roots:
    root, namespaces = NamespacedCommitment.roots_of(
        (namespace_of(key), key, value) for key, value in entries
    )
    return Roots(root, tuple(namespaces.items()))


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
