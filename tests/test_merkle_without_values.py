"""A tree (and a namespaced commitment) that keeps no values, against the same naive
reference as tests/test_merkle.py: the same roots, proof bytes and diff as the definitions
give, with the values read from the owner's model wherever they are needed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merkle import (
    MerkleError,
    NamespacedCommitment,
    SparseMerkleTree,
    diff,
    diff_namespaced,
    verify,
    verify_namespaced,
)
from merkle.namespaced import NamespacedValueOf
from tests.test_merkle import (
    BIG,
    SETTINGS,
    big_batches,
    big_maps,
    changes_st,
    maps,
    ref_apply,
    ref_diff,
    ref_h,
    ref_prove,
    ref_root,
    split,
    wide_changes,
)


def check_tree(tree: SparseMerkleTree, model: dict[bytes, bytes], probes: list[bytes]) -> None:
    assert tree.root() == ref_root(model)
    assert len(tree) == len(model)
    assert tree.keys() == sorted(model)
    for key in probes:
        assert (key in tree) == (key in model)
        encoded = tree.prove(key, model.get).to_bytes()
        assert encoded == ref_prove(model, key)
        assert verify(tree.root(), key, model.get(key), encoded)


@SETTINGS
@given(changes_st, st.lists(st.integers(min_value=0, max_value=1000), max_size=6), maps)
def test_batches_without_values_match_naive_reference(
    changes: list[tuple[bytes, bytes | None]], cuts: list[int], initial: dict[bytes, bytes]
) -> None:
    tree = SparseMerkleTree.from_items(initial, keep_values=False)
    assert not tree.keeps_values
    model = dict(initial)
    for batch in split(changes, cuts):
        tree.update(batch)
        ref_apply(model, batch)
        probes = [k for k, _ in batch] + [ref_h(k) for k, _ in batch[:3]]
        check_tree(tree, model, probes)


@settings(max_examples=100, deadline=None)
@given(wide_changes(), st.lists(st.integers(min_value=0, max_value=1000), max_size=6))
def test_wide_batches_from_empty_without_values(
    changes: list[tuple[bytes, bytes | None]], cuts: list[int]
) -> None:
    tree = SparseMerkleTree(keep_values=False)
    model: dict[bytes, bytes] = {}
    for batch in split(changes, cuts):
        tree.update(batch)  # the first goes the bulk way (from an empty tree)
        ref_apply(model, batch)
        check_tree(tree, model, [k for k, _ in batch])


@BIG
@given(big_maps(), st.data())
def test_big_trees_without_values(model: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = SparseMerkleTree.from_columns(list(model), list(model.values()), keep_values=False)
    kept = SparseMerkleTree.from_items(model)
    before, start = tree.copy(), dict(model)
    for batch in data.draw(big_batches(model), label="batches"):
        tree.update(batch)
        kept.update(batch)
        ref_apply(model, batch)
        assert tree.root() == ref_root(model) == kept.root()
        assert len(tree) == len(model)
    assert diff(before, tree, start.get, model.get) == ref_diff(start, model)
    assert diff(kept, tree, None, model.get) == []
    probes = data.draw(st.lists(st.sampled_from(sorted(start)), max_size=5), label="probes")
    check_tree(tree, model, probes + [ref_h(k) for k in probes])


def test_a_tree_without_values_reads_them_from_its_owner() -> None:
    model = {bytes([i]): bytes([i, i]) for i in range(64)}
    tree = SparseMerkleTree.from_items(model, keep_values=False)
    with pytest.raises(MerkleError):
        tree.get(b"\x01")
    with pytest.raises(MerkleError):
        tree.items()
    with pytest.raises(MerkleError):
        diff(tree, SparseMerkleTree())
    # Some absent key is excluded by another leaf: its proof needs that leaf's value.
    absent = next(k for k in (bytes([i]) for i in range(64, 256))
                  if ref_prove(model, k)[0] == 2)
    with pytest.raises(MerkleError):
        tree.prove(absent)
    assert tree.prove(absent, model.get).to_bytes() == ref_prove(model, absent)
    del tree[b"\x05"]
    with pytest.raises(KeyError):
        del tree[b"\x05"]
    assert len(tree) == 63 and b"\x05" not in tree and b"\x06" in tree


NESTED = st.dictionaries(st.binary(min_size=1, max_size=2), maps, max_size=5)


@SETTINGS
@given(NESTED, NESTED)
def test_namespaced_without_values(
    first: dict[bytes, dict[bytes, bytes]], second: dict[bytes, dict[bytes, bytes]]
) -> None:
    def entries(nested: dict[bytes, dict[bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
        return [(ns, k, v) for ns, sub in nested.items() for k, v in sub.items()]

    def value_of(nested: dict[bytes, dict[bytes, bytes]]) -> NamespacedValueOf:
        return lambda ns, key: nested.get(ns, {}).get(key)

    a = NamespacedCommitment(entries(first), keep_values=False)
    kept = NamespacedCommitment(entries(first))
    b = NamespacedCommitment(entries(second), keep_values=False)
    assert a.root() == kept.root()
    assert diff_namespaced(a, b, value_of(first), value_of(second)) == diff_namespaced(
        kept, NamespacedCommitment(entries(second))
    )
    probes = entries(first)[:5] + [(ns, b"?", first[ns].get(b"?")) for ns in first]
    for ns, key, value in [*probes, (b"absent namespace", b"k", None)]:
        proof = a.prove(ns, key, value_of(first))
        assert proof.to_bytes() == kept.prove(ns, key).to_bytes()
        assert verify_namespaced(a.root(), ns, key, value, proof)
    if any(first.values()):
        with pytest.raises(MerkleError):
            a.items()
