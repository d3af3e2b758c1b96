"""Hash-only roots of columns in a separate process: `python -m merkle.worker [--stream FD]`.

A caller that wants the roots of many columns (one namespace's keys and values each) computed
on the other core writes them to a file (a memfd) and starts this module as a fresh
interpreter (`subprocess`, i.e. fork+exec in C, which is safe while the caller runs other
threads, unlike `os.fork` of the interpreter). The worker writes each column's root
(`merkle.build.root_of_columns`, 32 bytes) to its stdout as soon as it has it, in column
order, and exits 0 (1 if two keys of a column share a path, or its input is cut short).

Two ways to hand the columns over:
- whole: `write_columns` writes them all to the file, which is the worker's stdin;
- streamed (`--stream FD`): the file is the worker's descriptor FD and its stdin a pipe;
  the caller appends one column at a time, `streamed_column(keys, values)`, (while it is
  still reading the rest from its store, say) and then writes its place, a `LOCATION`
  record (offset and length in the file), to the pipe; the worker hashes each column as its
  record arrives and stops at the pipe's end. The file is never read before its record
  says the column is whole, and appending to a file never blocks the caller.

With `--trees OUT` after `--stream FD`, the worker builds each streamed column's tree
instead (`merkle.tree.SparseMerkleTree` keeping no values, whose nodes are nested tuples of
bytes and small ints: `marshal` writes and reads them in C, `tree_bytes` and
`tree_from_bytes`), appends its bytes to the file OUT and writes their place (a LOCATION
record) to its stdout: the caller that needs the trees themselves (a node's restart, which
goes on updating them) loads them at about 0.2 us per entry where building one costs about
8 us per entry.

Whole file layout (all integers native u64): the number of columns; then per column its
entry count n, the n key lengths, the n value lengths, the concatenated keys, the
concatenated values. A streamed column is the `marshal` of the pair of lists (keys,
values): the worker is the same interpreter (`sys.executable`), and marshal writes and
reads a list of byte strings in one C pass each (100,000 orders: 9 ms to write and 22 ms
to read, where the whole layout takes 27-30 and 90 ms).
"""

from __future__ import annotations

import gc
import marshal
import mmap
import os
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate

from merkle.build import root_of_columns
from merkle.errors import MerkleError
from merkle.hashing import HASH_SIZE
from merkle.tree import SparseMerkleTree

_U64 = "Q"
LOCATION = struct.Struct("=QQ")
"""A streamed column's place in the file: (offset, length)."""


def _lengths(items: Sequence[bytes]) -> array[int]:
    return array(_U64, map(len, items))


def write_columns(fd: int, columns: Sequence[tuple[Sequence[bytes], Sequence[bytes]]]) -> None:
    """Write (keys, values) columns to the file `fd` in the layout above.

    O(total bytes) at C speed: one join and one length array per column side.
    """
    write_all(fd, array(_U64, [len(columns)]).tobytes())
    for keys, values in columns:
        write_column(fd, keys, values)


def write_column(fd: int, keys: Sequence[bytes], values: Sequence[bytes]) -> int:
    """Write one (keys, values) column at the file's position; the bytes written.
    O(total bytes) at C speed."""
    head = array(_U64, [len(keys)])
    head.extend(_lengths(keys))
    head.extend(_lengths(values))
    parts = (head.tobytes(), b"".join(keys), b"".join(values))
    for part in parts:
        write_all(fd, part)
    return sum(map(len, parts))


