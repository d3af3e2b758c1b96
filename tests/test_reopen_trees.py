"""A node's restart builds its state trees in the reopen's worker (`merkle.worker --trees`,
`store.roots_feed.FedTrees`, `store.roots.CommitmentRoots`): the trees it loads are node
for node those `commitment_of` builds in process, their roots equal the independent
reference of tests/reference/smt.py, a worker that dies or writes garbage only leaves more
to the caller, and a tampered store still refuses to start, naming the namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.roots_feed as feed_module
from block_exec.executor import Executor
from merkle import MerkleError, NamespacedCommitment, SparseMerkleTree
from merkle.worker import LOCATION, streamed_column, tree_bytes, tree_from_bytes, write_all
from state_machine import namespace_of
from store.errors import StateDiverged
from store.records import Entry
from store.roots import CommitmentRoots, commitment_of, compute_roots
from store.roots_feed import FedTrees, RootsFeed
from tests.reference import smt
from tests.test_merkle_roots import _expected, _no_children_left, parallel, states  # noqa: F401 (a fixture)
from tests.test_reopen_feed import _with_books, tamper_one_order


def _same_trees(a: NamespacedCommitment, b: NamespacedCommitment) -> bool:
    """Node for node the same trees (bits, preimages, leaves) under the same namespaces."""
    return a.namespaces() == b.namespaces() and all(
        a.tree(ns).built() == b.tree(ns).built() for ns in a.namespaces()
    )


def _fed(entries: list[Entry], cuts: list[int]) -> tuple[CommitmentRoots, RootsFeed]:
    compute = CommitmentRoots()
    feed = RootsFeed(compute, max(len(entries), 10))
    scanned: list[Entry] = []
    for cut in sorted(cuts):
        scanned.extend(entries[len(scanned) : cut])
        feed.scanned(scanned)
    return compute, feed


@settings(max_examples=60)
@given(st.dictionaries(st.binary(max_size=20), st.binary(max_size=40), max_size=80))
def test_a_tree_round_trips_through_its_bytes(items: dict[bytes, bytes]) -> None:
    keys, values = list(items), list(items.values())
    tree = tree_from_bytes(tree_bytes(keys, values))
    assert tree.root() == smt.root(items)
    assert len(tree) == len(items) and not tree.keeps_values
    expected = SparseMerkleTree.from_columns(keys, values, keep_values=False)
    assert tree.built() == expected.built()  # node for node


@pytest.mark.parametrize("data", [b"", b"\xff" * 9, tree_bytes([b"a"], [b"b"])[:-1]])
def test_bytes_that_are_no_tree_are_refused(data: bytes) -> None:
    with pytest.raises(MerkleError):
        tree_from_bytes(data)


@pytest.mark.usefixtures("parallel")
@settings(max_examples=20, deadline=None)
@given(states, st.lists(st.integers(0, 200), max_size=6))
def test_fed_trees_are_those_commitment_of_builds(entries: list[Entry], cuts: list[int]) -> None:
    entries = _with_books(entries)
    compute, feed = _fed(entries, cuts)
    assert feed.feeding
    pending = feed.finish(entries)
    assert isinstance(pending, FedTrees)
    assert pending.result() == _expected(entries)
    assert compute.commitment is not None
    assert _same_trees(compute.commitment, commitment_of(entries))
    key = entries[len(entries) // 2][0]
    assert (
        compute.commitment.prove(namespace_of(key), key).to_bytes()
        == commitment_of(entries).prove(namespace_of(key), key).to_bytes()
    )
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_the_worker_builds_the_shipped_trees_the_caller_only_loads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _with_books([(b"\x00next_order_id", b"\x18\x2a")])
    compute, feed = _fed(entries, [50])
    pending = feed.finish(entries)
    assert isinstance(pending, FedTrees) and pending._worker is not None
    assert pending._worker.wait() == 0  # it built every shipped tree
    built_here: list[list[bytes]] = []
    tree_of = feed_module._tree_of

    def spy(keys: list[bytes], values: list[bytes]) -> object:
        built_here.append(list(keys))
        return tree_of(keys, values)

    monkeypatch.setattr(feed_module, "_tree_of", spy)
    assert pending.result() == _expected(entries)
    assert built_here == [[b"\x00next_order_id"]]  # the globals are kept here
    assert compute.commitment is not None
    assert _same_trees(compute.commitment, commitment_of(entries))


@pytest.mark.usefixtures("parallel")
def test_a_dead_worker_leaves_the_trees_to_the_caller() -> None:
    entries = _with_books([])
    compute, feed = _fed(entries, [50])
    pending = feed.finish(entries)
    assert isinstance(pending, FedTrees) and pending._worker is not None
    pending._worker.kill()
    pending._worker.wait()
    assert pending.result() == _expected(entries)
    assert compute.commitment is not None
    assert _same_trees(compute.commitment, commitment_of(entries))
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_a_tree_the_caller_cannot_load_is_built_here(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _with_books([])
    compute, feed = _fed(entries, [50])
    pending = feed.finish(entries)
    assert isinstance(pending, FedTrees) and pending._worker is not None
    assert pending._worker.wait() == 0

    def garbage(data: bytes) -> object:
        raise MerkleError("not the bytes of a tree")

    monkeypatch.setattr(feed_module, "tree_from_bytes", garbage)
    assert pending.result() == _expected(entries)
    assert compute.commitment is not None
    assert _same_trees(compute.commitment, commitment_of(entries))


def test_the_tree_worker_writes_each_columns_tree_and_its_place() -> None:
    columns = [
        ([b"k%d" % i for i in range(n)], [b"v%d" % (i * n) for i in range(n)]) for n in (1, 7, 300)
    ]
    data, trees = os.memfd_create("test-columns"), os.memfd_create("test-trees")
    records = b""
    offset = 0
    for column in map(streamed_column, *zip(*columns, strict=True)):
        write_all(data, column)
        records += LOCATION.pack(offset, len(column))
        offset += len(column)
    read_end, write_end = os.pipe()
    worker = subprocess.Popen(
        [sys.executable, "-m", "merkle.worker", "--stream", str(data), "--trees", str(trees)],
        stdin=read_end,
        stdout=subprocess.PIPE,
        pass_fds=(data, trees),
    )
    os.close(read_end)
    os.write(write_end, records)
    os.close(write_end)
    out, _ = worker.communicate()
    assert worker.returncode == 0
    places = list(LOCATION.iter_unpack(out))
    loaded = [tree_from_bytes(os.pread(trees, length, at)) for at, length in places]
    os.close(data)
    os.close(trees)
    assert [tree.root() for tree in loaded] == [
        smt.root(dict(zip(keys, values, strict=True))) for keys, values in columns
    ]


# -- through the node's restart: Executor.open -------------------------------------------


@pytest.mark.usefixtures("parallel")
def test_executor_open_keeps_the_trees_the_worker_built(
    resting_store: tuple[Path, list[Entry]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, entries = resting_store
    results: list[FedTrees] = []
    result = FedTrees.result

    def spy(self: FedTrees) -> object:
        results.append(self)
        return result(self)

    monkeypatch.setattr(FedTrees, "result", spy)
    executor = Executor.open(str(path), read_only=True)
    try:
        assert len(results) == 1  # the trees came through the feed
        assert _same_trees(executor.commitment, commitment_of(entries))
        assert executor.state_root == compute_roots(entries).root
    finally:
        executor.close()
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_executor_open_refuses_a_tampered_book(resting_store: tuple[Path, list[Entry]]) -> None:
    path, _ = resting_store
    asset, _ = tamper_one_order(path)
    with pytest.raises(StateDiverged) as info:
        Executor.open(str(path), read_only=True)
    assert f"in book of asset {asset} " in str(info.value)
    assert _no_children_left()
