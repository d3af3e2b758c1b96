"""Taking, listing, serving and pruning format-1 snapshots of a store's checkpoints.

A snapshot is taken of each checkpoint whose height is a multiple of the snapshot
interval (default 100 blocks); the newest `keep` (2) are listed and served from their
files, so a snapshot outlives the pruning of its checkpoint (a node checkpointing every
block keeps its snapshots for as long as a joining node needs them).

Consensus never waits for a snapshot (spec/store.md, "State sync"):
- `refresh()` (after each Commit) only looks at the latest checkpoint: O(keep), no I/O
  beyond a LevelDB snapshot handle (a sequence number) when a snapshot is due;
- the work itself (reading the checkpoint's entries, cutting and hashing chunks, writing
  them to files, deleting snapshots beyond `keep`) is done by `work(budget_ns)` in slices
  that the node runs when it is idle, each ending once its time budget (2 ms by default,
  wall clock) is spent: the clock is read every `CHECK_EVERY` entries (2.5-4 us of CPU
  each, measured), so a slice overruns its budget by at most ~0.1 ms of CPU. Only how the
  work is split depends on the clock: the entries are cut, hashed and written in key
  order whatever the slices, so the snapshot's bytes never depend on timing. Entries are
  read through that LevelDB snapshot, so blocks, checkpoints and prunes committed
  meanwhile change nothing of what a snapshot holds;
- `load_chunk` reads one chunk file (<= 10 MB) and checks its hash.

On disk, beside the store (local layout, not part of the format):
```
DIR/snapshots/H/metadata   the metadata bytes
DIR/snapshots/H/I          chunk I's bytes
DIR/snapshots/H.partial/   a snapshot being written (renamed to H when complete)
```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import blake3

from store.checkpoints import iter_latest_entries
from store.database import Store
from store.errors import CorruptStore, StoreError
from store.records import Entry
from store.snapshot_format import (
    DEFAULT_CHUNK_LIMIT,
    FORMAT,
    ChunkCutter,
    Snapshot,
    SnapshotFormatError,
    SnapshotMetadata,
    check_chunk_limit,
    chunk_hash,
)

SNAPSHOTS_DIR = "snapshots"
DEFAULT_SNAPSHOT_INTERVAL = 100  # blocks between snapshots (at checkpoint heights)
DEFAULT_SNAPSHOT_KEEP = 2  # CometBFT: "generally only the last two snapshots are needed"
DEFAULT_WORK_BUDGET_NS = 2_000_000  # time budget of one `work` slice (wall clock)
CHECK_EVERY = 32  # entries between two readings of the clock (~0.1 ms of work)
Clock = Callable[[], int]  # nanoseconds, monotonic (time.perf_counter_ns)
_PARTIAL = ".partial"


def chain_position(store: Store, height: int) -> tuple[int, bytes]:
    """The block time and block hash of `height`: its block row, or the store's base."""
    block = store.block(height)
    if block is not None:
        return block.time, block.block_hash
    base = store.base
    if base is not None and base.height == height:
        return base.time, base.block_hash
    raise CorruptStore(f"checkpoint {height}: its block is missing")


