"""Snapshot format 1: a kept checkpoint's state entries as chunks (spec/store.md, "State sync").

A snapshot of height H is the canonical state entries at H (the state the app hash of
H commits to), sorted by key, cut into chunks. Everything here is a pure function of
those entries and of the chain position at H, so every honest node serves byte-identical
snapshots (CometBFT pools chunks only across identical snapshots):

- an entry is the CBOR array `[key, value]` of two byte strings, canonical (shortest
  heads, definite lengths);
- a chunk is its entries one after the other (a CBOR sequence, RFC 8742: no array head,
  so a chunk can be hashed and written while it is cut); chunks are cut greedily: an
  entry goes into the current chunk unless that would make the chunk longer than
  `chunk_limit` bytes; a chunk holds at least one entry (a state always has one: its
  `next_order_id`);
- the metadata is the canonical CBOR array
  `[1, height, time, block_hash, root, entry_count, chunk_limit, [chunk_hash, ...]]`,
  `chunk_hash` the blake3 of a chunk's bytes; the snapshot's `hash` is the blake3 of the
  metadata bytes, so it commits to every chunk and to the state root inside.

Decoders are strict and raise `SnapshotFormatError` with one line naming the problem.
Hot path (chunk decoding, up to 10 MB a call): one C-level `cbor2.loads` of the entries
wrapped in an indefinite-length array, then a Python loop doing O(1) work per entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import blake3
import cbor2

from state_machine.values import cbor_head
from store.errors import StoreError
from store.records import Entry

FORMAT = 1
DEFAULT_CHUNK_LIMIT = 4 * 1024 * 1024
MIN_CHUNK_LIMIT = 256  # above any entry (at most ~110 bytes)
MAX_CHUNK_LIMIT = 10_000_000  # a chunk is at most 10 MB
MAX_CHUNKS = 100_000  # CometBFT's default statesync.max_snapshot_chunks
HASH_SIZE = 32
_U64 = 2**64 - 1


class SnapshotFormatError(StoreError):
    """Bytes that are not a well-formed format-1 snapshot chunk or metadata."""


def _head_size(length: int) -> int:
    if length < 24:
        return 1
    if length < 0x100:
        return 2
    if length < 0x10000:
        return 3
    return 5 if length < 0x100000000 else 9


def entry_size(key: bytes, value: bytes) -> int:
    """Encoded size of the entry `[key, value]`: 1 + head + key + head + value."""
    return 1 + _head_size(len(key)) + len(key) + _head_size(len(value)) + len(value)


def encode_entry(key: bytes, value: bytes) -> bytes:
    return b"\x82" + cbor_head(2, len(key)) + key + cbor_head(2, len(value)) + value


def check_chunk_limit(limit: int) -> int:
    if type(limit) is not int or not MIN_CHUNK_LIMIT <= limit <= MAX_CHUNK_LIMIT:
        raise SnapshotFormatError(
            f"chunk limit {limit!r} out of range [{MIN_CHUNK_LIMIT}, {MAX_CHUNK_LIMIT}]"
        )
    return limit


class ChunkCutter:
    """Cuts a key-ordered stream of entries into format-1 chunks, one entry at a time.

    `add` returns the encoded entry and whether it starts a new chunk, so a writer can
    hash and write each chunk as it grows (no chunk is ever joined in memory). O(1) per
    entry. Keys must come strictly ascending (not checked here: the writer reads them
    from LevelDB in key order).
    """

    def __init__(self, limit: int = DEFAULT_CHUNK_LIMIT) -> None:
        self.limit = check_chunk_limit(limit)
        self._size = 0

    def add(self, key: bytes, value: bytes) -> tuple[bytes, bool]:
        """The entry's bytes, and True when it starts a new chunk (not for the first)."""
        part = encode_entry(key, value)
        size = self._size + len(part)
        if self._size and size > self.limit:
            self._size = len(part)
            return part, True
        self._size = size
        return part, False


def chunk_entries(entries: Iterable[Entry], limit: int = DEFAULT_CHUNK_LIMIT) -> list[bytes]:
    """Every chunk of a state given as entries sorted by key (the reference cut)."""
    cutter = ChunkCutter(limit)
    chunks: list[bytes] = []
    parts: list[bytes] = []
    for key, value in entries:
        part, starts = cutter.add(key, value)
        if starts:
            chunks.append(b"".join(parts))
            parts = []
        parts.append(part)
    chunks.append(b"".join(parts))
    return chunks


def chunk_hash(chunk: bytes) -> bytes:
    return blake3.blake3(chunk).digest()


