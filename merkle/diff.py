"""Diff of two trees: every key whose value differs, descending only where hashes differ
(spec/merkle.md §5)."""

from __future__ import annotations

from typing import TypeAlias

from merkle.errors import MerkleError
from merkle.nodes import L, Node, R, nid_of
from merkle.tree import SparseMerkleTree, ValueOf, leaves

DiffEntry: TypeAlias = "tuple[bytes, bytes | None, bytes | None]"


def diff(
    a: SparseMerkleTree,
    b: SparseMerkleTree,
    values_a: ValueOf | None = None,
    values_b: ValueOf | None = None,
) -> list[DiffEntry]:
    """Entries whose values differ: (key, value in a or None, value in b or None), by key.

    A tree that keeps no values reads them from its owner's `values_a` / `values_b`.
    Descends only into subtrees whose hashes differ (or whose positions do not line up, which
    happens only where the key sets differ), so d differences cost O(d log n) node visits
    (each reading the prefixes of the two branches from a leaf's path: two blake3 calls).
    """
    if a.root() == b.root():
        return []
    out: list[DiffEntry] = []
    _diff(_getter(a, values_a), _getter(b, values_b), a._root, b._root, out)
    out.sort()
    return out


def _getter(tree: SparseMerkleTree, values: ValueOf | None) -> ValueOf:
    if tree._values is not None:
        return tree._values.get
    if values is None:
        raise MerkleError("a tree that keeps no values needs its owner's values to diff")
    return values


def _diff(va: ValueOf, vb: ValueOf, x: Node, y: Node, out: list[DiffEntry]) -> None:
    """Differences between subtrees `x` (of a) and `y` (of b) at the same position."""
    if type(x) is tuple and type(y) is tuple:
        if x is y:  # shared by copy(): an unchanged subtree (updates rebuild touched paths)
            return
        nx, ny = nid_of(x), nid_of(y)
        if nx == ny:
            hx, hy = x[3], y[3]
            if hx[L] != hy[L]:
                _diff(va, vb, x[1], y[1], out)
            if hx[R] != hy[R]:
                _diff(va, vb, x[2], y[2], out)
            return
        bx, by = x[0], y[0]
        if bx < by and ny >> (by - bx) == nx:  # y lies wholly on one side of x's split
            if (ny >> (by - bx - 1)) & 1:
                _diff(va, vb, x[1], None, out)
                _diff(va, vb, x[2], y, out)
            else:
                _diff(va, vb, x[1], y, out)
                _diff(va, vb, x[2], None, out)
            return
        if by < bx and nx >> (bx - by) == ny:
            if (nx >> (bx - by - 1)) & 1:
                _diff(va, vb, None, y[1], out)
                _diff(va, vb, x, y[2], out)
            else:
                _diff(va, vb, x, y[1], out)
                _diff(va, vb, None, y[2], out)
            return
        # Otherwise the prefixes differ: the two subtrees hold disjoint key sets.
    keys_a = leaves(x, [])
    keys_b = leaves(y, [])
    in_b = set(keys_b)
    for k in keys_a:
        value_a = va(k)
        if k in in_b:
            value_b = vb(k)
            if value_a != value_b:
                out.append((k, value_a, value_b))
        else:
            out.append((k, value_a, None))
    in_a = set(keys_a)
    for k in keys_b:
        if k not in in_a:
            out.append((k, None, vb(k)))