class _Job:
    """Writes the snapshot of one checkpoint, a slice at a time, into `H.partial/`.

    Each chunk is hashed and written entry by entry as it is cut (buffered file writes,
    an incremental blake3), so a slice costs O(budget) whatever the chunk size.
    """

    def __init__(
        self,
        path: str,
        metadata: SnapshotMetadata,
        view: Any,
        entries: Iterator[Entry],
        chunk_limit: int,
        block_time: Callable[[], int],
    ) -> None:
        self.path = path
        self.block_time = block_time
        self.time = 0
        self.partial = path + _PARTIAL
        self.template = metadata  # chunk hashes and entry count filled in as we go
        self.view = view
        self.entries = entries
        self.cutter = ChunkCutter(chunk_limit)
        self.hashes: list[bytes] = []
        self.count = 0
        self._file: BinaryIO | None = None
        self._hasher = blake3.blake3()

    def _next_file(self) -> BinaryIO:
        self._close_chunk()
        self._file = open(  # noqa: SIM115 - kept open across slices, closed in _close_chunk
            os.path.join(self.partial, str(len(self.hashes))), "wb", buffering=1 << 16
        )
        self._hasher = blake3.blake3()
        return self._file

    def _close_chunk(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.hashes.append(self._hasher.digest())

    def step(self, deadline: int, clock: Clock, max_entries: int) -> SnapshotMetadata | None:
        """Process entries until `clock()` reaches `deadline` (read every CHECK_EVERY
        entries) or `max_entries` are done; the finished metadata once all are written.
        O(entries processed); the bytes written do not depend on where a slice ends."""
        if self._file is None and not self.hashes:
            self.time = self.block_time()
            shutil.rmtree(self.partial, ignore_errors=True)
            os.makedirs(self.partial)
            self._next_file()
            return None  # the set-up is a slice of its own
        add = self.cutter.add
        file = self._file
        assert file is not None
        write = file.write
        update = self._hasher.update
        done = 0
        for key, value in self.entries:
            part, starts = add(key, value)
            if starts:
                file = self._next_file()
                write = file.write
                update = self._hasher.update
            write(part)
            update(part)
            done += 1
            if done == max_entries or (done % CHECK_EVERY == 0 and clock() >= deadline):
                self.count += done
                return None
        self.count += done
        self._close_chunk()
        self.release()
        return self._finish()

    def _finish(self) -> SnapshotMetadata:
        template = self.template
        if self.count != template.entry_count or not self.count:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise CorruptStore(
                f"checkpoint {template.height}: {self.count} state entries, "
                f"{template.entry_count} recorded"
            )
        metadata = SnapshotMetadata(
            template.height,
            self.time,
            template.block_hash,
            template.root,
            self.count,
            template.chunk_limit,
            tuple(self.hashes),
        )
        with open(os.path.join(self.partial, "metadata"), "wb") as file:
            file.write(metadata.encode())
        shutil.rmtree(self.path, ignore_errors=True)
        os.rename(self.partial, self.path)
        return metadata

    def release(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def abandon(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self.partial, ignore_errors=True)


def _remove(path: str) -> None:
    """Delete a file or a directory tree; nothing if it is gone already."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@dataclass(frozen=True, slots=True)
class _Served:
    metadata: SnapshotMetadata
    snapshot: Snapshot
    path: str


class SnapshotService:
    """Snapshots of the store's checkpoints at multiples of `interval`, the newest `keep`
    of them, built in the background (`work`), listed and served from their files (so a
    snapshot outlives the pruning of its checkpoint). Owned by the store's owner (one
    thread): call `refresh` after each commit and `work` whenever there is time; close it
    before the store."""

    def __init__(
        self,
        store: Store,
        *,
        interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        keep: int = DEFAULT_SNAPSHOT_KEEP,
        chunk_limit: int = DEFAULT_CHUNK_LIMIT,
        clock: Clock = time.perf_counter_ns,
    ) -> None:
        """`clock` times the `work` slices (tests may pass their own)."""
        if type(keep) is not int or keep < 1:
            raise StoreError(f"snapshot keep {keep!r} must be at least 1")
        if type(interval) is not int or interval < 1:
            raise StoreError(f"snapshot interval {interval!r} must be at least 1")
        self.store = store
        self.interval = interval
        self.keep = keep
        self.chunk_limit = check_chunk_limit(chunk_limit)
        self.clock = clock
        self.directory = os.path.join(store.directory, SNAPSHOTS_DIR)
        self._served: dict[int, _Served] = {}
        self._jobs: deque[tuple[int, _Job]] = deque()
        self._doomed: list[str] = []
        os.makedirs(self.directory, exist_ok=True)
        self._load()
        self.refresh()

    def _load(self) -> None:
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            served = self._read(path, int(name)) if name.isdigit() else None
            if served is None:
                self._doomed.append(path)
            else:
                self._served[served.metadata.height] = served
        self._trim()

    def _read(self, path: str, height: int) -> _Served | None:
        """A snapshot left by an earlier run, if it is whole and still this store's."""
        try:
            with open(os.path.join(path, "metadata"), "rb") as file:
                metadata = SnapshotMetadata.decode(file.read())
        except (OSError, SnapshotFormatError):
            return None
        info = self.store.checkpoint(height)  # None once pruned: the files stand alone
        if (
            metadata.height != height
            or height > self.store.head_height
            or metadata.chunk_limit != self.chunk_limit
            or (info is not None and info.roots.root != metadata.root)
        ):
            return None
        return _Served(metadata, Snapshot.of(metadata), path)

    def close(self) -> None:
        """Release the LevelDB snapshots of unfinished work (before the store closes)."""
        while self._jobs:
            self._jobs.popleft()[1].abandon()

    def _trim(self) -> None:
        """Keep the newest `keep` finished snapshots and at most `keep` jobs."""
        for height in sorted(self._served)[: -self.keep]:
            self._doomed.append(self._served.pop(height).path)
        while len(self._jobs) > self.keep:
            self._jobs.popleft()[1].abandon()

    # -- the consensus side: O(1) ---------------------------------------------------------

    def refresh(self) -> None:
        """Queue a snapshot of the latest checkpoint if it is due (its height a multiple
        of `interval`, newer than every snapshot). Called after each Commit: O(keep) and,
        for a due checkpoint, one LevelDB snapshot handle (no entry is read here)."""
        latest = self.store.latest_checkpoint()
        # not checkpoint 0 (a network chain's genesis state): it has no block to name
        if latest is None or latest.height == 0 or latest.height % self.interval:
            return
        newest = max([*self._served, *(height for height, _ in self._jobs)], default=0)
        if latest.height <= newest:
            return
        self._jobs.append((latest.height, self._job(latest.height)))
        self._trim()

    def _job(self, height: int) -> _Job:
        store = self.store
        info = store.checkpoint(height)
        if info is None:
            raise CorruptStore(f"checkpoint {height} is listed but missing")
        view = store._db.snapshot()  # the store package's own handle: a consistent view
        # The block time is read by the job's first slice: decoding the block row (its
        # block bytes included) costs milliseconds that Commit should not pay.
        template = SnapshotMetadata(
            height, 0, info.block_hash, info.roots.root, info.entry_count, self.chunk_limit, ()
        )
        return _Job(os.path.join(self.directory, str(height)), template, view,
                    iter_latest_entries(view), self.chunk_limit,
                    lambda: chain_position(store, height)[0])

    def list(self) -> list[Snapshot]:
        """ListSnapshots: the finished snapshots, newest first. O(keep)."""
        return [self._served[h].snapshot for h in sorted(self._served, reverse=True)]

    @property
    def pending(self) -> bool:
        return bool(self._jobs or self._doomed)

    # -- the background side: bounded slices ----------------------------------------------

    def work(self, budget_ns: int = DEFAULT_WORK_BUDGET_NS, *,
             max_entries: int | None = None) -> bool:
        """Do one slice of pending work: until `budget_ns` nanoseconds have passed (the
        clock read every CHECK_EVERY entries or deleted file) or, when given,
        `max_entries` entries are done (tests: slices of known size). Deleting the files
        of pruned snapshots comes first. Returns whether work remains. A checkpoint whose
        entries disagree with its record raises CorruptStore (its snapshot is dropped;
        the next refresh retries)."""
        deadline = self.clock() + budget_ns
        if self._doomed:
            self._delete(deadline)
            return self.pending
        if self._jobs:
            height, job = self._jobs[0]
            try:
                metadata = job.step(deadline, self.clock, max_entries or 0)  # 0: no cap
            except BaseException:
                self._jobs.popleft()
                job.abandon()
                raise
            if metadata is not None:
                self._jobs.popleft()
                self._served[height] = _Served(metadata, Snapshot.of(metadata), job.path)
                self._trim()
        return self.pending

    def _delete(self, deadline: int) -> None:
        """Delete files of the last doomed snapshot directory until `deadline` (a
        snapshot of a large state is many files of up to 10 MB: unlinking them all at
        once could take longer than a slice), then the directory once it is empty."""
        path = self._doomed[-1]
        if os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                _remove(os.path.join(path, name))
                if self.clock() >= deadline:
                    return
        _remove(path)
        self._doomed.pop()

    def finish(self) -> None:
        """Run all pending work now (tests, tools; a node uses `work` slices)."""
        while self.work(1 << 62):
            pass

    # -- serving ----------------------------------------------------------------------------

    def load_chunk(self, height: int, format: int, index: int) -> bytes:
        """LoadSnapshotChunk: chunk `index` of the snapshot at `height`, or b"" when there
        is no such chunk (unknown snapshot, or its file is missing or damaged)."""
        served = self._served.get(height)
        if format != FORMAT or served is None:
            return b""
        hashes = served.metadata.chunk_hashes
        if not 0 <= index < len(hashes):
            return b""
        try:
            with open(os.path.join(served.path, str(index)), "rb") as file:
                chunk = file.read()
        except OSError:
            return b""
        return chunk if chunk_hash(chunk) == hashes[index] else b""
