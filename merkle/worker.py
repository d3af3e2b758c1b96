"""Hash-only roots of columns in a separate process: `python -m merkle.worker`.

A caller that wants the roots of many columns (one namespace's keys and values each) computed
on the other core writes them with `write_columns` to a file (a memfd) and starts this module
as a fresh interpreter with that file as its stdin (`subprocess`, i.e. fork+exec in C, which
is safe while the caller runs other threads, unlike `os.fork` of the interpreter). The worker
writes each column's root (`merkle.build.root_of_columns`, 32 bytes) to its stdout as soon as
it has it, in column order, and exits 0 (1 if two keys of a column share a path).

File layout (all integers native u64): the number of columns; then per column its entry
count n, the n key lengths, the n value lengths, the concatenated keys, the concatenated
values.
"""

from __future__ import annotations

import gc
import mmap
import os
import sys
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate

from merkle.build import root_of_columns
from merkle.errors import MerkleError

_U64 = "Q"


def _lengths(items: Sequence[bytes]) -> array[int]:
    return array(_U64, map(len, items))


def write_columns(fd: int, columns: Sequence[tuple[Sequence[bytes], Sequence[bytes]]]) -> None:
    """Write (keys, values) columns to the file `fd` in the layout above.

    O(total bytes) at C speed: one join and one length array per column side.
    """
    _write_all(fd, array(_U64, [len(columns)]).tobytes())
    for keys, values in columns:
        head = array(_U64, [len(keys)])
        head.extend(_lengths(keys))
        head.extend(_lengths(values))
        _write_all(fd, head.tobytes())
        _write_all(fd, b"".join(keys))
        _write_all(fd, b"".join(values))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_columns(data: bytes | mmap.mmap) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The (keys, values) columns `write_columns` wrote, one at a time."""
    pos = 0

    def u64s(count: int) -> array[int]:
        nonlocal pos
        out = array(_U64)
        out.frombytes(data[pos : pos + 8 * count])
        pos += 8 * count
        return out

    (count,) = u64s(1)
    for _ in range(count):
        (n,) = u64s(1)
        key_lengths = u64s(n)
        value_lengths = u64s(n)
        keys = _split(data, pos, key_lengths)
        pos += sum(key_lengths)
        values = _split(data, pos, value_lengths)
        pos += sum(value_lengths)
        yield keys, values


def _split(data: bytes | mmap.mmap, start: int, lengths: Sequence[int]) -> list[bytes]:
    ends = list(accumulate(lengths, initial=start))
    return list(map(data.__getitem__, map(slice, ends, ends[1:])))


def main() -> int:
    """Read the columns from stdin (a regular file), write their roots to stdout."""
    gc.disable()  # nothing it builds holds a cycle; no collection rescans the columns
    stdin = sys.stdin.fileno()
    size = os.fstat(stdin).st_size
    data: bytes | mmap.mmap = (
        mmap.mmap(stdin, size, access=mmap.ACCESS_READ) if size else b"\0" * 8
    )
    out = sys.stdout.fileno()
    try:
        for keys, values in read_columns(data):
            os.write(out, root_of_columns(keys, values))  # atomic (< PIPE_BUF)
    except MerkleError:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
