"""The wire between a pipelined executor (`block_exec.pipeline`) and its writer process
(`store.writer`): in both directions, frames `u32 length ‖ payload` over a pipe (native
byte order: both ends are on this machine). The messages are listed in
`block_exec.pipeline`; this module only frames them, so the writer needs nothing of
`block_exec`.
"""

from __future__ import annotations

import os
import struct

FRAME_HEAD = struct.Struct("=I")
# height, time, block hash, then the lengths of: block bytes, receipts line, auth,
# history sidecar, its users, pickled checkpoint (0: none).
BLOCK_HEAD = struct.Struct("=QQ32sIIIIII")
U64 = struct.Struct("=Q")
PIPE_SIZE = 1 << 20  # F_SETPIPE_SZ: a megabyte of blocks in flight, if the system allows


def write_all(fd: int, parts: list[bytes]) -> None:
    """Write `parts` in order, whole (one `writev` unless the pipe takes less)."""
    written = os.writev(fd, parts)
    total = sum(map(len, parts))
    if written == total:
        return
    data = memoryview(b"".join(parts))[written:]
    while data:
        data = data[os.write(fd, data):]


def frame(payload_parts: list[bytes]) -> list[bytes]:
    return [FRAME_HEAD.pack(sum(map(len, payload_parts))), *payload_parts]


class FrameReader:
    """Frames from a pipe: `read_frames` returns every whole frame that has arrived."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def fill(self) -> bool:
        """One read; False (and `eof`) when the other end has closed, or nothing is there
        on a non-blocking descriptor."""
        try:
            data = os.read(self.fd, PIPE_SIZE)
        except BlockingIOError:
            return False
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def frames(self) -> list[bytes]:
        """The whole frames in the buffer, removed from it (O(their bytes))."""
        out: list[bytes] = []
        buffer = self.buffer
        start = 0
        while len(buffer) - start >= 4:
            (length,) = FRAME_HEAD.unpack_from(buffer, start)
            end = start + 4 + length
            if end > len(buffer):
                break
            out.append(bytes(buffer[start + 4 : end]))
            start = end
        if start:
            del buffer[:start]
        return out