def streamed_column(keys: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """The bytes of one streamed column: O(total bytes) in C (the lists copied first are
    pointers only)."""
    return marshal.dumps((list(keys), list(values)))


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to the file `fd` (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_columns(data: bytes | mmap.mmap) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The (keys, values) columns `write_columns` wrote, one at a time."""
    (count,) = _u64s(data, 0, 1)
    pos = 8
    for _ in range(count):
        keys, values, pos = read_column(data, pos)
        yield keys, values


def read_column(data: bytes | mmap.mmap, pos: int) -> tuple[list[bytes], list[bytes], int]:
    """The (keys, values) column `write_column` wrote at `pos`, and the position after it."""
    (n,) = _u64s(data, pos, 1)
    key_lengths = _u64s(data, pos + 8, n)
    value_lengths = _u64s(data, pos + 8 + 8 * n, n)
    pos += 8 + 16 * n
    keys = _split(data, pos, key_lengths)
    pos += sum(key_lengths)
    values = _split(data, pos, value_lengths)
    pos += sum(value_lengths)
    return keys, values, pos


def _u64s(data: bytes | mmap.mmap, pos: int, count: int) -> array[int]:
    out = array(_U64)
    out.frombytes(data[pos : pos + 8 * count])
    return out


def _split(data: bytes | mmap.mmap, start: int, lengths: Sequence[int]) -> list[bytes]:
    ends = list(accumulate(lengths, initial=start))
    return list(map(data.__getitem__, map(slice, ends, ends[1:])))


def tree_bytes(keys: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """The tree (keeping no values) of one column's entries, as `tree_from_bytes` reads it:
    built by `SparseMerkleTree.from_columns` (O(n log n)), then marshalled (O(n), in C).
    Raises MerkleError if two keys share a path."""
    root, root_hash, size = SparseMerkleTree.from_columns(keys, values, keep_values=False).built()
    return marshal.dumps((root_hash, size, root))


def tree_from_bytes(data: bytes) -> SparseMerkleTree:
    """The tree `tree_bytes` wrote: O(n) in C, trusted as built (the caller's own worker
    wrote it; only its outer shape is checked). Raises MerkleError if it is not one."""
    try:
        root_hash, size, root = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        raise MerkleError("not the bytes of a tree") from None
    if type(root_hash) is not bytes or len(root_hash) != HASH_SIZE or type(size) is not int:
        raise MerkleError("not the bytes of a tree")
    return SparseMerkleTree.from_built(root, root_hash, size)


def _write_trees(pipe: int, fd: int, trees: int, out: int) -> None:
    """Each streamed column's `tree_bytes` appended to the file `trees`, its LOCATION to
    `out`."""
    offset = 0
    for keys, values in _streamed(pipe, fd):
        data = tree_bytes(keys, values)
        write_all(trees, data)
        os.write(out, LOCATION.pack(offset, len(data)))  # atomic (< PIPE_BUF)
        offset += len(data)


def main(argv: Sequence[str]) -> int:
    """Read the columns (from stdin, or as streamed), write their roots (or, with `--trees`,
    their trees' places) to stdout."""
    gc.disable()  # nothing it builds holds a cycle; no collection rescans the columns
    out = sys.stdout.fileno()
    try:
        if len(argv) == 4 and argv[0] == "--stream" and argv[2] == "--trees":
            _write_trees(sys.stdin.fileno(), int(argv[1]), int(argv[3]), out)
            return 0
        columns: Iterator[tuple[list[bytes], list[bytes]]]
        if len(argv) == 2 and argv[0] == "--stream":
            columns = _streamed(sys.stdin.fileno(), int(argv[1]))
        else:
            stdin = sys.stdin.fileno()
            size = os.fstat(stdin).st_size
            data: bytes | mmap.mmap = (
                mmap.mmap(stdin, size, access=mmap.ACCESS_READ) if size else b"\0" * 8
            )
            columns = read_columns(data)
        for keys, values in columns:
            os.write(out, root_of_columns(keys, values))  # atomic (< PIPE_BUF)
    except (MerkleError, EOFError, ValueError, TypeError, OSError):  # a bad column, record, FD
        return 1
    return 0


def _streamed(pipe: int, fd: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """Each streamed column, read from the file `fd` once its LOCATION arrives on `pipe`,
    until the pipe ends. Raises EOFError if a record or a column is cut short."""
    while True:
        record = _read_pipe(pipe, LOCATION.size)
        if not record:
            return
        offset, length = LOCATION.unpack(record)
        data = os.pread(fd, length, offset)  # one call: a regular file reads whole
        if len(data) != length:
            raise EOFError("column shorter than its record")
        keys, values = marshal.loads(data)  # ValueError, EOFError or TypeError if bad
        if type(keys) is not list or type(values) is not list:
            raise ValueError("a streamed column is two lists")
        yield keys, values


def _read_pipe(pipe: int, size: int) -> bytes:
    """`size` bytes from `pipe`; b"" at its end before the first byte, EOFError after it."""
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = os.read(pipe, left)
        if not chunk:
            if left == size:
                return b""
            raise EOFError("record cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
