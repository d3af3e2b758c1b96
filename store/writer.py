"""The store writer process of a pipelined executor (`block_exec.pipeline` is the other
end, `store.pipe` the wire): it owns the LevelDB store while the executor applies blocks,
builds each handed-over block's `BlockRecord` from its bytes and stages the blocks that
have arrived as one atomic batch, which its committer thread (`store.committer`) writes,
then acknowledges the height they reach (spec/store.md, "Pipelined writing"). It lives
in `store` so that its process imports `store` alone, never `block_exec` (about a fifth
of the import time).

Run as `python -m store.writer CMD_FD ACK_FD LOCK_FD DIRECTORY INTERVAL KEEP SYNC`, by
`block_exec.pipeline.StoreWriter` only. It never prints: a failure is one `E` frame (one
line) to the executor, then exit status 1. It dies with its parent (PR_SET_PDEATHSIG on
Linux) or exits at end-of-file on its command pipe, so a killed run leaves no writer
holding the directory's lock: the store then holds a prefix of the blocks handed over,
each whole, like any kill.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
import signal
import sys
from array import array
from collections.abc import Sequence

from store.committer import CommitFailed, Committer
from store.database import Store
from store.pipe import BLOCK_HEAD, U64, FrameReader, frame, write_all
from store.records import BlockRecord, Checkpoint, PackedHistory, Roots


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def decode_block(payload: bytes) -> tuple[BlockRecord, Checkpoint | None]:
    """One `B` frame -> the record `Executor._persist` would build, and the checkpoint.

    The history comes as the executor's integers (`store.PackedHistory`), which the
    store turns into the same rows as the synchronous path's objects. Cost: O(bytes).
    """
    height, time, block_hash, *lengths = BLOCK_HEAD.unpack_from(payload, 1)
    offset = 1 + BLOCK_HEAD.size
    parts: list[bytes] = []
    for length in lengths:
        parts.append(payload[offset : offset + length])
        offset += length
    block_bytes, receipts, auth, history, users, checkpoint_bytes = parts
    packed = PackedHistory(array("Q", history), users.decode())
    record = BlockRecord(height, time, block_hash, block_bytes, receipts, (), (), (), auth,
                         packed)
    checkpoint = None
    if checkpoint_bytes:
        changes, root, namespaces = pickle.loads(checkpoint_bytes)  # key -> value or None
        checkpoint = Checkpoint(height, sorted(changes.items()), Roots(root, namespaces))
    return record, checkpoint


def stage_frames(store: Store, committer: Committer, payloads: Sequence[bytes]) -> None:
    """Stage the `B` frames that have arrived and hand them to the committer:
    consecutive blocks share one batch, a checkpoint closes its batch (the block's own,
    as `append_block` writes it) and is staged once the batches before it are written
    (it reads the state rows the previous checkpoint wrote)."""
    group: list[BlockRecord] = []
    for payload in payloads:
        record, checkpoint = decode_block(payload)
        group.append(record)
        if checkpoint is not None:
            committer.drain()
            committer.submit(store.stage_blocks(group, checkpoint))
            group = []
    if group:
        committer.submit(store.stage_blocks(group))


def _error_frame(exc: BaseException) -> list[bytes]:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return frame([b"E", f"store writer: {message}".encode()])


class _Acks:
    """The acknowledgement pipe, written from both threads (each frame in one write: a
    pipe write of less than PIPE_BUF bytes is never interleaved with another)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, parts: list[bytes]) -> None:
        write_all(self.fd, frame(parts))

    def durable(self, height: int) -> None:
        self.send([b"D", U64.pack(height)])

    def failed(self, exc: BaseException) -> None:
        with contextlib.suppress(OSError):
            write_all(self.fd, _error_frame(exc))


def serve(commands: FrameReader, ack_fd: int, open_store: type[Store], argv: list[str]) -> None:
    directory, interval, keep, sync = argv[3], int(argv[4]), int(argv[5]), argv[6] == "1"
    acks = _Acks(ack_fd)
    store: Store | None = None
    committer: Committer | None = None
    acks.send([b"R"])  # imported: ready for the store
    try:
        while True:
            if not commands.fill():
                return  # end of file: the executor is gone (or never handed the store over)
            blocks: list[bytes] = []
            for payload in commands.frames():
                kind = payload[:1]
                if kind == b"B":
                    blocks.append(payload)
                    continue
                if blocks and store is not None and committer is not None:
                    stage_frames(store, committer, blocks)
                    blocks = []
                if kind == b"O":
                    store = open_store(directory, checkpoint_interval=interval, keep=keep,
                                       sync_blocks=sync, create=False, lock_fd=int(argv[2]))
                    committer = Committer(store, acks.durable, acks.failed)
                elif kind == b"Q":
                    if store is not None and committer is not None:
                        committer.drain()
                        committer.stop()
                        committer = None
                        store.close()
                        store = None
                    acks.send([b"X"])
                    return
            if blocks:
                if store is None or committer is None:
                    raise RuntimeError("a block before the store was handed over")
                stage_frames(store, committer, blocks)
    finally:
        if committer is not None:
            committer.stop()  # (no LevelDB write may run while the store closes)
        if store is not None:
            store.close()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the executor stops it (Q), not ^C
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    gc.disable()  # short-lived, acyclic objects only: reference counting frees them
    cmd_fd, ack_fd = int(argv[0]), int(argv[1])
    try:
        serve(FrameReader(cmd_fd), ack_fd, Store, argv)
    except (BrokenPipeError, CommitFailed):
        return 1  # the executor is gone (nobody to tell), or the committer told it
    except BaseException as exc:  # never a traceback: one line to the executor
        _Acks(ack_fd).failed(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
