"""The ABCI framing: unsigned varint length prefixes, partial and batched reads, limits,
and the generated protobuf classes round-tripping CometBFT's messages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.abci.wire import FrameDecoder, FrameError, encode_frame, encode_uvarint


def test_uvarint_golden() -> None:
    # By hand from the LEB128 rule (7 bits a byte, low group first, high bit = more).
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(1) == b"\x01"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"
    assert encode_uvarint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    with pytest.raises(ValueError):
        encode_uvarint(-1)


def test_echo_request_bytes_golden() -> None:
    # Request.echo is field 1 (bytes 0x0a), RequestEcho.message is field 1 (0x0a):
    # the frame CometBFT sends for Echo("hi"), worked out by hand from types.proto.
    request = abci.Request(echo=abci.RequestEcho(message="hi"))
    assert encode_frame(request.SerializeToString()) == b"\x06\x0a\x04\x0a\x02hi"
    # Request.flush is field 2: an empty message is the two bytes 0x12 0x00.
    assert abci.Request(flush=abci.RequestFlush()).SerializeToString() == b"\x12\x00"


messages = st.lists(st.binary(max_size=300), max_size=20)


@given(messages, st.data())
def test_arbitrary_splits_decode_to_the_same_messages(
    items: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(item) for item in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder = FrameDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert out == items
    assert decoder.pending == 0


def test_one_byte_at_a_time() -> None:
    big = bytes(range(256)) * 3  # a two-byte length prefix
    stream = encode_frame(big) + encode_frame(b"") + encode_frame(b"x")
    decoder = FrameDecoder()
    out = [m for i in range(len(stream)) for m in decoder.feed(stream[i:i + 1])]
    assert out == [big, b"", b"x"]


def test_oversized_length_prefix_is_refused() -> None:
    decoder = FrameDecoder(max_frame=1000)
    with pytest.raises(FrameError, match="exceeds the limit"):
        decoder.feed(encode_uvarint(1001))
    # exactly the limit is fine, and waits for the body
    decoder = FrameDecoder(max_frame=1000)
    assert decoder.feed(encode_uvarint(1000) + b"a" * 999) == []
    assert decoder.feed(b"a") == [b"a" * 1000]


def test_endless_prefix_is_refused() -> None:
    with pytest.raises(FrameError, match="longer than 10 bytes"):
        FrameDecoder().feed(b"\xff" * 11)
    # an incomplete but still legal prefix just waits
    assert FrameDecoder().feed(b"\xff" * 5) == []


def test_generated_classes_are_what_the_script_generates(tmp_path: Path) -> None:
    """The committed classes equal a fresh run of scripts/gen_proto.sh (needs Go for the
    module cache; grpcio-tools is a test dependency)."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: scripts/gen_proto.sh cannot find the .proto files")
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "proto"
    env = {**os.environ, "GEN_PROTO_OUT": str(out), "PATH": os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    subprocess.run(["bash", str(root / "scripts" / "gen_proto.sh")], env=env, check=True,
                   capture_output=True, timeout=300)
    committed = root / "block_exec" / "abci" / "proto"

    def files(base: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(base)): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }

    assert files(out) == files(committed)
