"""The ABCI socket framing of CometBFT v0.38: each message is an unsigned varint (LEB128)
length, then that many bytes of protobuf.

A TCP read may hold several messages, or part of one (even part of the length prefix):
`FrameDecoder.feed` takes whatever bytes arrived and returns the messages they complete,
keeping the rest for the next call.
"""

from __future__ import annotations

MAX_FRAME = 104_857_600
"""The largest message accepted, in bytes: CometBFT's own ABCI limit (100 MiB)."""

_MAX_PREFIX = 10  # a uvarint of a 64-bit value takes at most 10 bytes


class FrameError(ValueError):
    """The byte stream is not a sequence of frames: the connection cannot continue."""


def encode_uvarint(value: int) -> bytes:
    """`value` (>= 0) as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError("a uvarint is never negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_frame(message: bytes) -> bytes:
    """One frame: the length prefix, then `message`."""
    return encode_uvarint(len(message)) + message


class FrameDecoder:
    """Incremental decoder of a stream of frames.

    `feed` is O(len(data) + sum of the messages it returns); bytes of an incomplete frame
    are kept (at most one partial frame plus the new data). A prefix longer than 10 bytes
    or a length above `max_frame` raises FrameError, and the decoder must then be dropped.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet complete a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by `data`, in stream order."""
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            length = 0
            shift = 0
            cursor = pos
            while True:
                if cursor == end:
                    self._keep(pos)
                    return messages
                if cursor - pos == _MAX_PREFIX:
                    raise FrameError("length prefix longer than 10 bytes")
                byte = buffer[cursor]
                cursor += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            if length > self.max_frame:
                raise FrameError(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
            if end - cursor < length:
                self._keep(pos)
                return messages
            messages.append(bytes(buffer[cursor:cursor + length]))
            pos = cursor + length
        self._keep(pos)
        return messages

    def _keep(self, pos: int) -> None:
        if pos:
            del self._buffer[:pos]
