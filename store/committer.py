"""The store writer's second thread: it writes the batches the writer's main thread has
staged, in order, and acknowledges each once written (`store.writer`).

Why a thread: LevelDB's write (inserting a batch's ~250 rows a block into the memtable,
appending them to its log and, for a checkpoint, the fsync) runs without the GIL, so it
overlaps the Python work of staging the next batch (history rows, their CBOR) and of
reading the next frames. Written in the writer's main thread, the two took turns: the
write was 40% of that thread's CPU over 3,000 simulated blocks, plus the fsync waits.

Durability is unchanged: a height is acknowledged only after `Store.commit` of its batch
has returned; batches are written one at a time in the order staged (a kill leaves a
prefix of them, each whole). A checkpoint's pruning runs here too, after its commit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from store.database import Store
from store.staging import StagedBatch


class CommitFailed(Exception):
    """The committer stopped on an error, already reported (`on_error`); `__cause__` is it."""


class Committer:
    """Writes staged batches in order on its own thread.

    `submit` hands one over (waiting while one more is queued behind the one being
    written: at most two batches staged and not yet written); `drain` waits until every
    submitted batch is written; `stop` ends the thread. After an error nothing more is
    written: `submit` and `drain` raise CommitFailed.
    """

    def __init__(
        self,
        store: Store,
        acknowledge: Callable[[int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._store = store
        self._acknowledge = acknowledge
        self._on_error = on_error
        self._queue: queue.Queue[StagedBatch | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-committer", daemon=True)
        self._thread.start()

    def submit(self, staged: StagedBatch) -> None:
        self._check()
        self._queue.put(staged)

    def drain(self) -> None:
        """Until every submitted batch is written (and its acknowledgement sent)."""
        self._queue.join()
        self._check()

    def stop(self) -> None:
        """Let the batches submitted be written, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _check(self) -> None:
        if self.error is not None:
            raise CommitFailed() from self.error

    def _run(self) -> None:
        while True:
            staged = self._queue.get()
            try:
                if staged is None:
                    return
                if self.error is None:
                    self._store.commit(staged)
                    self._acknowledge(staged.height)
            except BaseException as exc:  # reported at once: the executor may be waiting
                self.error = exc
                self._on_error(exc)
            finally:
                self._queue.task_done()
