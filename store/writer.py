"""The store writer process of a pipelined executor (`block_exec.pipeline` is the other
end, `store.pipe` the wire): it owns the LevelDB store while the executor applies blocks,
builds each handed-over block's `BlockRecord` from its bytes and writes the blocks that
have arrived in one atomic batch, then acknowledges the height they reach (spec/store.md,
"Pipelined writing"). It lives in `store` so that its process imports `store` alone, never
`block_exec` (about a fifth of the import time).

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


def store_frames(store: Store, payloads: Sequence[bytes]) -> int:
    """Write the `B` frames that have arrived: consecutive blocks share one batch, a
    checkpoint closes its batch (the block's own, as `append_block` writes it)."""
    group: list[BlockRecord] = []
    for payload in payloads:
        record, checkpoint = decode_block(payload)
        group.append(record)
        if checkpoint is not None:
            store.append_blocks(group, checkpoint)
            group = []
    if group:
        store.append_blocks(group)
    return store.head_height


def serve(commands: FrameReader, ack_fd: int, open_store: type[Store], argv: list[str]) -> None:
    directory, interval, keep, sync = argv[3], int(argv[4]), int(argv[5]), argv[6] == "1"
    store: Store | None = None
    write_all(ack_fd, frame([b"R"]))  # imported: ready for the store
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
                if blocks and store is not None:
                    write_all(ack_fd, frame([b"D", U64.pack(store_frames(store, blocks))]))
                    blocks = []
                if kind == b"O":
                    store = open_store(directory, checkpoint_interval=interval, keep=keep,
                                       sync_blocks=sync, create=False, lock_fd=int(argv[2]))
                elif kind == b"Q":
                    if store is not None:
                        store.close()
                        store = None
                    write_all(ack_fd, frame([b"X"]))
                    return
            if blocks:
                if store is None:
                    raise RuntimeError("a block before the store was handed over")
                write_all(ack_fd, frame([b"D", U64.pack(store_frames(store, blocks))]))
    finally:
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
    except BrokenPipeError:
        return 1  # the executor is gone: nobody to tell
    except BaseException as exc:  # never a traceback: one line to the executor
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with contextlib.suppress(OSError):
            write_all(ack_fd, frame([b"E", f"store writer: {message}".encode()]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
