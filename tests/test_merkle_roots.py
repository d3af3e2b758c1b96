"""The fast paths of `store.roots` (namespace columns by bisection, hash-only roots in two
processes, bulk-built commitments) against the independent reference of tests/reference/smt.py:
the same roots for any set of keys, including keys no state holds (short, unknown prefixes).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.roots as roots_module
from merkle.worker import read_columns, write_columns
from state_machine import namespace_of
from store.records import Roots
from store.roots import (
    commitment_of,
    compute_roots,
    namespace_columns,
    roots_of,
    start_roots,
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


def _book_entries(count: int, books: int) -> list[tuple[bytes, bytes]]:
    return sorted(
        (bytes((2,)) + (i % books).to_bytes(4, "big") + i.to_bytes(8, "big"), i.to_bytes(4, "big"))
        for i in range(count)
    )


def _expected(entries: list[tuple[bytes, bytes]]) -> Roots:
    root, subs = smt.namespaced_roots(reference_groups(entries))
    return Roots(root, tuple(sorted(subs.items())))


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roots_module, "PARALLEL_MIN_ENTRIES", 10)
    monkeypatch.setattr(roots_module, "_cpus", lambda: 2)


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.usefixtures("parallel")
def test_roots_shared_with_a_worker_equal_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("os.fork with the caller's threads running")

    monkeypatch.setattr(os, "fork", no_fork)
    entries = _book_entries(3000, 7)
    pending = start_roots(compute_roots, entries)
    assert pending._worker is not None  # started at once, before the caller's rebuild
    assert pending.result() == _expected(entries)
    assert compute_roots(entries) == _expected(entries)
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_a_worker_that_finished_everything_leaves_nothing_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _book_entries(400, 4)
    pending = start_roots(compute_roots, entries)
    assert pending._worker is not None
    assert pending._worker.wait() == 0  # done: all its roots are in the pipe

    def no_hashing_here(keys: object, values: object) -> bytes:
        raise AssertionError("the caller hashed a namespace the worker had done")

    monkeypatch.setattr(roots_module, "root_of_columns", no_hashing_here)
    assert pending.result() == _expected(entries)
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_a_failing_worker_is_made_up_for_by_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _book_entries(600, 5)

    def unreadable(fd: int, columns: object) -> None:
        os.write(fd, b"\xff" * 12)  # the worker fails to read it and exits 1, silently

    monkeypatch.setattr(roots_module, "write_columns", unreadable)
    pending = start_roots(compute_roots, entries)
    assert pending._worker is not None
    assert pending._worker.wait() != 0
    assert pending.result() == _expected(entries)
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_a_worker_that_cannot_start_leaves_all_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError("no process left")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    entries = _book_entries(500, 4)
    pending = start_roots(compute_roots, entries)
    assert pending._worker is None
    assert pending.result() == _expected(entries)


@pytest.mark.usefixtures("parallel")
def test_cancel_ends_the_worker() -> None:
    pending = start_roots(compute_roots, _book_entries(300, 3))
    assert pending._worker is not None
    pending.cancel()
    pending.cancel()
    assert _no_children_left()


def test_other_root_functions_run_here_when_asked() -> None:
    calls: list[int] = []

    def counting(entries: object) -> Roots:
        calls.append(1)
        return compute_roots(entries)  # type: ignore[arg-type]

    entries = _book_entries(50, 2)
    pending = start_roots(counting, entries)
    assert calls == [] and pending._worker is None
    assert pending.result() == _expected(entries)
    assert calls == [1]


def test_small_states_stay_in_one_process() -> None:
    pending = start_roots(compute_roots, _book_entries(100, 3))
    assert pending._worker is None
    assert pending.result() == _expected(_book_entries(100, 3))


def test_the_worker_file_layout_round_trips() -> None:
    columns = [
        ([b"", b"a", b"bc" * 40], [b"v", b"", b"\x00" * 70]),
        ([], []),
        ([bytes([i]) * (i % 5) + bytes([i]) for i in range(256)], [bytes([i]) for i in range(256)]),
    ]
    with tempfile.TemporaryFile(buffering=0) as file:
        write_columns(file.fileno(), columns)
        file.seek(0)
        data = file.read()
    assert list(read_columns(data)) == columns


def test_the_worker_writes_each_columns_root(tmp_path: pathlib.Path) -> None:
    columns = [
        ([b"k%d" % i for i in range(n)], [b"v%d" % (i * n) for i in range(n)]) for n in (1, 7, 300)
    ]
    path = tmp_path / "columns"
    with open(path, "w+b", buffering=0) as file:
        write_columns(file.fileno(), columns)
        file.seek(0)
        out = subprocess.run(
            [sys.executable, "-m", "merkle.worker"], stdin=file, capture_output=True, check=True
        ).stdout
    expected = [smt.root(dict(zip(keys, values, strict=True))) for keys, values in columns]
    assert [out[i : i + 32] for i in range(0, len(out), 32)] == expected


def test_entry_value_of_reads_each_entry_of_the_state() -> None:
    # The value a commitment without values reads for a proof (ABCI /prove): for every key
    # of `state_entries` the same bytes, and None for keys the state has no entry under.
    from state_machine import CoreStateMachine, Side, Tif
    from state_machine.entries import (
        BRIDGE_KEY,
        balance_key,
        entry_value_of,
        nonce_key,
        order_key,
        state_entries,
    )

    machine = CoreStateMachine()
    users = ["0x" + bytes([i]) .hex() * 20 for i in range(1, 4)]
    for user in users:
        machine.deposit(user, 0, 10**9)
        machine.deposit(user, 7, 10**9)
    machine.limit(users[0], 7, Side.SELL, 105, 3, Tif.GTC)
    machine.limit(users[1], 7, Side.BUY, 100, 2, Tif.GTC)
    machine.limit(users[2], 7, Side.BUY, 105, 1, Tif.GTC)  # fills part of the sell
    machine.nonces.use(users[1])
    machine.bridge = users[2]
    entries = state_entries(machine)
    assert {key[0] for key, _ in entries} == {0, 1, 2, 3}
    assert BRIDGE_KEY in dict(entries)
    assert all(entry_value_of(machine, key) == value for key, value in entries)
    order_id = next(i for i in range(1, 10) if i not in machine.orders)
    resting = next(iter(machine.orders.values()))
    absent = [
        balance_key(users[0], 8),
        order_key(7, order_id),
        order_key(resting.asset + 1, resting.order_id),  # an order of another book
        nonce_key(users[0]),
        b"\x02short",
        b"\x09",
    ]
    assert all(entry_value_of(machine, key) is None for key in absent)
    machine.bridge = None
    assert entry_value_of(machine, BRIDGE_KEY) is None
