"""Snapshot format 1 and its restorer, in process (spec/store.md, "State sync").

Expected values come from outside the code under test: encodings worked out by hand from
RFC 8949, states from `state_machine.state_entries`, roots from `merkle` through
`store.roots.compute_roots`.
"""

from __future__ import annotations

import cbor2
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state_machine import CoreStateMachine, Side, Tif, state_entries
from store.records import Entry
from store.roots import compute_roots
from store.snapshot_format import (
    FORMAT,
    MIN_CHUNK_LIMIT,
    Snapshot,
    SnapshotFormatError,
    SnapshotMetadata,
    build_metadata,
    chunk_entries,
    decode_chunk,
    encode_entry,
    entry_size,
)
from store.snapshot_restore import (
    ChunkVerdict,
    OfferVerdict,
    Restorer,
    SnapshotRefused,
)

USERS = ["0x" + f"{i:040x}" for i in range(1, 9)]
BLOCK_HASH = bytes(range(32))


def _state(ops: list[tuple[int, int, int, int, int]]) -> list[Entry]:
    """A state built by real operations: deposits, then limits (some rest, some fill)."""
    machine = CoreStateMachine()
    for user in USERS:
        machine.deposit(user, 0, 10**12)
        for asset in (1, 2, 3):
            machine.deposit(user, asset, 10**9)
    for index, asset, side, price, size in ops:
        machine.limit(USERS[index], asset, Side(side), price, size, Tif.GTC)
    return state_entries(machine)


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, len(USERS) - 1),
        st.integers(1, 3),
        st.integers(0, 1),
        st.integers(90, 110),
        st.integers(1, 1000),
    ),
    max_size=300,
)


def _snapshot(entries: list[Entry], limit: int = MIN_CHUNK_LIMIT, height: int = 7,
              root: bytes | None = None) -> tuple[Snapshot, list[bytes], bytes]:
    app_hash = compute_roots(entries).root
    metadata, chunks = build_metadata(height, 1_700_000_000_000, BLOCK_HASH,
                                      app_hash if root is None else root, entries, limit)
    return Snapshot.of(metadata), chunks, app_hash


def _restore_all(restorer: Restorer, chunks: list[bytes]) -> None:
    for index, chunk in enumerate(chunks):
        outcome = restorer.apply(index, chunk, f"peer{index}")
        assert outcome.verdict is ChunkVerdict.ACCEPT, outcome.reason


# -- the encoding, by hand ------------------------------------------------------------------


def test_entry_encoding_by_hand() -> None:
    # RFC 8949: array(2) = 0x82; bstr of n < 24 bytes = 0x40+n; of 24..255 = 0x58 n.
    assert encode_entry(b"\x00", b"\x01\x02") == bytes.fromhex("824100420102")
    assert encode_entry(b"k", b"v" * 24) == bytes.fromhex("82416b5818") + b"v" * 24
    assert entry_size(b"k", b"v" * 24) == 5 + 24
    assert encode_entry(b"k", b"v" * 256)[:6] == bytes.fromhex("82416b590100")


def _count(chunk: bytes) -> int:
    return len(cbor2.loads(b"\x9f" + chunk + b"\xff"))


def test_greedy_cut_by_hand() -> None:
    # Each entry [1-byte key, 97-byte value] is 1 + 2 + 2 + 97 = 102 bytes (the value
    # needs the 2-byte head 0x58 0x61): 10 fit in 1024 bytes (1020), the 11th starts a
    # new chunk; 25 entries -> chunks of 10, 10, 5, each just its entries' bytes.
    entries = [(bytes([i]), b"x" * 97) for i in range(25)]
    assert entry_size(*entries[0]) == 102
    chunks = chunk_entries(entries, 1024)
    assert [_count(chunk) for chunk in chunks] == [10, 10, 5]
    assert chunks[0] == b"".join(encode_entry(k, v) for k, v in entries[:10])
    assert len(chunks[0]) == 1020
    # 2-byte keys, 1-byte values: entries of 1 + 1 + 2 + 1 + 1 = 6 bytes.
    small = [(i.to_bytes(2, "big"), b"v") for i in range(205)]
    assert entry_size(*small[0]) == 6
    assert [_count(c) for c in chunk_entries(small, 1024)] == [170, 35]  # 170 * 6 = 1020


