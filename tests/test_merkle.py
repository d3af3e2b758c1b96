"""Tests of `merkle` against a deliberately naive reference written from spec/merkle.md.

The reference (`ref_*` below) recomputes everything recursively from the set of entries: no
caching, no compression, no batching. `python tests/test_merkle.py --write-vectors` regenerates
spec/vectors/merkle_roots.json from it (never from the code under test).
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from merkle import (
    EMPTY,
    InvalidEntryError,
    MerkleError,
    NamespacedCommitment,
    NamespacedProof,
    Proof,
    ProofFormatError,
    ProofKind,
    SparseMerkleTree,
    diff,
    diff_namespaced,
    verify,
    verify_namespaced,
)

T = TypeVar("T")
VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "merkle_roots.json"

# ------------------------------------------------------------------ the naive reference


def ref_h(data: bytes) -> bytes:
    return blake3(data).digest()


def ref_bit(h: bytes, i: int) -> int:
    """Bit i of a path, most significant bit of the first byte first."""
    return (h[i // 8] >> (7 - i % 8)) & 1


def ref_leaf(key: bytes, value: bytes) -> bytes:
    return ref_h(b"\x00" + ref_h(key) + ref_h(value))


def ref_subtree(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """Hash of the subtree at `depth` holding exactly `entries` (all share the path prefix)."""
    return ref_node([(ref_h(k), k, v) for k, v in entries], depth)


def ref_node(entries: list[tuple[bytes, bytes, bytes]], depth: int) -> bytes:
    """`ref_subtree` of (path, key, value) triples: each path is hashed once, not per level."""
    if not entries:
        return bytes(32)
    if len(entries) == 1:
        return ref_leaf(entries[0][1], entries[0][2])
    if depth >= 256:
        raise AssertionError("two keys with the same path")
    left = [e for e in entries if ref_bit(e[0], depth) == 0]
    right = [e for e in entries if ref_bit(e[0], depth) == 1]
    return ref_h(b"\x01" + ref_node(left, depth + 1) + ref_node(right, depth + 1))


def ref_root(m: dict[bytes, bytes]) -> bytes:
    return ref_subtree(sorted(m.items()), 0)


def ref_namespaced_root(m: dict[bytes, dict[bytes, bytes]]) -> bytes:
    return ref_root({ns: ref_root(sub) for ns, sub in m.items() if sub})


def ref_prove(m: dict[bytes, bytes], key: bytes) -> bytes:
    """The canonical proof bytes for `key`, built level by level from the definition."""
    kh = ref_h(key)
    entries = [(ref_h(k), k, v) for k, v in sorted(m.items())]
    siblings: list[bytes] = []
    depth = 0
    while len(entries) > 1:
        mine = [e for e in entries if ref_bit(e[0], depth) == ref_bit(kh, depth)]
        other = [e for e in entries if ref_bit(e[0], depth) != ref_bit(kh, depth)]
        siblings.append(ref_node(other, depth + 1))
        entries = mine
        depth += 1
    if not entries:
        kind, tail = 1, b""
    elif entries[0][1] == key:
        kind, tail = 0, b""
    else:
        kind, tail = 2, entries[0][0] + ref_h(entries[0][2])
    bitmap = bytearray((depth + 7) // 8)
    for i, s in enumerate(siblings):
        if s != bytes(32):
            bitmap[i // 8] |= 0x80 >> (i % 8)
    body = b"".join(s for s in siblings if s != bytes(32))
    return bytes([kind]) + depth.to_bytes(2, "big") + bytes(bitmap) + body + tail


def ref_apply(m: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]]) -> None:
    for k, v in changes:
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v


def ref_diff(
    a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> list[tuple[bytes, bytes | None, bytes | None]]:
    return sorted((k, a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k))


# ------------------------------------------------------------------------- strategies

def order_key(asset: int, order_id: int) -> bytes:
    """A state key as spec/state.md builds it: 02 asset(u32) order_id(u64)."""
    return b"\x02" + asset.to_bytes(4, "big") + order_id.to_bytes(8, "big")


def balance_key(user: bytes, asset: int) -> bytes:
    """01 user(20 bytes) asset(u32)."""
    return b"\x01" + user + asset.to_bytes(4, "big")


short_keys = st.binary(max_size=3)  # small: plenty of repeated keys, updates and deletes
wide_keys = st.one_of(
    st.binary(min_size=32, max_size=32),  # a full-width key (e.g. a 32-byte hash)
    st.builds(order_key, st.integers(0, 3), st.integers(0, 2**64 - 1)),
    st.builds(balance_key, st.binary(min_size=20, max_size=20), st.integers(0, 3)),
)
keys = st.one_of(short_keys, wide_keys)
values = st.binary(max_size=4)
changes_st = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=60)
maps = st.dictionaries(keys, values, max_size=40)


@st.composite
def wide_changes(draw: st.DrawFn) -> list[tuple[bytes, bytes | None]]:
    """Changes over a small pool of full-width keys, so that the same key is inserted,
    updated and deleted again (independently drawn wide keys almost never repeat)."""
    pool = draw(st.lists(wide_keys, min_size=1, max_size=30, unique=True))
    return draw(
        st.lists(st.tuples(st.sampled_from(pool), st.one_of(st.none(), values)), max_size=80)
    )


def big_keys(style: str, count: int, seed: int) -> list[bytes]:
    """`count` distinct realistic keys: full-width hashes, order keys or balance keys."""
    if style == "hash":
        return [ref_h(seed.to_bytes(8, "big") + i.to_bytes(4, "big")) for i in range(count)]
    if style == "order":  # consecutive ids in a few books, as the core assigns them
        return [order_key(i % 3, seed + i) for i in range(count)]
    users = [ref_h(b"user" + seed.to_bytes(8, "big") + u.to_bytes(4, "big"))[:20]
             for u in range(count // 4 + 1)]
    return [balance_key(users[i // 4], i % 4) for i in range(count)]


@st.composite
def big_maps(draw: st.DrawFn) -> dict[bytes, bytes]:
    """1,000 to 2,500 entries with realistic keys: trees about 20 levels deep at the
    deepest leaf (built from a drawn seed: hypothesis cannot draw that many bytes)."""
    count = draw(st.integers(1000, 2500), label="entries")
    style = draw(st.sampled_from(["hash", "order", "balance"]), label="style")
    seed = draw(st.integers(0, 2**32), label="seed")
    return {k: bytes([i % 251]) * (i % 5) for i, k in enumerate(big_keys(style, count, seed))}


@st.composite
def big_batches(
    draw: st.DrawFn, model: dict[bytes, bytes]
) -> list[list[tuple[bytes, bytes | None]]]:
    """Up to 4 batches over `model`: updates and deletes of existing keys, new keys."""
    existing = sorted(model)
    batches = []
    for b in range(draw(st.integers(1, 4), label="batches")):
        picks = draw(st.lists(st.integers(0, len(existing) - 1), max_size=300), label="picks")
        deletes = draw(st.lists(st.integers(0, len(existing) - 1), max_size=200), label="dels")
        new = draw(st.integers(0, 300), label="new")
        batch: list[tuple[bytes, bytes | None]] = [
            (existing[i], bytes([b, i % 256])) for i in picks
        ]
        batch += [(existing[i], None) for i in deletes]
        batch += [(ref_h(bytes([b]) + i.to_bytes(4, "big")), b"n") for i in range(new)]
        batches.append(batch)
    return batches


SETTINGS = settings(max_examples=200, deadline=None)


def split(changes: list[T], cuts: list[int]) -> list[list[T]]:
    """`changes` cut into consecutive batches at the given (wrapped) points."""
    points = sorted({c % (len(changes) + 1) for c in cuts})
    out: list[list[T]] = []
    start = 0
    for p in [*points, len(changes)]:
        out.append(changes[start:p])
        start = p
    return out


# ------------------------------------------------------------------------------- hashing


def test_blake3_official_vector_for_empty_input() -> None:
    assert (
        blake3(b"").hexdigest()
        == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )


def test_empty_tree_root_is_empty_hash() -> None:
    assert SparseMerkleTree().root() == EMPTY == bytes(32)
    assert NamespacedCommitment().root() == EMPTY


def test_single_leaf_root_is_its_leaf_hash() -> None:
    assert SparseMerkleTree({b"k": b"v"}).root() == ref_leaf(b"k", b"v")


# --------------------------------------------------------------------------- root, update


@SETTINGS
@given(changes_st, st.lists(st.integers(min_value=0, max_value=1000), max_size=6), maps)
def test_random_batches_match_naive_reference(
    changes: list[tuple[bytes, bytes | None]], cuts: list[int], initial: dict[bytes, bytes]
) -> None:
    tree = SparseMerkleTree.from_items(initial)
    model = dict(initial)
    for batch in split(changes, cuts):
        tree.update(batch)
        ref_apply(model, batch)
        assert len(tree) == len(model)
    assert tree.root() == ref_root(model)
    assert tree.items() == sorted(model.items())
    assert all(tree.get(k) == v for k, v in model.items())
    # History independence: building the final set from scratch gives the same root.
    assert SparseMerkleTree.from_items(model).root() == tree.root()


@SETTINGS
@given(changes_st, st.lists(st.integers(min_value=0, max_value=1000), max_size=6))
def test_root_after_every_batch(changes: list[tuple[bytes, bytes | None]], cuts: list[int]) -> None:
    tree = SparseMerkleTree()
    model: dict[bytes, bytes] = {}
    for batch in split(changes, cuts):
        tree.update(batch)
        ref_apply(model, batch)
        assert tree.root() == ref_root(model)


@settings(max_examples=100, deadline=None)
@given(wide_changes(), st.lists(st.integers(min_value=0, max_value=1000), max_size=6), maps)
def test_wide_key_batches_match_naive_reference(
    changes: list[tuple[bytes, bytes | None]], cuts: list[int], initial: dict[bytes, bytes]
) -> None:
    tree = SparseMerkleTree.from_items(initial)
    model = dict(initial)
    for batch in split(changes, cuts):
        tree.update(batch)
        ref_apply(model, batch)
        assert tree.root() == ref_root(model)
    assert tree.items() == sorted(model.items())


BIG = settings(max_examples=12, deadline=None)


@BIG
@given(big_maps(), st.data())
def test_big_trees_match_naive_reference(model: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = SparseMerkleTree.from_items(model)
    assert tree.root() == ref_root(model)
    # The trees are deep: some leaf sits 14 or more levels down (1,000 random paths share
    # a 13-bit prefix about 60 times over).
    assert max(tree.prove(k).depth for k in model) >= 14
    grown = SparseMerkleTree()
    grown.update(list(model.items())[:1])  # not empty: the rest goes the incremental way
    grown.root()
    grown.update(list(model.items())[1:])
    assert grown.root() == tree.root()
    before = tree.copy()
    start = dict(model)
    for batch in data.draw(big_batches(model), label="batches"):
        tree.update(batch)
        ref_apply(model, batch)
        assert tree.root() == ref_root(model)
        assert len(tree) == len(model)
    assert diff(before, tree) == ref_diff(start, model)
    for k in data.draw(st.lists(st.sampled_from(sorted(start)), max_size=5), label="probes"):
        for key in (k, ref_h(k)):  # present or deleted, and (almost surely) absent
            encoded = tree.prove(key).to_bytes()
            assert encoded == ref_prove(model, key)
            assert verify(tree.root(), key, model.get(key), encoded)


@SETTINGS
@given(maps, wide_changes(), st.lists(st.integers(min_value=0, max_value=1000), max_size=4))
def test_fast_paths_give_the_plain_definitions_root(
    initial: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]], cuts: list[int]
) -> None:
    # Bulk build, hash-only root, incremental batches (from empty and from a built tree)
    # and the namespaced hash-only roots all agree with the naive reference.
    model = dict(initial)
    ref_apply(model, changes)
    expected = ref_root(model)
    assert SparseMerkleTree.from_items(model).root() == expected
    assert SparseMerkleTree.root_of(model) == expected
    assert SparseMerkleTree.root_of(list(model.items())) == expected
    incremental = SparseMerkleTree.from_items(initial)
    for batch in split(changes, cuts):
        incremental.update(batch)
        incremental.root()
    assert incremental.root() == expected
    nested = {b"a": model, b"b": initial, b"c": {}}
    entries = [(ns, k, v) for ns, sub in nested.items() for k, v in sub.items()]
    root, sub_roots = NamespacedCommitment.roots_of(entries)
    assert root == ref_namespaced_root(nested) == NamespacedCommitment(entries).root()
    assert sub_roots == {ns: ref_root(m) for ns, m in sorted(nested.items()) if m}
    assert list(sub_roots) == sorted(sub_roots)


@BIG
@given(big_maps())
def test_hash_only_root_of_big_trees(model: dict[bytes, bytes]) -> None:
    assert SparseMerkleTree.root_of(model) == ref_root(model)
    # Deleted keys given as None are absent, as in a batch of changes.
    half = dict(list(model.items())[::2])
    entries: list[tuple[bytes, bytes, bytes | None]] = [(b"ns", k, v) for k, v in model.items()]
    entries += [(b"ns", k, None) for k in list(model)[1::2]]
    assert NamespacedCommitment.roots_of(entries) == (  # type: ignore[arg-type]
        ref_root({b"ns": ref_root(half)}),
        {b"ns": ref_root(half)},
    )


def test_hash_only_roots_validate_like_the_tree() -> None:
    assert SparseMerkleTree.root_of([(bytearray(b"a"), memoryview(b"1"))]) == ref_root(  # type: ignore[list-item]
        {b"a": b"1"}
    )
    with pytest.raises(InvalidEntryError):
        SparseMerkleTree.root_of([(b"a", "1")])  # type: ignore[list-item]
    with pytest.raises(InvalidEntryError):
        NamespacedCommitment.roots_of([(b"n", b"k", 5)])  # type: ignore[list-item]
    assert SparseMerkleTree.root_of({}) == EMPTY
    assert NamespacedCommitment.roots_of([]) == (EMPTY, {})


def test_big_batches_do_not_run_the_cyclic_gc() -> None:
    # A whole state folded in on reopening: collections meanwhile would rescan the caller's
    # heap (the restored machine) many times over, for nothing (no node is in a cycle).
    collections: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    def entries() -> Iterator[tuple[bytes, bytes, bytes]]:  # 30,000 new tuples, lazily
        return ((b"ns%d" % (i % 3), ref_h(i.to_bytes(4, "big")), b"v") for i in range(30_000))

    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        nc = NamespacedCommitment(entries())
        built = len(collections)
        root = nc.root()
        hash_only = NamespacedCommitment.roots_of(entries())
    finally:
        gc.callbacks.remove(on_gc)
    # At most the one young collection that re-enabling triggers at the next allocation
    # after each pass; unpaused, the 30,000 tuples alone would trigger dozens.
    assert built <= 1 and len(collections) <= 3, collections
    assert gc.isenabled()
    assert hash_only[0] == root


def test_larger_tree_inserts_updates_deletes() -> None:
    # Enough entries for long chains, deep branches and every restructuring case.
    model = {i.to_bytes(2, "big"): bytes([i % 251]) for i in range(0, 3000, 3)}
    tree = SparseMerkleTree.from_items(model)
    assert tree.root() == ref_root(model)
    for step in range(4):
        batch: list[tuple[bytes, bytes | None]] = []
        for i in range(step, 3000, 7):
            k = i.to_bytes(2, "big")
            batch.append((k, None if (i + step) % 3 == 0 else bytes([step, i % 256])))
        tree.update(batch)
        ref_apply(model, batch)
        assert tree.root() == ref_root(model)
    empty_again = tree.copy()
    empty_again.update({k: None for k in model})
    assert empty_again.root() == EMPTY and len(empty_again) == 0
    assert tree.root() == ref_root(model)  # the copy is independent


def test_bulk_build_matches_recursive_build_and_reference() -> None:
    # from_items and the first flush of an empty tree use the one-pass stack build; the
    # recursive one (`build_range`, which a batch uses to rebuild a small subtree) must give
    # the very same nodes.
    from merkle.build import build_all, build_range, sorted_by_path

    model = {i.to_bytes(3, "big"): bytes([i % 7]) * (i % 3) for i in range(2000)}
    node, root = build_all(model)
    ints, digests, keys = sorted_by_path(list(model))
    leafs = [ref_h(b"\x00" + d + ref_h(model[k])) for d, k in zip(digests, keys, strict=True)]
    assert (node, root) == build_range(ints, leafs, keys, 0, len(keys), 0)
    assert root == ref_root(model)
    tree = SparseMerkleTree()
    tree.update(list(model.items())[:700])  # built in bulk at the first root()
    tree.update({k: None for k in list(model)[:100]})  # still pending: folded into the bulk
    tree.update(list(model.items())[700:] + [(k, model[k]) for k in list(model)[:50]])
    expected = {k: v for k, v in model.items() if k not in list(model)[50:100]}
    assert tree.root() == ref_root(expected) and len(tree) == len(expected)
    tree.update({k: None for k in model})
    assert tree.root() == EMPTY
    tree.update({b"x": b"1", b"y": None})  # bulk path again, after the tree became empty
    assert tree.root() == ref_root({b"x": b"1"}) and tree.items() == [(b"x", b"1")]


def test_from_items_converts_bytes_like_and_rejects_other_types() -> None:
    tree = SparseMerkleTree.from_items(
        iter([(bytearray(b"a"), memoryview(b"1")), (b"b", bytearray(b"2"))])  # type: ignore[arg-type]
    )
    assert tree.items() == [(b"a", b"1"), (b"b", b"2")]
    assert tree.root() == ref_root({b"a": b"1", b"b": b"2"})
    with pytest.raises(InvalidEntryError):
        SparseMerkleTree.from_items([(b"a", b"1"), (b"b", "2")])  # type: ignore[list-item]
    with pytest.raises(InvalidEntryError):
        SparseMerkleTree.from_items({1: b"1"})  # type: ignore[arg-type]


def test_namespaced_bad_entries_change_nothing() -> None:
    nc = NamespacedCommitment([(b"n", b"k", b"v")])
    before = nc.root()
    with pytest.raises(InvalidEntryError):
        nc.update([(b"n", b"k2", b"v"), (b"m", "k", b"v")])  # type: ignore[list-item]
    with pytest.raises(InvalidEntryError):
        nc.update([(b"n", b"k2", 5)])  # type: ignore[list-item]
    assert nc.root() == before and len(nc) == 1
    nc.update(iter([(bytearray(b"m"), memoryview(b"k"), bytearray(b"w"))]))  # type: ignore[arg-type]
    assert nc.get(b"m", b"k") == b"w"
    assert nc.root() == ref_namespaced_root({b"n": {b"k": b"v"}, b"m": {b"k": b"w"}})


def test_update_accepts_mapping_and_bytes_like() -> None:
    tree = SparseMerkleTree()
    tree.update([(bytearray(b"a"), memoryview(b"1"))])  # type: ignore[list-item]
    tree[b"b"] = b"2"
    assert tree.items() == [(b"a", b"1"), (b"b", b"2")]
    del tree[b"a"]
    assert tree.root() == ref_root({b"b": b"2"})
    with pytest.raises(KeyError):
        del tree[b"a"]


def test_bad_entries_raise_invalid_entry_and_change_nothing() -> None:
    tree = SparseMerkleTree({b"a": b"1"})
    before = tree.root()
    with pytest.raises(InvalidEntryError):
        tree.update([(b"b", b"2"), ("c", b"3")])  # type: ignore[list-item]
    with pytest.raises(InvalidEntryError):
        tree.update([(b"b", 3)])  # type: ignore[list-item]
    assert tree.root() == before and len(tree) == 1
    assert issubclass(InvalidEntryError, MerkleError)
    with pytest.raises(MerkleError):
        tree.prove(5)  # type: ignore[arg-type]
    proof = tree.prove(b"a")
    assert verify(tree.root(), bytearray(b"a"), memoryview(b"1"), proof)  # type: ignore[arg-type]
    assert not verify(tree.root(), 1, b"1", proof)  # type: ignore[arg-type]
    assert not verify(tree.root(), b"a", "1", proof)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- proofs


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


@SETTINGS
@given(maps, keys, st.data())
def test_proofs_verify_and_any_flipped_bit_fails(
    model: dict[bytes, bytes], key: bytes, data: st.DataObject
) -> None:
    tree = SparseMerkleTree.from_items(model)
    root = tree.root()
    value = model.get(key)
    proof = tree.prove(key)
    encoded = proof.to_bytes()
    assert encoded == ref_prove(model, key)  # canonical bytes, independently computed
    assert Proof.from_bytes(encoded) == proof
    if value is None:
        assert proof.kind in (ProofKind.EXCLUSION_EMPTY, ProofKind.EXCLUSION_LEAF)
    else:
        assert proof.kind is ProofKind.INCLUSION
    assert verify(root, key, value, proof)
    assert verify(root, key, value, encoded)
    # A wrong claim fails: another value, presence instead of absence and vice versa.
    assert not verify(root, key, (value or b"") + b"x", proof)
    if value is not None:
        assert not verify(root, key, None, proof)
    n_key, n_val, n_proof, n_root = (len(key) * 8, len(value or b"") * 8, len(encoded) * 8, 256)
    total = n_key + n_val + n_proof + n_root
    for bit in data.draw(st.lists(st.integers(0, total - 1), max_size=12), label="bits"):
        if bit < n_key:
            k2 = flipped(key, bit)
            assert model.get(k2) == value or not verify(root, k2, value, proof)
        elif bit < n_key + n_val:
            assert value is not None
            assert not verify(root, key, flipped(value, bit - n_key), proof)
        elif bit < n_key + n_val + n_proof:
            assert not verify(root, key, value, flipped(encoded, bit - n_key - n_val))
        else:
            assert not verify(flipped(root, bit - n_key - n_val - n_proof), key, value, proof)


def test_every_bit_of_one_proof_matters() -> None:
    model = {bytes([i]): bytes([i, i]) for i in range(50)}
    tree = SparseMerkleTree.from_items(model)
    root = tree.root()
    for key, value in ((b"\x07", b"\x07\x07"), (b"absent", None)):
        encoded = tree.prove(key).to_bytes()
        assert verify(root, key, value, encoded)
        for bit in range(len(encoded) * 8):
            assert not verify(root, key, value, flipped(encoded, bit)), bit


def test_exclusion_kinds_and_depth() -> None:
    tree = SparseMerkleTree({bytes([i]): b"v" for i in range(200)})
    kinds = {tree.prove(bytes([i, j])).kind for i in range(20) for j in range(20)}
    assert kinds == {ProofKind.EXCLUSION_EMPTY, ProofKind.EXCLUSION_LEAF}
    empty = SparseMerkleTree().prove(b"x")
    assert empty.kind is ProofKind.EXCLUSION_EMPTY and empty.depth == 0
    assert verify(EMPTY, b"x", None, empty)
    one = SparseMerkleTree({b"a": b"1"})
    assert one.prove(b"a").depth == 0 and verify(one.root(), b"a", b"1", one.prove(b"a"))
    assert one.prove(b"b").kind is ProofKind.EXCLUSION_LEAF


def test_verifier_pitfalls() -> None:
    tree = SparseMerkleTree({bytes([i]): b"v" for i in range(64)})
    root = tree.root()
    key = b"\x05"
    proof = tree.prove(key)
    # An exclusion "proof" whose terminal leaf is the key itself (it proves presence).
    own = Proof(
        ProofKind.EXCLUSION_LEAF, proof.siblings, blake3(key).digest(), blake3(b"v").digest()
    )
    assert not verify(root, key, None, own)
    # A terminal leaf that does not share the path prefix.
    stranger = next(k for k in (bytes([i]) for i in range(64)) if k != key)
    far = Proof(
        ProofKind.EXCLUSION_LEAF,
        proof.siblings,
        blake3(stranger).digest(),
        blake3(b"v").digest(),
    )
    assert not verify(root, key, None, far)
    # Padding the path with an extra EMPTY level, or dropping a level.
    assert not verify(root, key, b"v", Proof(proof.kind, (*proof.siblings, EMPTY)))
    assert not verify(root, key, b"v", Proof(proof.kind, proof.siblings[:-1]))
    # A non-canonical root with an inner node over two EMPTY children: the padded exclusion
    # proof below recomputes it, and only the "bottom sibling is not EMPTY" rule rejects it.
    other = ref_leaf(b"x", b"y")
    padded = ref_h(b"\x01" + EMPTY + EMPTY)
    side = ref_bit(ref_h(key), 0)
    forged_root = ref_h(b"\x01" + (other + padded if side else padded + other))
    forged = Proof(ProofKind.EXCLUSION_EMPTY, (other, EMPTY))
    assert not verify(forged_root, key, None, forged)
    # Depth is bounded.
    with pytest.raises(ProofFormatError):
        Proof(ProofKind.EXCLUSION_EMPTY, (b"\x01" * 32,) * 257)
    assert not verify(root, key, None, bytes([1, 1, 1]) + b"\xff" * 33 + b"\x01" * 32 * 257)


def test_malformed_proof_bytes_are_rejected() -> None:
    good = SparseMerkleTree({bytes([i]): b"v" for i in range(20)}).prove(b"zz").to_bytes()
    bad = [
        b"",
        b"\x00",
        b"\x03\x00\x00",  # unknown kind
        b"\x01\x01\x01",  # depth 257
        good + b"\x00",  # trailing byte
        good[:-1],  # truncated
        b"\x01\x00\x01\x80" + bytes(32),  # an EMPTY sibling spelled out
        b"\x01\x00\x01\x40",  # non-zero padding bit
        b"\x00\x00\x00" + bytes(64),  # leaf fields on an inclusion proof
    ]
    for data in bad:
        with pytest.raises(ProofFormatError):
            Proof.from_bytes(data)
        assert verify(bytes(32), b"zz", None, data) is False
    with pytest.raises(ProofFormatError):
        Proof.from_bytes("text")  # type: ignore[arg-type]
    with pytest.raises(ProofFormatError):
        Proof(ProofKind.INCLUSION, (b"short",))
    with pytest.raises(ProofFormatError):
        Proof(7, ())  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        proof = Proof.from_bytes(data)
    except ProofFormatError:
        pass
    else:
        assert proof.to_bytes() == data  # accepted bytes are canonical
    # Under the EMPTY root only the depth-0 exclusion by EMPTY verifies (anything else
    # would hash to 32 zero bytes); verify must say so, and never raise.
    empty_proof = bytes([ProofKind.EXCLUSION_EMPTY, 0, 0])
    assert verify(bytes(32), b"k", None, data) is (data == empty_proof)
    assert verify(bytes(32), b"k", b"", data) is False
    try:
        nproof = NamespacedProof.from_bytes(data)
    except ProofFormatError:
        pass
    else:
        assert nproof.to_bytes() == data
    assert verify_namespaced(bytes(32), b"n", b"k", None, data) is (data == b"\x00" + empty_proof)


@pytest.mark.parametrize(
    "data", [bytes([1, 0, 0]), b"\x00\x01\x00\x00", bytes([1, 0, 1, 0]), b"\x02\x00\x00"]
)
def test_fuzz_expectation_is_not_vacuous(data: bytes) -> None:
    # The proofs `test_arbitrary_bytes_never_crash_the_parser` expects to verify under
    # EMPTY, and two near misses (a depth-1 path with an EMPTY bottom sibling, a kind 2
    # proof without its leaf fields), checked directly.
    expected = data in (bytes([1, 0, 0]),)
    assert verify(EMPTY, b"k", None, data) is expected
    assert verify_namespaced(EMPTY, b"n", b"k", None, data) is (data == b"\x00\x01\x00\x00")


# ---------------------------------------------------------------------------------- diff


@SETTINGS
@given(maps, changes_st)
def test_diff_equals_naive_set_difference(
    model: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]]
) -> None:
    a = SparseMerkleTree.from_items(model)
    b = a.copy()
    b.update(changes)
    other = dict(model)
    ref_apply(other, changes)
    expected = ref_diff(model, other)
    assert diff(a, b) == expected
    independent = SparseMerkleTree.from_items(other)
    assert diff(a, independent) == expected
    assert diff(independent, a) == [(k, y, x) for k, x, y in expected]


@SETTINGS
@given(maps, maps)
def test_diff_of_unrelated_maps(x: dict[bytes, bytes], y: dict[bytes, bytes]) -> None:
    assert diff(SparseMerkleTree.from_items(x), SparseMerkleTree.from_items(y)) == ref_diff(x, y)


# ---------------------------------------------------------------------------- namespaced

namespaces = st.sampled_from([b"", b"balances", b"book\x00\x01", b"book\x00\x02", b"globals"])
ns_changes = st.lists(st.tuples(namespaces, keys, st.one_of(st.none(), values)), max_size=60)


def ref_ns_apply(
    m: dict[bytes, dict[bytes, bytes]], changes: list[tuple[bytes, bytes, bytes | None]]
) -> None:
    for ns, k, v in changes:
        sub = m.setdefault(ns, {})
        if v is None:
            sub.pop(k, None)
        else:
            sub[k] = v


@SETTINGS
@given(ns_changes, st.lists(st.integers(min_value=0, max_value=1000), max_size=4), st.data())
def test_namespaced_commitment(
    changes: list[tuple[bytes, bytes, bytes | None]], cuts: list[int], data: st.DataObject
) -> None:
    nc = NamespacedCommitment()
    model: dict[bytes, dict[bytes, bytes]] = {}
    for batch in split(changes, cuts):
        nc.update(batch)
        ref_ns_apply(model, batch)
        assert nc.root() == ref_namespaced_root(model)
    root = nc.root()
    assert nc.namespace_roots() == {ns: ref_root(s) for ns, s in sorted(model.items()) if s}
    assert len(nc) == sum(len(s) for s in model.values())
    ns = data.draw(namespaces, label="ns")
    key = data.draw(keys, label="key")
    value = model.get(ns, {}).get(key)
    proof = nc.prove(ns, key)
    encoded = proof.to_bytes()
    assert NamespacedProof.from_bytes(encoded) == proof
    assert verify_namespaced(root, ns, key, value, proof)
    assert verify_namespaced(root, ns, key, value, encoded)
    assert not verify_namespaced(root, ns, key, (value or b"") + b"x", encoded)
    assert not verify_namespaced(root, ns + b"?", key, value, encoded) or (
        model.get(ns + b"?", {}).get(key) == value
    )
    for bit in data.draw(st.lists(st.integers(0, len(encoded) * 8 - 1), max_size=8), label="b"):
        assert not verify_namespaced(root, ns, key, value, flipped(encoded, bit))
    # diff: first by namespace, then by key.
    more = data.draw(ns_changes, label="more")
    other = nc.copy()
    other.update(more)
    model2 = {n: dict(s) for n, s in model.items()}
    ref_ns_apply(model2, more)
    expected = sorted(
        (n, k, model.get(n, {}).get(k), model2.get(n, {}).get(k))
        for n in set(model) | set(model2)
        for k in set(model.get(n, {})) | set(model2.get(n, {}))
        if model.get(n, {}).get(k) != model2.get(n, {}).get(k)
    )
    assert diff_namespaced(nc, other) == expected
    assert NamespacedCommitment.diff(nc, other) == expected
    assert nc.root() == root  # the copy is independent


def test_empty_namespace_is_absent_from_top_tree() -> None:
    nc = NamespacedCommitment([(b"a", b"k", b"v"), (b"b", b"k", b"v")])
    nc.update([(b"b", b"k", None)])
    assert nc.namespace_roots() == {b"a": ref_root({b"k": b"v"})}
    assert nc.root() == ref_root({b"a": ref_root({b"k": b"v"})})
    proof = nc.prove(b"b", b"k")
    assert proof.sub_root is None and proof.key_proof is None
    assert verify_namespaced(nc.root(), b"b", b"k", None, proof)
    with pytest.raises(ProofFormatError):
        NamespacedProof(proof.namespace_proof, EMPTY, proof.namespace_proof)


# ------------------------------------------------------------------------------- vectors


def vector_maps() -> list[tuple[str, dict[bytes, bytes]]]:
    """Hand-specified maps; their roots in spec/vectors/merkle_roots.json come from ref_root."""
    return [
        ("empty", {}),
        ("one entry, empty key and value", {b"": b""}),
        ("one entry", {b"a": b"1"}),
        ("two entries", {b"a": b"1", b"b": b"2"}),
        ("key-00..key-15", {f"key-{i:02}".encode(): f"value-{i:02}".encode() for i in range(16)}),
        ("all one-byte keys", {bytes([i]): bytes([255 - i]) for i in range(256)}),
    ]


def vector_namespaced() -> dict[bytes, dict[bytes, bytes]]:
    return {
        b"balances": {b"alice": b"100", b"bob": b"7"},
        b"book\x00\x01": {b"order-1": b"buy 5 @ 10", b"order-2": b"sell 1 @ 12"},
        b"globals": {b"height": b"\x00\x00\x00\x2a"},
        b"empty": {},
    }


def build_vectors() -> dict[str, object]:
    maps_out = []
    for name, m in vector_maps():
        maps_out.append(
            {
                "name": name,
                "entries": [[k.hex(), v.hex()] for k, v in sorted(m.items())],
                "root": ref_root(m).hex(),
            }
        )
    proof_map = dict(vector_maps()[4][1])
    proofs = [
        {
            "key": k.hex(),
            "value": None if proof_map.get(k) is None else proof_map[k].hex(),
            "proof": ref_prove(proof_map, k).hex(),
        }
        for k in (b"key-03", b"key-11", b"absent", b"key-99", b"")
    ]
    ns = vector_namespaced()
    return {
        "description": "Roots (and proofs) computed by the naive reference in "
        "tests/test_merkle.py from the definition in spec/merkle.md; hex strings.",
        "empty_hash": bytes(32).hex(),
        "maps": maps_out,
        "proofs": {"map": "key-00..key-15", "cases": proofs},
        "namespaced": {
            "entries": [
                [n.hex(), k.hex(), v.hex()] for n in sorted(ns) for k, v in sorted(ns[n].items())
            ],
            "empty_namespaces": [n.hex() for n in sorted(ns) if not ns[n]],
            "namespace_roots": {n.hex(): ref_root(s).hex() for n, s in sorted(ns.items()) if s},
            "root": ref_namespaced_root(ns).hex(),
        },
    }


def test_root_vectors_match_implementation() -> None:
    vectors = json.loads(VECTORS.read_text())
    assert vectors["empty_hash"] == EMPTY.hex()
    assert len(vectors["maps"]) >= 5
    for case in vectors["maps"]:
        m = {bytes.fromhex(k): bytes.fromhex(v) for k, v in case["entries"]}
        assert SparseMerkleTree.from_items(m).root().hex() == case["root"], case["name"]
        incremental = SparseMerkleTree()
        for k, v in sorted(m.items(), reverse=True):
            incremental.update({k: v, b"transient": b"x"})
        incremental.update({b"transient": None} if b"transient" not in m else {})
        assert incremental.root().hex() == case["root"], case["name"]
    proof_case = next(c for c in vectors["maps"] if c["name"] == vectors["proofs"]["map"])
    tree = SparseMerkleTree.from_items(
        {bytes.fromhex(k): bytes.fromhex(v) for k, v in proof_case["entries"]}
    )
    for case in vectors["proofs"]["cases"]:
        key = bytes.fromhex(case["key"])
        value = None if case["value"] is None else bytes.fromhex(case["value"])
        assert tree.prove(key).to_bytes().hex() == case["proof"]
        assert verify(tree.root(), key, value, bytes.fromhex(case["proof"]))
    ns = vectors["namespaced"]
    nc = NamespacedCommitment(
        (bytes.fromhex(n), bytes.fromhex(k), bytes.fromhex(v)) for n, k, v in ns["entries"]
    )
    nc.update((bytes.fromhex(n), b"gone", b"x") for n in ns["empty_namespaces"])
    nc.update((bytes.fromhex(n), b"gone", None) for n in ns["empty_namespaces"])
    assert {n.hex(): r.hex() for n, r in nc.namespace_roots().items()} == ns["namespace_roots"]
    assert nc.root().hex() == ns["root"]


def test_vector_file_is_what_the_reference_computes() -> None:
    assert json.loads(VECTORS.read_text()) == build_vectors()


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        VECTORS.write_text(json.dumps(build_vectors(), indent=1) + "\n")
    else:
        sys.exit("usage: python tests/test_merkle.py --write-vectors")