def decode_chunk(chunk: bytes, after: bytes | None = None) -> list[Entry]:
    """The entries of one chunk, strictly: at least one; canonical CBOR (re-encoding gives
    the same bytes: no longer heads, indefinite lengths, tags or trailing bytes); keys
    strictly ascending and above `after` (the previous chunk's last key)."""
    if not chunk:
        raise SnapshotFormatError("an empty chunk")
    try:
        items = cbor2.loads(b"\x9f" + chunk + b"\xff")
    except Exception as exc:  # cbor2 raises several types on garbage
        raise SnapshotFormatError(f"undecodable chunk ({type(exc).__name__})") from None
    if type(items) is not list:
        raise SnapshotFormatError("a chunk must be a sequence of entries")
    previous = after
    entries: list[Entry] = []
    append = entries.append
    for item in items:
        if type(item) is not list or len(item) != 2:
            raise SnapshotFormatError("a chunk entry must be an array [key, value]")
        key, value = item
        if type(key) is not bytes or type(value) is not bytes:
            raise SnapshotFormatError("a chunk entry's key and value must be byte strings")
        if previous is not None and key <= previous:
            raise SnapshotFormatError(f"chunk keys not strictly ascending at {key.hex()}")
        previous = key
        append((key, value))
    if cbor2.dumps(items)[_head_size(len(items)) :] != chunk:
        raise SnapshotFormatError("chunk is not canonical CBOR (or has trailing bytes)")
    return entries


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """What a format-1 snapshot's `metadata` holds (its `hash` is blake3 of `encode()`)."""

    height: int
    time: int  # the block time of `height` (ms): the executor's "never backwards" bound
    block_hash: bytes  # the block hash of `height` (spec/blocks.md): the next block's prev
    root: bytes  # the state root at `height`: the app hash of `height`
    entry_count: int
    chunk_limit: int
    chunk_hashes: tuple[bytes, ...]

    def encode(self) -> bytes:
        return cbor2.dumps(
            [
                FORMAT,
                self.height,
                self.time,
                self.block_hash,
                self.root,
                self.entry_count,
                self.chunk_limit,
                list(self.chunk_hashes),
            ]
        )

    @property
    def hash(self) -> bytes:
        return blake3.blake3(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> SnapshotMetadata:
        """Strict: the canonical encoding of a well-formed metadata array, nothing else."""
        try:
            items = cbor2.loads(data)
        except Exception as exc:
            raise SnapshotFormatError(f"undecodable metadata ({type(exc).__name__})") from None
        if type(items) is not list or len(items) != 8:
            raise SnapshotFormatError("metadata must be an array of 8 items")
        fmt, height, time, block_hash, root, entry_count, limit, hashes = items
        if fmt != FORMAT or type(fmt) is not int:
            raise SnapshotFormatError(f"metadata of format {fmt!r}, not {FORMAT}")
        for what, number in (("height", height), ("time", time), ("entry count", entry_count)):
            if type(number) is not int or not 0 <= number <= _U64:
                raise SnapshotFormatError(f"metadata {what} {number!r} out of range")
        for what, digest in (("block hash", block_hash), ("root", root)):
            if type(digest) is not bytes or len(digest) != HASH_SIZE:
                raise SnapshotFormatError(f"metadata {what} must be {HASH_SIZE} bytes")
        if type(limit) is not int:
            raise SnapshotFormatError("metadata chunk limit must be an integer")
        check_chunk_limit(limit)
        if type(hashes) is not list or not 1 <= len(hashes) <= MAX_CHUNKS:
            raise SnapshotFormatError(f"metadata must list 1 to {MAX_CHUNKS} chunk hashes")
        if any(type(h) is not bytes or len(h) != HASH_SIZE for h in hashes):
            raise SnapshotFormatError(f"every chunk hash must be {HASH_SIZE} bytes")
        metadata = cls(height, time, block_hash, root, entry_count, limit, tuple(hashes))
        if metadata.encode() != data:
            raise SnapshotFormatError("metadata is not canonical CBOR")
        return metadata


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot as ListSnapshots lists it and OfferSnapshot offers it."""

    height: int
    format: int
    chunks: int
    hash: bytes
    metadata: bytes

    @classmethod
    def of(cls, metadata: SnapshotMetadata) -> Snapshot:
        encoded = metadata.encode()
        return cls(
            metadata.height,
            FORMAT,
            len(metadata.chunk_hashes),
            blake3.blake3(encoded).digest(),
            encoded,
        )


def build_metadata(
    height: int,
    time: int,
    block_hash: bytes,
    root: bytes,
    entries: Iterable[Entry],
    chunk_limit: int = DEFAULT_CHUNK_LIMIT,
) -> tuple[SnapshotMetadata, list[bytes]]:
    """The metadata and chunks of a state given in full (tests, benchmarks, tools)."""
    listed = list(entries)
    chunks = chunk_entries(listed, chunk_limit)
    metadata = SnapshotMetadata(
        height,
        time,
        block_hash,
        root,
        len(listed),
        chunk_limit,
        tuple(chunk_hash(chunk) for chunk in chunks),
    )
    return metadata, chunks
