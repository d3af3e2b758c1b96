"""Strict decoding of blocks from JSON lines and from canonical CBOR (spec/blocks.md).

JSON: orjson on a fast path, a strict parse (`json` with hooks that refuse duplicate keys,
floats and NaN/Infinity) when it fails, so the first error is named. CBOR: cbor2 with
indefinite lengths and duplicate keys refused, then the canonical encoding must give the
same bytes. Both end in `blockobj.block_from_obj`, the schema walk that builds the Block
and its canonical CBOR.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO, NoReturn

import cbor2
import orjson

from block_exec.blockobj import _LIMIT_KEYS, _fail, _keys_problem, block_from_obj
from block_exec.encode import encode_block
from block_exec.errors import BlockDecodeError
from block_exec.types import Block

__all__ = [
    "block_from_obj",
    "decode_cbor_block",
    "decode_json_block",
    "iter_blocks",
    "iter_cbor_blocks",
    "iter_json_blocks",
    "read_block_file",
    "read_block_stream",
]


# -- JSON ---------------------------------------------------------------------------

class _JSONReject(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _JSONReject(f"duplicate key {json.dumps(key)}")
            seen.add(key)
    return obj


def _float(text: str) -> NoReturn:
    raise _JSONReject(f"number {text} is not an integer (floats are not allowed)")


def _constant(text: str) -> NoReturn:
    raise _JSONReject(f"{text} is not allowed")


_JSON = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_float, parse_constant=_constant)


def _parse_strict(text: str, where: str) -> object:
    try:
        return _JSON.decode(text)
    except _JSONReject as exc:
        _fail(where, f"bad JSON: {exc}")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int too long, ...
        _fail(where, f"bad JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def decode_json_block(line: str | bytes, where: str = "block") -> Block:
    """Decode one JSON block (one line of a block file).

    Fast path: parse with orjson (half the cost of `json`; it refuses NaN and integers past
    64 bits, which the strict parse then reports) without a duplicate-key hook, check
    the schema, then count the key separators. In a schema-valid block every string is a
    field name, an op/side/tif name or a hex address, so the text's `:` characters are
    exactly its key/value separators; fewer keys than separators means a duplicate key.
    Any failure re-parses strictly, so the error reported is the one the strict parse
    meets first (bad JSON and duplicate keys before schema errors).
    """
    try:
        # orjson reads bytes directly (and refuses what is not UTF-8, which the strict
        # parse then names): no str copy of the line on the fast path.
        obj = orjson.loads(line)
        block = block_from_obj(obj, where)
    except (ValueError, RecursionError, BlockDecodeError):
        return block_from_obj(_parse_strict(_line_text(line, where), where), where)
    # A ':' byte is the ':' character in UTF-8 (every byte of a longer sequence is >= 0x80).
    separators = line.count(b":") if isinstance(line, bytes) else line.count(":")
    if separators != 3 + sum(map(len, obj["txs"])):
        _parse_strict(_line_text(line, where), where)  # names the duplicate key
        _fail(where, "bad JSON: duplicate key")
    return block


def _line_text(line: str | bytes, where: str) -> str:
    try:
        return line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as exc:
        _fail(where, f"bad JSON: not UTF-8 ({exc.reason} at byte {exc.start})")


# -- CBOR ---------------------------------------------------------------------------

def _decode_cbor_item(
    data: memoryview, pos: int, where: str, stream: io.BytesIO | None = None
) -> tuple[Block, int]:
    """Decode the block starting at `pos`; return it and the offset just past it.

    `stream` (a BytesIO over the same bytes) is for sequences: `cbor2.loads` copies a
    memoryview slice to bytes, so slicing off the rest of the sequence for every block
    would copy the file once per block (quadratic). The end of the item is not read from
    the stream: a block is accepted only if its canonical encoding matches `data` from
    `pos`, so `pos + len(canonical)` is its end.
    """
    try:
        if stream is None:
            obj = cbor2.loads(data[pos:], allow_indefinite=False, allow_duplicate_keys=False)
        else:
            stream.seek(pos)
            obj = cbor2.CBORDecoder(
                stream, allow_indefinite=False, allow_duplicate_keys=False
            ).decode()
    except Exception as exc:  # cbor2 raises several types on malformed input
        _fail(where, f"bad CBOR: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if isinstance(obj, dict) and obj.get("txs").__class__ is list:
        for index, tx in enumerate(obj["txs"]):
            # In CBOR the canonical form always carries tif; say so rather than the
            # generic "non-canonical" below.
            if isinstance(tx, dict) and tx.get("op") == "limit" and "tif" not in tx:
                # Errors the spec names first still come first: the block's own fields,
                # the earlier txs, and missing fields of this tx before "tif" alphabetically.
                block_from_obj({**obj, "txs": obj["txs"][:index]}, where)
                problem = _keys_problem(tx, _LIMIT_KEYS, frozenset())
                if problem == 'missing field "tif"':
                    problem += " (required in CBOR)"
                _fail(f"{where} (height {obj['height']})", f"tx {index}: {problem}",
                      height=obj["height"], tx_index=index)
    block = block_from_obj(obj, where)
    canonical = encode_block(block)
    end = pos + len(canonical)
    if data[pos:end] != canonical:
        offset = next(
            (i for i, b in enumerate(canonical) if pos + i >= len(data) or data[pos + i] != b),
            len(canonical),
        )
        _fail(
            f"{where} (height {block.height})",
            f"non-canonical CBOR (differs from the canonical encoding at byte {pos + offset})",
            height=block.height,
        )
    return block, end


def decode_cbor_block(data: bytes, where: str = "block") -> Block:
    """Decode exactly one canonical CBOR block; trailing bytes are refused."""
    block, end = _decode_cbor_item(memoryview(data), 0, where)
    if end != len(data):
        _fail(f"{where} (height {block.height})", f"{len(data) - end} trailing bytes after it",
              height=block.height)
    return block


def iter_cbor_blocks(data: bytes) -> Iterator[Block]:
    """The blocks of a CBOR sequence (RFC 8742), each canonical."""
    view = memoryview(data)
    stream = io.BytesIO(data)  # shares the bytes: no copy
    pos = 0
    number = 1
    while pos < len(data):
        block, pos = _decode_cbor_item(view, pos, f"block {number} at byte {pos}", stream)
        yield block
        number += 1


# -- block files --------------------------------------------------------------------

_JSON_FIRST = frozenset(b"{ \t\r\n")


def iter_json_blocks(lines: Iterator[bytes] | list[bytes]) -> Iterator[Block]:
    """The blocks of JSON Lines; lines holding only spaces, tabs and CR are skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip(b" \t\r\n"):
            continue
        yield decode_json_block(line, f"block at line {number}")


