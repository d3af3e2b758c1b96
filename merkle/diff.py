"""Diff of two trees: every key whose value differs, descending only where hashes differ
(spec/merkle.md §5)."""

from __future__ import annotations

from typing import TypeAlias

from merkle.nodes import L, Node, R
from merkle.tree import SparseMerkleTree

DiffEntry: TypeAlias = "tuple[bytes, bytes | None, bytes | None]"


def diff(a: SparseMerkleTree, b: SparseMerkleTree) -> list[DiffEntry]:
    """Entries whose values differ: (key, value in a or None, value in b or None), by key.

    Descends only into subtrees whose hashes differ (or whose positions do not line up, which
    happens only where the key sets differ), so d differences cost O(d log n).
    """
    if a.root() == b.root():
        return []
    out: list[DiffEntry] = []
    _diff(a._values, b._values, a._root, b._root, out)
    out.sort()
    return out


def _leaves(node: Node, acc: list[bytes]) -> list[bytes]:
    stack = [node]
    while stack:
        n = stack.pop()
        if type(n) is tuple:
            stack.append(n[2])
            stack.append(n[3])
        elif n is not None:
            assert type(n) is bytes
            acc.append(n)
    return acc


def _diff(
    va: dict[bytes, bytes], vb: dict[bytes, bytes], x: Node, y: Node, out: list[DiffEntry]
) -> None:
    """Differences between subtrees `x` (of a) and `y` (of b) at the same position."""
    if type(x) is tuple and type(y) is tuple:
        if x is y:  # shared by copy(): an unchanged subtree (updates rebuild touched paths)
            return
        nx, ny = x[1], y[1]
        if nx == ny:
            hx, hy = x[4], y[4]
            if hx[L] != hy[L]:
                _diff(va, vb, x[2], y[2], out)
            if hx[R] != hy[R]:
                _diff(va, vb, x[3], y[3], out)
            return
        bx, by = x[0], y[0]
        if bx < by and ny >> (by - bx) == nx:  # y lies wholly on one side of x's split
            if (ny >> (by - bx - 1)) & 1:
                _diff(va, vb, x[2], None, out)
                _diff(va, vb, x[3], y, out)
            else:
                _diff(va, vb, x[2], y, out)
                _diff(va, vb, x[3], None, out)
            return
        if by < bx and nx >> (bx - by) == ny:
            if (nx >> (bx - by - 1)) & 1:
                _diff(va, vb, None, y[2], out)
                _diff(va, vb, x, y[3], out)
            else:
                _diff(va, vb, x, y[2], out)
                _diff(va, vb, None, y[3], out)
            return
        # Otherwise the prefixes differ: the two subtrees hold disjoint key sets.
    keys_a = _leaves(x, [])
    keys_b = _leaves(y, [])
    in_b = set(keys_b)
    for k in keys_a:
        if k in in_b:
            if va[k] != vb[k]:
                out.append((k, va[k], vb[k]))
        else:
            out.append((k, va[k], None))
    in_a = set(keys_a)
    for k in keys_b:
        if k not in in_a:
            out.append((k, None, vb[k]))

