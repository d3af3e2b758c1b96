"""The ABCI socket server: CometBFT's four connections (consensus, mempool, query,
snapshot) served by one asyncio loop, so one owner touches the state and no two requests
ever run at once.

Each connection is read as a stream of frames (`wire.FrameDecoder`), every request is
answered in order on its own connection, and the answers are flushed to the socket when
CometBFT's Flush arrives. Bad input at the boundary never reaches the application: a
stream that is not frames (an oversized or endless length prefix) closes that connection;
a frame that is not a known Request gets an `exception` response; either way one log line,
and the other connections and the state go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message

from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.abci.wire import FrameDecoder, FrameError, encode_frame

log = logging.getLogger("coreledger.abci")

READ_SIZE = 1 << 16

Handler = Callable[[str, Message], Awaitable[Message]]
"""The application: (request kind, request message) -> the response message of that kind.
The kind is the name of the Request oneof field ("check_tx", "finalize_block", ...)."""


class AddressError(ValueError):
    """An ABCI address that is neither tcp://HOST:PORT nor unix://PATH."""


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "tcp" or "unix"
    host: str  # tcp only
    port: int  # tcp only
    path: str  # unix only


def parse_address(text: str) -> Address:
    """`tcp://HOST:PORT` or `unix://PATH` (a bare HOST:PORT means tcp)."""
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path:
            raise AddressError(f"bad ABCI address {text!r}: no socket path")
        return Address("unix", "", 0, path)
    rest = text[len("tcp://"):] if text.startswith("tcp://") else text
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"bad ABCI address {text!r}: want tcp://HOST:PORT or unix://PATH")
    return Address("tcp", host.strip("[]") or "127.0.0.1", int(port_text), "")


def exception_response(message: str) -> abci.Response:
    return abci.Response(exception=abci.ResponseException(error=message))


class AbciServer:
    """Serves `handler` on `address` until `stop()`; `serve()` returns once stopped."""

    def __init__(self, address: Address, handler: Handler) -> None:
        self.address = address
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._count = 0

    async def start(self) -> None:
        if self.address.scheme == "unix":
            if os.path.exists(self.address.path):
                os.unlink(self.address.path)  # a stale socket of a previous run
            self._server = await asyncio.start_unix_server(self._serve, self.address.path)
        else:
            self._server = await asyncio.start_server(
                self._serve, self.address.host, self.address.port
            )

    @property
    def port(self) -> int:
        """The TCP port listened on (useful with port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def serve(self) -> None:
        await self._stopped.wait()
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stop(self) -> None:
        """Stop between requests: the request being handled (if any) finishes first, since
        handlers run on this loop and this is called from it."""
        self._stopped.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._count += 1
        name = f"connection {self._count}"
        try:
            await self._connection(name, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%s: closed (%s)", name, exc)
        except asyncio.CancelledError:
            pass  # the server is stopping (`serve` cancels the connections it waits for)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _connection(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = FrameDecoder()
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            try:
                frames = decoder.feed(data)
            except FrameError as exc:
                log.warning("%s: closed: bad frame: %s", name, exc)
                return
            for frame in frames:
                response, keep_open = await self._answer(name, frame)
                writer.write(encode_frame(response.SerializeToString()))
                if not keep_open:
                    await writer.drain()
                    return
                if response.WhichOneof("value") == "flush":
                    await writer.drain()

    async def _answer(self, name: str, frame: bytes) -> tuple[abci.Response, bool]:
        """The response to one frame, and whether the connection stays open."""
        request = abci.Request()
        try:
            request.ParseFromString(frame)
        except DecodeError as exc:
            log.warning("%s: not a protobuf Request (%d bytes): %s", name, len(frame), exc)
            return exception_response("malformed request: not a protobuf Request"), False
        kind = request.WhichOneof("value")
        if kind is None:
            log.warning("%s: unknown request (%d bytes)", name, len(frame))
            return exception_response("unknown request"), True
        try:
            answer = await self.handler(kind, getattr(request, kind))
        except Exception as exc:  # a bug must not take the other connections down
            text = " ".join(str(exc).split()) or type(exc).__name__
            log.error("%s: %s failed: %s", name, kind, text)
            return exception_response(f"{kind} failed: {text}"), True
        response = abci.Response()
        getattr(response, kind).CopyFrom(answer)
        return response, True