def iter_blocks(data: bytes) -> Iterator[Block]:
    """The blocks of a whole block file's bytes: JSON Lines or a CBOR sequence.

    The first byte decides: `{` or JSON whitespace means JSON Lines, anything else CBOR;
    an empty file has no blocks. Iteration stops with BlockDecodeError at the first bad
    block (the ones before it are good).
    """
    if not data:
        return iter(())
    if data[0] in _JSON_FIRST:
        return iter_json_blocks(data.split(b"\n"))
    return iter_cbor_blocks(data)


def read_block_file(path: str) -> Iterator[Block]:
    """The blocks of a block file (see `iter_blocks`). JSON Lines are read line by line."""
    with open(path, "rb") as f:
        first = f.read(1)
        if not first:
            return
        if first[0] in _JSON_FIRST:
            f.seek(0)
            yield from iter_json_blocks(iter(f))
            return
        yield from iter_cbor_blocks(first + f.read())


def read_block_stream(stream: BinaryIO) -> Iterator[Block]:
    """Like `read_block_file` for an open binary stream (e.g. stdin)."""
    first = stream.read(1)
    if not first:
        return
    if first[0] in _JSON_FIRST:
        def lines() -> Iterator[bytes]:
            yield first if first == b"\n" else first + stream.readline()
            yield from stream
        yield from iter_json_blocks(lines())
        return
    yield from iter_cbor_blocks(first + stream.read())
