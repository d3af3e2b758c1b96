"""The pipelined store: a writer process stores the blocks the executor applies, on the
other core, and reports which of them are durable (spec/store.md, "Pipelined writing").

Why a process: the store's work per block (history rows, their CBOR, LevelDB batches,
checkpoint staging, pruning) cost about as much main-thread CPU as applying the block, and
LevelDB's compaction thread as much again; a thread would hold the GIL for all of it but
the LevelDB calls. The executor hands each applied block over as bytes it already has
(its canonical CBOR, its receipts line, its network auth) plus the only history fact
those do not hold, its cancellations (order id, reason, size left: 24 bytes each); the
writer decodes them and builds the very rows `Store.append_block` would write
(`store.writer`, which imports only `store` and what it needs: it starts in a fifth
of the time a process importing `block_exec` takes).

Wire (`store.pipe`): in both directions, frames `u32 length ‖ payload` (native byte
order: both ends are on this machine) over two pipes.
- executor -> writer: `O` (the store is detached: open it), `B` + BLOCK_HEAD + the bytes
  (one block, and at a checkpoint height its checkpoint: its changes as a dict, key to
  value or None, and its roots, pickled; the writer sorts the changes), `Q` (close).
- writer -> executor: `R` (started: its imports are done), `D` + u64 (every block up to
  that height is durable), `E` + a one-line error (the writer stops), `X` (closed).

Flow control: at most WINDOW blocks are handed over and not yet durable; the pipe itself
holds a few more only when that many are small. A writer that dies (killed, or failing)
surfaces as WriterFailed, never a hang: its end of both pipes closes with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import sys
from array import array
from itertools import chain
from operator import itemgetter

from block_exec.types import Block, BlockResult, Limit
from state_machine import Cancellation, Fill
from store import StoreError
from store.pipe import BLOCK_HEAD, PIPE_SIZE, U64, FrameReader, frame, write_all
from store.records import MARKET_TIF

WINDOW = 64  # blocks handed over and not yet durable, at most
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


# The packed fields of a Fill (asset, maker_order_id, taker_order_id, price, size,
# taker_side), its users (maker, taker), and of a Cancellation (order_id, reason, size).
_FILL_NUMBERS = itemgetter(0, 1, 2, 5, 6, 7)
_FILL_USERS = itemgetter(3, 4)
_CANCEL_NUMBERS = itemgetter(0, 6, 5)


def history_sidecar(block: Block, result: BlockResult) -> tuple[bytes, bytes]:
    """A block's history events as `u64` integers and the users they name (ASCII), the
    layout of `store.PackedHistory`, for the writer to build the history rows from.

    Cheaper here than decoding the block's CBOR there (cbor2 took 0.4 ms a block).
    Cost: O(txs + fills + cancellations): one Python step per tx and per order; the fills
    and cancellations (named tuples) are picked apart by `itemgetter` in C. The integers
    are gathered in one list and made an array at once: extending an array from
    iterators grew it item by item, 290 instructions an integer (this function: 80.2M ->
    73.8M instructions over 300 simulated blocks, callgrind). Unpacking each fill and
    cancellation in a Python loop instead of `itemgetter` was dearer (78.7M).
    """
    orders: list[int] = []
    users: list[str] = []  # the orders' users, then the fills'
    fills: list[Fill] = []
    cancels: list[Cancellation] = []
    for tx, receipt in zip(block.txs, result.results, strict=True):
        _, _, order_id, receipt_fills, _, _, cancellations = receipt  # no attribute lookups
        if order_id is not None:
            users.append(tx.user)
            if type(tx) is Limit:
                orders += (order_id, tx.asset, tx.side, tx.tif, tx.price, tx.size)
            else:
                orders += (order_id, tx.asset, tx.side, MARKET_TIF, 0, tx.size)  # type: ignore[union-attr]
            if receipt_fills:
                fills += receipt_fills
        if cancellations:
            cancels += cancellations
    numbers = [len(users), len(fills), len(cancels)]
    numbers += orders
    numbers += chain.from_iterable(map(_FILL_NUMBERS, fills))
    numbers += chain.from_iterable(map(_CANCEL_NUMBERS, cancels))
    users += chain.from_iterable(map(_FILL_USERS, fills))
    return array("Q", numbers).tobytes(), "".join(users).encode()


class WriterFailed(StoreError):
    """The store writer process failed or died; the message says why (one line)."""


class StoreWriter:
    """The executor's end of a writer process for one store directory.

    Spawned as early as possible (it imports while the executor recovers); `start` once
    the executor has detached its own handle of the store; `send_block` per block;
    `durable` / `wait` for the durable height; `close` drains and stops it.
    """

    def __init__(
        self,
        directory: str,
        lock_fd: int,
        *,
        checkpoint_interval: int,
        keep: int,
        sync_blocks: bool,
        durable: int,
    ) -> None:
        self.durable = durable  # the highest height known durable
        self.sent = durable  # the highest height handed over
        self.ready = False  # the process has started (`R`)
        self.started = False
        self.closed = False
        self.error: str | None = None
        cmd_r, self._cmd_w = os.pipe()
        self._ack_r, ack_w = os.pipe()
        with contextlib.suppress(OSError):  # only a bigger buffer; the default works too
            fcntl.fcntl(self._cmd_w, _F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(self._ack_r, False)
        self._acks = FrameReader(self._ack_r)
        argv = [sys.executable, "-m", "store.writer", str(cmd_r), str(ack_w),
                str(lock_fd), directory, str(checkpoint_interval), str(keep),
                "1" if sync_blocks else "0"]
        try:
            # stderr is shared: a caller waiting for the run's output to end also waits
            # for the writer to be gone (and the directory's lock with it).
            self._proc = subprocess.Popen(
                argv, pass_fds=(cmd_r, ack_w, lock_fd), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True,
            )
        except OSError as exc:
            os.close(self._cmd_w)
            os.close(self._ack_r)
            raise WriterFailed(f"cannot start the store writer ({exc.strerror})") from None
        finally:
            os.close(cmd_r)
            os.close(ack_w)

    # -- sending ------------------------------------------------------------------------

    def _send(self, parts: list[bytes]) -> None:
        if self.error is not None:
            raise WriterFailed(self.error)
        try:
            write_all(self._cmd_w, frame(parts))
        except BrokenPipeError:
            self._fail_from_acks("exited")
        except OSError as exc:
            self._fail(f"store writer: cannot send ({exc.strerror})")

    def wait_ready(self) -> None:
        """Until the process has started (interpreter and imports, ~0.3 s on this machine,
        overlapping the executor's recovery); WriterFailed if it cannot."""
        while not self.ready:
            self._read_acks(block=True)

    def start(self) -> None:
        """The executor has detached the store: the writer may open it now."""
        self._send([b"O"])
        self.started = True

    def send_block(
        self,
        height: int,
        time: int,
        block_hash: bytes,
        parts: tuple[bytes, bytes, bytes, bytes, bytes, bytes],
    ) -> None:
        """Hand over one block (block bytes, receipts, auth, history, users, checkpoint);
        first waits while WINDOW blocks are not durable yet."""
        while self.sent - self.durable >= WINDOW:
            self._read_acks(block=True)
        head = BLOCK_HEAD.pack(height, time, block_hash, *map(len, parts))
        self._send([b"B", head, *parts])
        self.sent = height

    # -- acknowledgements ---------------------------------------------------------------

    def poll(self) -> int:
        """The durable height, reading whatever acknowledgements have arrived (no wait)."""
        if self.started and not self.closed and self.error is None:
            self._read_acks(block=False)
        return self.durable

    def wait(self, height: int) -> None:
        """Until every block up to `height` is durable; WriterFailed if it never will be."""
        while self.durable < min(height, self.sent):
            self._read_acks(block=True)

    def _read_acks(self, block: bool) -> bool:
        """Read acknowledgements; with `block`, wait for at least one read. Returns
        whether the writer closed cleanly (`X`)."""
        if self.error is not None:
            raise WriterFailed(self.error)
        acks = self._acks
        if block:
            select.select([self._ack_r], [], [])
        while acks.fill():
            pass
        closed = False
        for payload in acks.frames():
            kind = payload[:1]
            if kind == b"D":
                self.durable = max(self.durable, U64.unpack_from(payload, 1)[0])
            elif kind == b"E":
                self._fail(payload[1:].decode("utf-8", "replace"))
            elif kind == b"X":
                closed = True
            elif kind == b"R":
                self.ready = True
        if acks.eof and not closed:
            self._fail_from_acks("exited")
        return closed

    def _fail_from_acks(self, what: str) -> None:
        """The writer is gone: its last error if it sent one, else its exit status."""
        while self._acks.fill():
            pass
        for payload in self._acks.frames():
            if payload[:1] == b"E":
                self._fail(payload[1:].decode("utf-8", "replace"))
        try:
            status = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            status = self._proc.wait()
        self._fail(
            f"store writer {what} unexpectedly (exit status {status}); blocks above "
            f"height {self.durable} were not stored"
        )

    def _fail(self, message: str) -> None:
        self.error = message
        raise WriterFailed(message)

    # -- stopping -----------------------------------------------------------------------

    def close(self) -> None:
        """Drain: every block handed over is stored when this returns (else WriterFailed),
        and the writer has closed the store."""
        if self.closed:
            return
        try:
            if self.started:
                self._send([b"Q"])
                while not self._read_acks(block=True):
                    pass
        finally:
            self.closed = True
            self._release()
        status = self._proc.wait()
        if status != 0 and self.error is None:
            self._fail(f"store writer exited with status {status}")

    def abort(self) -> None:
        """Stop the writer at once (what it has acknowledged is stored, the rest may not
        be: like a kill, which the store recovers from)."""
        if self.closed:
            return
        self.closed = True
        self._release()
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()

    def _release(self) -> None:
        for fd in (self._cmd_w, self._ack_r):
            with contextlib.suppress(OSError):
                os.close(fd)