def test_metadata_layout_by_hand() -> None:
    metadata = SnapshotMetadata(5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024, (b"\x33" * 32,))
    encoded = metadata.encode()
    # array(8), 1, 5, 6, bstr(32) ..., bstr(32) ..., 3, 1024 = 0x19 0x0400, array(1) ...
    expected = (
        bytes.fromhex("88010506") + b"\x58\x20" + b"\x11" * 32 + b"\x58\x20" + b"\x22" * 32
        + bytes.fromhex("03190400") + b"\x81\x58\x20" + b"\x33" * 32
    )
    assert encoded == expected
    assert metadata.hash == blake3(expected).digest()
    assert SnapshotMetadata.decode(encoded) == metadata
    snapshot = Snapshot.of(metadata)
    assert (snapshot.height, snapshot.format, snapshot.chunks) == (5, FORMAT, 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        cbor2.dumps([1, 5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024]),  # 7 items
        cbor2.dumps([2, 5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024, [b"\x33" * 32]]),
        cbor2.dumps([1, 5, 6, b"\x11" * 31, b"\x22" * 32, 3, 1024, [b"\x33" * 32]]),
        cbor2.dumps([1, 5, 6, b"\x11" * 32, b"\x22" * 32, 3, 255, [b"\x33" * 32]]),
        cbor2.dumps([1, 5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024, []]),
        cbor2.dumps([1, -5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024, [b"\x33" * 32]]),
        # non-canonical: 5 as a two-byte head
        bytes.fromhex("8801180506") + b"\x58\x20" + b"\x11" * 32 + b"\x58\x20" + b"\x22" * 32
        + bytes.fromhex("03190400") + b"\x81\x58\x20" + b"\x33" * 32,
        # trailing byte
        SnapshotMetadata(5, 6, b"\x11" * 32, b"\x22" * 32, 3, 1024, (b"\x33" * 32,)).encode()
        + b"\x00",
    ],
)
def test_bad_metadata_is_refused(data: bytes) -> None:
    with pytest.raises(SnapshotFormatError):
        SnapshotMetadata.decode(data)


@pytest.mark.parametrize(
    ("chunk", "after"),
    [
        (b"", None),  # no entry
        (bytes.fromhex("824100420102") + b"\x00", None),  # trailing byte
        (bytes.fromhex("82580100420102"), None),  # 1-byte key with a 2-byte head
        (bytes.fromhex("825f4100ff420102"), None),  # indefinite-length key
        (bytes.fromhex("9f4100420102ff"), None),  # indefinite-length entry array
        (bytes.fromhex("824101410182410041"), None),  # keys descending (and truncated)
        (bytes.fromhex("82410141018241004101"), None),  # keys descending
        (bytes.fromhex("8241014101824101410"+"2"), None),  # the same key twice
        (bytes.fromhex("824100410001"), None),  # [key, value] then junk
        (bytes.fromhex("82410061"), None),  # a text string value
        (bytes.fromhex("824100420102"), b"\x00"),  # not above the previous chunk
        (bytes.fromhex("a0"), None),  # a map
        (bytes.fromhex("824100420102ff824101420102"), None),  # a break in the middle
        (bytes.fromhex("d818824100420102"), None),  # a tagged entry
    ],
)
def test_bad_chunk_is_refused(chunk: bytes, after: bytes | None) -> None:
    with pytest.raises(SnapshotFormatError):
        decode_chunk(chunk, after)


