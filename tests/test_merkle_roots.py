"""The fast paths of `store.roots` (namespace columns by bisection, hash-only roots in two
processes, bulk-built commitments) against the independent reference of tests/reference/smt.py:
the same roots for any set of keys, including keys no state holds (short, unknown prefixes).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.roots as roots_module
from merkle import NamespacedCommitment
from merkle.build import root_of_columns
from state_machine import namespace_of
from store.records import Roots
from store.roots import (
    _roots_in_two_processes,
    commitment_of,
    compute_roots,
    namespace_columns,
    roots_of,
)
from tests.reference import smt


def reference_groups(entries: list[tuple[bytes, bytes]]) -> dict[bytes, dict[bytes, bytes]]:
    groups: dict[bytes, dict[bytes, bytes]] = {}
    for key, value in entries:
        groups.setdefault(namespace_of(key), {})[key] = value
    return groups


def key_of(prefix: int, body: bytes) -> bytes:
    return bytes((prefix,)) + body


# Keys of every shape: balances (25 bytes), orders (13), nonces, globals, short and unknown.
keys = st.one_of(
    st.builds(key_of, st.just(1), st.binary(min_size=24, max_size=24)),
    st.builds(key_of, st.just(1), st.binary(max_size=30)),
    st.builds(
        key_of,
        st.just(2),
        st.builds(
            lambda a, i: a + i, st.sampled_from([b"\0\0\0\1", b"\0\0\0\2", b"\xff" * 4]),
            st.binary(max_size=9),
        ),
    ),
    st.builds(key_of, st.just(2), st.binary(max_size=5)),
    st.builds(key_of, st.integers(0, 255), st.binary(max_size=21)),
)
states = st.dictionaries(keys, st.binary(max_size=40), max_size=60).map(
    lambda m: sorted(m.items())
)


@settings(max_examples=300)
@given(states)
def test_namespace_columns_group_like_namespace_of(entries: list[tuple[bytes, bytes]]) -> None:
    columns = namespace_columns(entries)
    assert columns is not None
    expected = reference_groups(entries)
    assert [ns for ns, _, _ in columns] == sorted(expected)
    for ns, ks, vs in columns:
        assert list(ks) == sorted(expected[ns]), ns
        assert list(vs) == [expected[ns][k] for k in sorted(expected[ns])]


@settings(max_examples=200)
@given(states)
def test_compute_roots_and_commitment_match_the_reference(
    entries: list[tuple[bytes, bytes]],
) -> None:
    groups = reference_groups(entries)
    expected_sub = tuple(sorted((ns, smt.root(m)) for ns, m in groups.items()))
    expected_root = smt.namespaced_roots(groups)[0]
    got = compute_roots(entries)
    assert got.root == expected_root
    assert got.namespaces == expected_sub
    built = roots_of(commitment_of(entries))
    assert built.root == expected_root and built.namespaces == expected_sub


def test_unsorted_or_repeated_keys_take_the_general_path() -> None:
    entries = [(b"\x02\0\0\0\1" + bytes(8), b"a"), (b"\x01" + bytes(24), b"b")]
    assert namespace_columns(entries) is None
    assert namespace_columns([entries[0], entries[0]]) is None
    groups = reference_groups(entries)
    assert compute_roots(entries).root == smt.namespaced_roots(groups)[0]
    assert commitment_of(entries).root() == smt.namespaced_roots(groups)[0]


def test_two_processes_give_the_serial_roots() -> None:
    entries = sorted(
        (bytes((2,)) + (i % 7).to_bytes(4, "big") + i.to_bytes(8, "big"), i.to_bytes(3, "big"))
        for i in range(3000)
    )
    columns = namespace_columns(entries)
    assert columns is not None
    serial = {ns: root_of_columns(ks, vs) for ns, ks, vs in columns}
    assert _roots_in_two_processes(columns) == serial
    groups = reference_groups(entries)
    assert serial == {ns: smt.root(m) for ns, m in groups.items()}


def test_a_failing_child_is_made_up_for_by_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = sorted(
        (bytes((2,)) + (i % 3).to_bytes(4, "big") + i.to_bytes(8, "big"), b"v") for i in range(300)
    )
    columns = namespace_columns(entries)
    assert columns is not None
    serial = {ns: root_of_columns(ks, vs) for ns, ks, vs in columns}
    parent = os.getpid()

    def dies_in_child(ks: object, vs: object) -> bytes:
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return root_of_columns(ks, vs)  # type: ignore[arg-type]

    monkeypatch.setattr(roots_module, "root_of_columns", dies_in_child)
    assert _roots_in_two_processes(columns) == serial


def test_large_states_use_two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = roots_module._roots_in_two_processes

    def counted(columns: list[roots_module.Columns]) -> dict[bytes, bytes]:
        calls.append(len(columns))
        return real(columns)

    monkeypatch.setattr(roots_module, "_roots_in_two_processes", counted)
    monkeypatch.setattr(roots_module, "PARALLEL_MIN_ENTRIES", 10)
    monkeypatch.setattr(roots_module, "_cpus", lambda: 2)
    entries = sorted((bytes((2, 0, 0, 0, i % 4)) + bytes(8) + bytes((i,)), b"x") for i in range(40))
    got = compute_roots(entries)
    assert calls == [4]
    assert got.root == NamespacedCommitment(
        (namespace_of(k), k, v) for k, v in entries
    ).root()


def _book_entries(count: int, books: int) -> list[tuple[bytes, bytes]]:
    return sorted(
        (bytes((2,)) + (i % books).to_bytes(4, "big") + i.to_bytes(8, "big"), i.to_bytes(4, "big"))
        for i in range(count)
    )


def test_started_roots_come_from_a_child_and_equal_the_serial_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(roots_module, "PARALLEL_MIN_ENTRIES", 10)
    monkeypatch.setattr(roots_module, "_cpus", lambda: 2)
    entries = _book_entries(500, 5)
    pending = roots_module.start_roots(compute_roots, entries)
    assert pending._pid  # forked at once, before the caller's rebuild
    groups = reference_groups(entries)
    root, subs = smt.namespaced_roots(groups)
    got = pending.result()
    assert got.root == root and got.namespaces == tuple(sorted(subs.items()))
    cancelled = roots_module.start_roots(compute_roots, entries)
    cancelled.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pending._pid or -1, os.WNOHANG)  # every child was reaped


def test_started_roots_of_a_failing_child_are_computed_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(roots_module, "PARALLEL_MIN_ENTRIES", 10)
    monkeypatch.setattr(roots_module, "_cpus", lambda: 2)
    monkeypatch.setattr(roots_module, "_encode_roots", lambda roots: b"garbage")
    entries = _book_entries(200, 3)
    got = roots_module.start_roots(compute_roots, entries).result()
    assert got.root == smt.namespaced_roots(reference_groups(entries))[0]


def test_other_root_functions_run_here_when_asked() -> None:
    calls: list[int] = []

    def counting(entries: object) -> Roots:
        calls.append(1)
        return compute_roots(entries)  # type: ignore[arg-type]

    entries = _book_entries(50, 2)
    pending = roots_module.start_roots(counting, entries)
    assert calls == [] and not pending._pid
    assert pending.result() == compute_roots(entries)
    assert calls == [1]


def test_decoding_roots_refuses_truncated_bytes() -> None:
    roots = compute_roots(_book_entries(30, 3))
    data = roots_module._encode_roots(roots)
    assert roots_module._decode_roots(data) == roots
    for cut in (0, 31, 33, len(data) - 1):
        assert roots_module._decode_roots(data[:cut]) is None
