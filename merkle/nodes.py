"""The in-memory node layout of `SparseMerkleTree` and the helpers every pass shares.

In-memory layout (chosen for memory per entry and for cheap batch updates):

* `_values`: dict key -> value, the map itself (O(1) `get`, `len`), when the tree keeps its
  values (`keep_values=True`, the default). A tree without values (the state commitment,
  whose values the state machine already holds) keeps only what the hashes need: the leaves'
  keys and the inner preimages; its owner supplies a value where one is read (`prove` of an
  exclusion by another leaf, `diff`).
* `_root`, `_root_hash`: a compressed (Patricia) form of the binary tree and its hash. A node is
  - `None`: an empty subtree;
  - `bytes`: a leaf, represented by its key alone (its hash is in its parent's preimage);
  - a tuple `(bit, left, right, pre)`: a *branch*, i.e. an inner node whose two children
    are both non-empty. `bit` is the depth at which its leaves split (a small int: a shared
    object). `pre` is the 65-byte preimage of the branch's own hash at its bit,
    0x01 ‖ hash of `left` ‖ hash of `right` (children at depth bit + 1): hashing a branch
    is one call on a stored object. The chain of inner nodes with an EMPTY sibling between
    a branch and its parent is never stored: the parent's `pre` already holds the hash at
    the top of it. The `bit` leading path bits the branch's leaves share (its prefix, which
    a chain's hashes need) are not stored either: a pass that walks down a changed key's
    path reads them from that key's own path, and elsewhere `nid_of` reads them from the
    path of a leaf below (one blake3 call). Memory per entry at 1,000,000 entries
    (tracemalloc): about 46 B of key, 72 B of branch tuple and 98 B of preimage.

Keeping each child's hash in its parent means an untouched sibling (leaf or branch) never has
to be rehashed, and a branch can be re-hung at another depth without rebuilding its tuple.
Branch tuples are immutable: an update builds new tuples along the touched paths and shares the
rest, which makes `copy()` cheap and lets `diff` skip shared subtrees by identity. They hold no
reference cycles, so the cyclic garbage collector is paused while thousands of them are built
(it would otherwise rescan the whole young heap many times per batch for nothing).

The passes over this layout live in their own modules: `merkle.build` (a whole tree from its
entries), `merkle.batch` (a sorted batch of changes merged into a tree), `merkle.diff`, and
`SparseMerkleTree` itself in `merkle.tree` (the map, the flush, proofs).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from blake3 import blake3

from merkle.errors import InvalidEntryError
from merkle.hashing import EMPTY, HASH_SIZE, NODE_PREFIX

Node: TypeAlias = "bytes | Branch | None"
Branch: TypeAlias = "tuple[int, Node, Node, bytes]"

L = slice(1, 1 + HASH_SIZE)
"""`pre[L]`: the hash of a branch's left child."""
R = slice(1 + HASH_SIZE, None)
"""`pre[R]`: the hash of a branch's right child."""
HEAD = slice(1 + HASH_SIZE)
"""`pre[HEAD]`: a preimage less its right child's hash (`pre[HEAD] + h` replaces it)."""

NODE_EMPTY = NODE_PREFIX + EMPTY  # preimage prefix of an inner node whose left child is EMPTY
SENTINEL = 1 << 256  # or-ed into a key hash so that `kx >> (256 - bit)` is a node id (`nid_of`)
H = HASH_SIZE
BYTE = [b >> 3 for b in range(256)]
MASK = [0x80 >> (b & 7) for b in range(256)]
"""Bit b of a path, read from its 32 bytes `d`: `d[BYTE[b]] & MASK[b]` (non-zero: 1). Small
ints only, where `(x >> (255 - b)) & 1` allocates a shifted 256-bit int."""

_T = TypeVar("_T")


def as_bytes(x: object, what: str) -> bytes:
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise InvalidEntryError(f"{what} must be bytes, not {type(x).__name__}")


def without_gc(fn: Callable[[], _T]) -> _T:
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        return fn()
    finally:
        if enabled:
            gc.enable()


def chain(h: bytes, nid: int, bit: int, top: int, hang: int) -> bytes:
    """Hash at depth `hang` of a subtree whose hash at depth `top` is `h`.

    Every inner node between the two depths has an EMPTY sibling; the side the subtree is on at
    depth j is bit j of the branch prefix packed in `nid` (branch bit `bit`).
    """
    b3 = blake3
    j = top - 1
    while j >= hang:
        if (nid >> (bit - 1 - j)) & 1:
            h = b3(NODE_EMPTY + h).digest()
        else:
            h = b3(NODE_PREFIX + h + EMPTY).digest()
        j -= 1
    return h


def nid_of(node: Branch) -> int:
    """`(1 << bit) | prefix` of a branch: its bit and the `bit` path bits its leaves share,
    read from the path of its leftmost leaf (one blake3 call; O(depth below it)).

    For the passes that do not hold a key of the subtree already (dissolving a branch,
    diff); the hot paths use the path of the key they walk down.
    """
    leaf: Node = node[1]
    while type(leaf) is tuple:
        leaf = leaf[1]
    assert type(leaf) is bytes
    return (int.from_bytes(blake3(leaf).digest(), "big") | SENTINEL) >> (256 - node[0])


def branch_hash_at(node: Branch, nid: int, hang: int) -> bytes:
    """Hash of a branch (node id `nid`) hanging at depth `hang` (<= its bit)."""
    bit = node[0]
    return chain(blake3(node[3]).digest(), nid, bit, bit, hang)