# -- round trip ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy, limit=st.sampled_from([MIN_CHUNK_LIMIT, 1500, 4 * 1024 * 1024]))
def test_any_state_chunked_and_restored_gives_same_entries_and_root(
    ops: list[tuple[int, int, int, int, int]], limit: int
) -> None:
    entries = _state(ops)
    snapshot, chunks, app_hash = _snapshot(entries, limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    restorer = Restorer(snapshot, app_hash)
    _restore_all(restorer, chunks)
    restored = restorer.restored
    assert restored is not None
    assert restored.entries == entries
    assert restored.roots.root == app_hash
    assert state_entries(restored.machine) == entries
    # Deterministic: the same state gives the same bytes.
    assert _snapshot(list(entries), limit)[0] == snapshot


def test_corrupted_chunk_is_retried_and_its_sender_rejected() -> None:
    entries = _state([(i % 8, 1 + i % 3, i % 2, 95 + (i % 2) * 10, 1 + i) for i in range(200)])
    snapshot, chunks, app_hash = _snapshot(entries)
    assert len(chunks) >= 3
    restorer = Restorer(snapshot, app_hash)
    assert restorer.apply(0, chunks[0], "good").verdict is ChunkVerdict.ACCEPT
    bad = bytearray(chunks[1])
    bad[len(bad) // 2] ^= 0x01
    outcome = restorer.apply(1, bytes(bad), "evil")
    assert outcome.verdict is ChunkVerdict.RETRY
    assert outcome.refetch == (1,)
    assert outcome.reject_senders == ("evil",)
    assert "chunk 1 from evil" in outcome.reason
    outcome = restorer.apply(1, chunks[1] + b"\x00", "evil2")  # right bytes plus one
    assert outcome.verdict is ChunkVerdict.RETRY
    for index in range(1, len(chunks)):
        assert restorer.apply(index, chunks[index], "good").verdict is ChunkVerdict.ACCEPT
    assert restorer.restored is not None
    assert restorer.restored.entries == entries


def test_offer_checks() -> None:
    entries = _state([(0, 1, 0, 100, 5)])
    snapshot, _, app_hash = _snapshot(entries)
    assert Restorer(snapshot, app_hash).metadata.height == 7
    cases = [
        (Snapshot(7, 2, snapshot.chunks, snapshot.hash, snapshot.metadata), app_hash,
         OfferVerdict.REJECT_FORMAT),
        (Snapshot(7, 1, snapshot.chunks, b"\x00" * 32, snapshot.metadata), app_hash,
         OfferVerdict.REJECT),
        (Snapshot(8, 1, snapshot.chunks, snapshot.hash, snapshot.metadata), app_hash,
         OfferVerdict.REJECT),
        (Snapshot(7, 1, snapshot.chunks + 1, snapshot.hash, snapshot.metadata), app_hash,
         OfferVerdict.REJECT),
        (Snapshot(7, 1, snapshot.chunks, snapshot.hash, b"junk"), app_hash, OfferVerdict.REJECT),
        (snapshot, bytes(32), OfferVerdict.REJECT),  # the root is not the trusted app hash
    ]
    for offered, trusted, verdict in cases:
        with pytest.raises(SnapshotRefused) as refused:
            Restorer(offered, trusted)
        assert refused.value.verdict is verdict


def test_consistent_lie_is_caught_by_the_final_root() -> None:
    # Metadata that claims the trusted root but whose chunks hold another state: every
    # chunk matches its hash, only the rebuilt root can tell.
    honest = _state([(0, 1, 0, 100, 5)])
    other = _state([(0, 1, 0, 100, 6)])
    app_hash = compute_roots(honest).root
    snapshot, chunks, _ = _snapshot(other, root=app_hash)
    restorer = Restorer(snapshot, app_hash)
    outcomes = [restorer.apply(i, chunk, f"peer{i}") for i, chunk in enumerate(chunks)]
    assert all(o.verdict is ChunkVerdict.ACCEPT for o in outcomes[:-1])
    assert outcomes[-1].verdict is ChunkVerdict.REJECT_SNAPSHOT
    assert "not the app hash" in outcomes[-1].reason
    assert set(outcomes[-1].reject_senders) == {f"peer{i}" for i in range(len(chunks))}
    assert restorer.restored is None


def test_inconsistent_state_is_rejected() -> None:
    # Locked funds without the order that holds them: hashes fine, the state is not.
    entries = _state([(0, 1, 0, 100, 5)])
    broken = [entry for entry in entries if entry[0][0] != 0x02]
    snapshot, chunks, _ = _snapshot(broken, root=compute_roots(broken).root)
    restorer = Restorer(snapshot, compute_roots(broken).root)
    outcomes = [restorer.apply(i, chunk, "peer") for i, chunk in enumerate(chunks)]
    outcome = outcomes[-1]
    assert outcome.verdict is ChunkVerdict.REJECT_SNAPSHOT
    assert "inconsistent" in outcome.reason


def test_non_greedy_cut_is_rejected() -> None:
    # A server cutting its own way: each chunk hashes right, but the bytes differ from
    # every honest server's, so it is refused (chunks must pool across servers).
    entries = _state([(i % 8, 1, 0, 100, 1 + i) for i in range(40)])
    app_hash = compute_roots(entries).root
    halves = [entries[:10], entries[10:]]
    chunks = [b"".join(encode_entry(*e) for e in half) for half in halves]
    metadata = SnapshotMetadata(7, 1, BLOCK_HASH, app_hash, len(entries), 4096,
                                tuple(blake3(c).digest() for c in chunks))
    restorer = Restorer(Snapshot.of(metadata), app_hash)
    assert restorer.apply(0, chunks[0], "a").verdict is ChunkVerdict.ACCEPT
    outcome = restorer.apply(1, chunks[1], "b")
    assert outcome.verdict is ChunkVerdict.REJECT_SNAPSHOT
    assert "greedy" in outcome.reason


def test_out_of_order_chunk_asks_for_the_expected_one() -> None:
    entries = _state([(i % 8, 1 + i % 3, i % 2, 95 + (i % 2) * 10, 1 + i) for i in range(200)])
    snapshot, chunks, app_hash = _snapshot(entries)
    restorer = Restorer(snapshot, app_hash)
    outcome = restorer.apply(1, chunks[1], "x")
    assert outcome.verdict is ChunkVerdict.RETRY
    assert outcome.refetch == (0,)
    _restore_all(restorer, chunks)
    assert restorer.done
