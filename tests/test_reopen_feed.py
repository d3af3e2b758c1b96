"""The roots of a reopen hashed while the scan reads the entries (`store.roots_feed`,
`merkle.worker --stream`), against the independent reference of tests/reference/smt.py:
the same roots whatever the chunks, the key shapes or the order of the keys; a worker that
dies, or a bad stream, only leaves more to the caller; a tampered store is still named.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.roots as roots_module
from merkle.worker import LOCATION, read_column, streamed_column, write_all, write_column
from state_machine import machine_from_entries
from store import keys as K
from store import leveldb
from store.database import Store
from store.errors import StateDiverged
from store.records import Entry
from store.roots import compute_roots
from store.roots_feed import FedRoots, RootsFeed
from tests.reference import smt
from tests.test_merkle_roots import _expected, _no_children_left, parallel, states  # noqa: F401 (a fixture)


def _feed(entries: list[Entry], cuts: list[int]) -> RootsFeed:
    """A feed that saw `entries` as a scan reading up to each cut would (growing list)."""
    feed = RootsFeed(compute_roots, max(len(entries), 10))
    scanned: list[Entry] = []
    for cut in sorted(cuts):
        scanned.extend(entries[len(scanned) : cut])
        feed.scanned(scanned)
    return feed


def _with_books(entries: list[Entry]) -> list[Entry]:
    """`entries` and three books of 40 orders (so that something is shipped), sorted."""
    books = {
        b"\x02" + asset.to_bytes(4, "big") + i.to_bytes(8, "big"): b"o%d" % i
        for asset in (1, 2, 7)
        for i in range(1, 41)
    }
    return sorted({**books, **dict(entries)}.items())


@pytest.mark.usefixtures("parallel")
@settings(max_examples=25, deadline=None)
@given(states, st.lists(st.integers(0, 200), max_size=6))
def test_fed_roots_equal_the_reference_for_any_keys_and_chunks(
    entries: list[Entry], cuts: list[int]
) -> None:
    entries = _with_books(entries)
    feed = _feed(entries, cuts)
    assert feed.feeding
    pending = feed.finish(entries)
    assert isinstance(pending, FedRoots)
    assert pending.result() == _expected(entries)


@pytest.mark.usefixtures("parallel")
def test_every_book_and_the_balances_go_to_the_worker_the_rest_stays() -> None:
    entries = _with_books(
        [
            (b"\x00next_order_id", b"\x18\x2a"),
            (b"\x01" + bytes(20) + b"\0\0\0\1", b"b"),
            (b"\x03" + bytes(20), b"\x01"),
            (b"\x05stray", b"s"),
        ]
    )
    feed = _feed(entries, [3, 50, 90])
    shipped = [namespace for namespace, _, _ in feed._shipped]
    assert shipped == [b"\x01\0\0\0\1", b"\x02\0\0\0\1", b"\x02\0\0\0\2"]  # book 7 goes on
    pending = feed.finish(entries)
    assert [ns for ns, _, _ in feed._shipped][3:] == [b"\x02\0\0\0\7"]
    # the globals (two stretches: 00 keys and the stray 05 key) and the nonces stay here
    assert sorted(ns for ns, _, _ in feed._kept) == [b"\x00", b"\x00", b"\x03"]
    assert pending.result() == _expected(entries)


@pytest.mark.usefixtures("parallel")
@pytest.mark.parametrize("disorder", ["swapped", "repeated"])
def test_keys_out_of_order_stop_the_feed_and_take_the_general_path(disorder: str) -> None:
    entries = _with_books([])
    if disorder == "swapped":
        entries[60], entries[61] = entries[61], entries[60]
    else:
        entries[61] = (entries[60][0], b"again")
    feed = _feed(entries, [30, 90])
    pending = feed.finish(entries)
    assert not feed.feeding and not isinstance(pending, FedRoots)
    assert pending.result() == compute_roots(entries)  # the general path's roots
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_a_dead_worker_is_made_up_for_by_the_caller() -> None:
    entries = _with_books([])
    feed = _feed(entries, [50])
    assert feed._worker is not None
    feed._worker.kill()
    feed._worker.wait()
    pending = feed.finish(entries)  # shipping to a dead worker's pipe fails: kept here
    assert pending.result() == _expected(entries)
    assert _no_children_left()


@pytest.mark.usefixtures("parallel")
def test_the_worker_runs_this_code_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = tmp_path / "merkle"
    stray.mkdir()
    (stray / "__init__.py").write_text("raise ImportError('a stray merkle package')\n")
    monkeypatch.chdir(tmp_path)  # `python -m` alone would import this one first
    entries = _with_books([])
    pending = _feed(entries, [50]).finish(entries)
    assert pending._worker is not None
    assert pending._worker.wait() == 0  # it hashed every book

    def no_hashing_here(keys: object, values: object) -> bytes:
        raise AssertionError("the caller hashed a namespace the worker had done")

    monkeypatch.setattr(roots_module, "root_of_columns", no_hashing_here)
    assert pending.result() == _expected(entries)


@pytest.mark.usefixtures("parallel")
def test_cancel_ends_the_worker_of_a_scan_that_failed() -> None:
    feed = _feed(_with_books([]), [50])
    assert feed.feeding
    feed.cancel()
    feed.cancel()
    assert not feed.feeding and _no_children_left()


def test_small_states_and_other_root_functions_feed_nothing() -> None:
    entries = _with_books([])
    assert not RootsFeed(compute_roots, 99_999).feeding
    assert not RootsFeed(lambda e: compute_roots(e), 1_000_000).feeding
    assert RootsFeed(compute_roots, len(entries)).finish(entries).result() == _expected(entries)


# -- the worker's streamed mode --------------------------------------------------------


def _stream(
    columns: list[tuple[list[bytes], list[bytes]]], cut: int = 0, raw: bytes = b""
) -> subprocess.Popen[bytes]:
    """A streamed worker fed `columns` (then `raw` as one more column), its last record
    `cut` bytes short."""
    data = os.memfd_create("test-columns")
    records = b""
    offset = 0
    for column in [streamed_column(*column) for column in columns] + ([raw] if raw else []):
        write_all(data, column)
        records += LOCATION.pack(offset, len(column))
        offset += len(column)
    read_end, write_end = os.pipe()
    worker = subprocess.Popen(
        [sys.executable, "-m", "merkle.worker", "--stream", str(data)],
        stdin=read_end,
        stdout=subprocess.PIPE,
        pass_fds=(data,),
    )
    os.close(read_end)
    os.close(data)
    os.write(write_end, records[: len(records) - cut])
    os.close(write_end)
    return worker


def test_the_streamed_worker_writes_each_columns_root() -> None:
    columns = [
        ([b"k%d" % i for i in range(n)], [b"v%d" % (i * n) for i in range(n)]) for n in (1, 7, 300)
    ]
    out, _ = _stream(columns).communicate()
    expected = [smt.root(dict(zip(keys, values, strict=True))) for keys, values in columns]
    assert [out[i : i + 32] for i in range(0, len(out), 32)] == expected


def test_a_cut_record_ends_the_streamed_worker_with_1() -> None:
    worker = _stream([([b"a"], [b"b"]), ([b"c"], [b"d"])], cut=3)
    out, _ = worker.communicate()
    assert worker.returncode == 1
    assert out == smt.root({b"a": b"b"})  # what came before the cut record is there


@pytest.mark.parametrize(
    "raw",
    [
        marshal.dumps(7),
        marshal.dumps(([b"a"], (b"b",))),
        marshal.dumps(([b"a", 1], [b"b", b"c"])),
        marshal.dumps(([b"a"], [b"b"]))[:-1],
        b"\xff" * 9,
    ],
    ids=["not-a-pair", "a-tuple", "not-bytes", "cut", "garbage"],
)
def test_a_bad_streamed_column_ends_the_worker_with_1(raw: bytes) -> None:
    worker = _stream([([b"a"], [b"b"])], raw=raw)
    out, _ = worker.communicate()
    assert worker.returncode == 1
    assert out == smt.root({b"a": b"b"})


def test_one_column_round_trips() -> None:
    data = os.memfd_create("test-column")
    columns = [([b"", b"a", b"bc" * 40], [b"v", b"", b"\x00" * 70]), ([], [])]
    lengths = [write_column(data, keys, values) for keys, values in columns]
    os.lseek(data, 0, os.SEEK_SET)
    raw = os.read(data, 1 << 16)
    os.close(data)
    first = read_column(raw, 0)
    assert first == (*columns[0], lengths[0])
    assert read_column(raw, lengths[0]) == (*columns[1], sum(lengths))


# -- through the store: Store.restore with compute_roots --------------------------------


@pytest.mark.usefixtures("parallel")
def test_restore_feeds_the_worker_during_the_scan(
    resting_store: tuple[Path, list[Entry]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, entries = resting_store
    fed: list[bytes] = []
    ship = RootsFeed._ship

    def spy(self: RootsFeed, column: tuple[bytes, list[bytes], list[bytes]]) -> None:
        fed.append(column[0])
        ship(self, column)

    monkeypatch.setattr(RootsFeed, "_ship", spy)
    with Store(str(path)) as store:
        restored = store.restore(None, compute_roots)
    assert restored.entries == entries
    assert restored.machine.orders.keys() == machine_from_entries(entries).orders.keys()
    # The balances once the scan is past them, then each book (the last at `finish`).
    assert fed == [b"\x01\0\0\0" + bytes((a,)) for a in range(1, 5)] + [
        b"\x02\0\0\0" + bytes((a,)) for a in range(1, 5)
    ]
    assert _no_children_left()


def tamper_one_order(path: Path) -> tuple[int, int]:
    """Raise the price of the 300th resting order of asset 1 in the store's latest state
    (straight in LevelDB, the root left as it was); return its asset and order id."""
    db = leveldb.DB(str(path / "leveldb"))
    key, value = [
        (k, v) for k, v in db.iterator(prefix=K.STATE_LATEST + b"\x02") if cbor2.loads(v)[0] == 1
    ][300]
    side, price, size, user = cbor2.loads(value)
    db.put(key, cbor2.dumps([side, price + 1, size, user]))  # the lock still holds
    db.close()
    return int.from_bytes(key[2:6], "big"), int.from_bytes(key[6:14], "big")


@pytest.mark.usefixtures("parallel")
def test_a_tampered_order_is_named_with_the_feed(resting_store: tuple[Path, list[Entry]]) -> None:
    path, _ = resting_store
    asset, order_id = tamper_one_order(path)
    with Store(str(path)) as store, pytest.raises(StateDiverged) as info:
        store.restore(None, compute_roots)
    message = str(info.value)
    assert f"in book of asset {asset} " in message and "\n" not in message
    assert f"key books/{asset}/orders/{order_id} differs" in message
    assert _no_children_left()
