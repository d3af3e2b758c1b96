"""Directories and stores as data, for the tests that check what a command leaves behind:
a read-only command must not change a byte of a store, or create anything where there is
no store."""

from __future__ import annotations

from pathlib import Path

from store import leveldb

Snapshot = list[tuple[str, int, bytes]]


def snapshot(path: Path) -> Snapshot:
    """Every file and directory under `path`: relative name, mtime (ns) and bytes (empty
    when `path` does not exist)."""
    if not path.exists():
        return []
    items = [(".", path.stat().st_mtime_ns, b"<dir>")]
    for item in sorted(path.rglob("*")):
        data = item.read_bytes() if item.is_file() else b"<dir>"
        items.append((str(item.relative_to(path)), item.stat().st_mtime_ns, data))
    return items


def rows(db: Path) -> list[tuple[bytes, bytes]]:
    """Every row of the store in `db`, read with LevelDB itself (not through `Store`)."""
    handle = leveldb.DB(str(db / "leveldb"))
    try:
        return list(handle.iterator())
    finally:
        handle.close()


def not_stores(base: Path) -> list[Path]:
    """Four directories under `base` that are not stores: missing, empty, holding another
    file, and a first run killed before LevelDB wrote its CURRENT file."""
    empty = base / "empty"
    empty.mkdir()
    other = base / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a store\n")
    half = base / "half"
    (half / "leveldb").mkdir(parents=True)
    return [base / "missing", empty, other, half]
