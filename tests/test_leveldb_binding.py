"""The LevelDB bindings behave the same for what the store uses (issue 12 item 11).

pyproject.toml installs plyvel on CPython < 3.13 and plyvel-next (module `plyvel_next`)
from 3.13 on; `store.leveldb` imports whichever is there. Each installed binding is run
through every call the store makes, against expected values written by hand, so on CI's
3.11 run plyvel and on its 3.13 run plyvel-next meet the same expectations. Where both are
installed (CPython 3.12 has wheels of both), a database written by one is read by the other.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from store import leveldb


def _installed() -> list[str]:
    names = []
    for name in ("plyvel", "plyvel_next"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        names.append(name)
    return names


BINDINGS = _installed()


def test_the_store_uses_an_installed_binding() -> None:
    assert leveldb.NAME in BINDINGS
    assert BINDINGS[0] == leveldb.NAME  # plyvel first where both are there


@pytest.fixture(params=BINDINGS)
def binding(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def _filled(binding: Any, path: Path) -> Any:
    db = binding.DB(str(path), create_if_missing=True)
    for key in (b"\x01\x00\x02", b"\x01\x00\x01", b"\x02", b"\x01\xff", b"\x00head", b"\x01"):
        db.put(key, b"v" + key)
    return db


def test_get_put_delete_and_missing_keys(binding: Any, tmp_path: Path) -> None:
    db = _filled(binding, tmp_path / "db")
    assert db.get(b"\x02") == b"v\x02"
    assert db.get(b"\x03") is None
    db.delete(b"\x02")
    assert db.get(b"\x02") is None
    db.delete(b"\x7f")  # deleting a missing key is no error
    db.close()
    reopened = binding.DB(str(tmp_path / "db"))
    assert reopened.get(b"\x01") == b"v\x01" and reopened.get(b"\x02") is None
    reopened.close()


def test_iterators_in_bytewise_order(binding: Any, tmp_path: Path) -> None:
    db = _filled(binding, tmp_path / "db")
    assert list(db.iterator(prefix=b"\x01", include_value=False)) == [
        b"\x01",
        b"\x01\x00\x01",
        b"\x01\x00\x02",
        b"\x01\xff",
    ]
    assert list(db.iterator(prefix=b"\x01\x00", include_key=False)) == [
        b"v\x01\x00\x01",
        b"v\x01\x00\x02",
    ]
    # start included, stop excluded
    assert list(db.iterator(start=b"\x01\x00\x02", stop=b"\x02")) == [
        (b"\x01\x00\x02", b"v\x01\x00\x02"),
        (b"\x01\xff", b"v\x01\xff"),
    ]
    assert next(k for k, _ in db.iterator()) == b"\x00head"
    items = db.iterator(prefix=b"\x01")
    items.seek(b"\x01\x00\x02")
    assert next(items) == (b"\x01\x00\x02", b"v\x01\x00\x02")
    items.seek(b"\x01\x80")
    assert list(items) == [(b"\x01\xff", b"v\x01\xff")]
    items.close()
    db.close()


def test_write_batches_are_atomic(binding: Any, tmp_path: Path) -> None:
    db = _filled(binding, tmp_path / "db")
    with pytest.raises(KeyError), db.write_batch(transaction=True, sync=True) as batch:
        batch.put(b"\x05", b"new")
        batch.delete(b"\x02")
        raise KeyError("abandon")
    assert db.get(b"\x05") is None and db.get(b"\x02") == b"v\x02"
    with db.write_batch(transaction=True, sync=False) as batch:
        batch.put(b"\x05", b"new")
        batch.delete(b"\x02")
    assert db.get(b"\x05") == b"new" and db.get(b"\x02") is None
    db.compact_range()
    assert db.get(b"\x05") == b"new"
    db.close()


def test_flush_memtable_empties_the_log(binding: Any, tmp_path: Path) -> None:
    """`store.leveldb.flush_memtable` (compact_range over a range past every key) writes
    the memtable to a table file and leaves an empty log, in each binding."""
    db = _filled(binding, tmp_path / "db")
    logs = list((tmp_path / "db").glob("*.log"))
    assert logs and sum(path.stat().st_size for path in logs) > 0
    leveldb.flush_memtable(db)
    assert db.get(b"\x02") == b"v\x02"
    db.close()
    assert sum(path.stat().st_size for path in (tmp_path / "db").glob("*.log")) == 0
    reopened = binding.DB(str(tmp_path / "db"))
    assert list(reopened.iterator(include_value=False))[-1] == b"\x02"
    reopened.close()


def test_errors(binding: Any, tmp_path: Path) -> None:
    assert issubclass(binding.CorruptionError, binding.Error)
    with pytest.raises(binding.Error):
        binding.DB(str(tmp_path / "missing"), create_if_missing=False)
    db = binding.DB(str(tmp_path / "db"), create_if_missing=True)
    with pytest.raises(binding.Error):  # LevelDB's own lock, across handles
        binding.DB(str(tmp_path / "db"))
    db.close()
    with pytest.raises(RuntimeError):  # a closed database refuses calls
        db.get(b"\x01")


@pytest.mark.skipif(len(BINDINGS) < 2, reason="only one LevelDB binding installed here")
def test_a_database_written_by_one_binding_reads_the_same_in_the_other(tmp_path: Path) -> None:
    first, second = (importlib.import_module(name) for name in BINDINGS)
    for writer, reader in ((first, second), (second, first)):
        path = tmp_path / writer.__name__
        _filled(writer, path).close()
        db = reader.DB(str(path))
        assert list(db.iterator(prefix=b"\x01", include_value=False))[-1] == b"\x01\xff"
        assert db.get(b"\x00head") == b"v\x00head"
        db.close()


def _table_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.ldb"))


def _put_zeros(db: Any) -> None:
    for i in range(200):
        db.put(b"\x30" + i.to_bytes(4, "big"), bytes(4096))


def test_the_store_writes_table_blocks_uncompressed(tmp_path: Path) -> None:
    """`store.leveldb.COMPRESSION` (None) reaches LevelDB: 200 rows of 4 KB of zeros take
    their full size in the table file a clean close's flush writes; through a database
    with Snappy on (LevelDB's default) the same rows shrink to a few kilobytes."""
    from store import Store

    with Store(str(tmp_path / "store")) as store:
        _put_zeros(store._db)
    snappy = leveldb.DB(str(tmp_path / "snappy"), create_if_missing=True)
    _put_zeros(snappy)
    leveldb.flush_memtable(snappy)
    snappy.close()
    assert _table_bytes(tmp_path / "store" / "leveldb") >= 200 * 4096
    assert _table_bytes(tmp_path / "snappy") < 200 * 4096 // 10
