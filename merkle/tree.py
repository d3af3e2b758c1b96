"""`SparseMerkleTree`: an authenticated map from byte keys to byte values (spec/merkle.md).

In-memory layout (chosen for memory per entry and for cheap batch updates):

* `_values`: dict key -> value, the map itself (O(1) `get`, `len`).
* `_root`, `_root_hash`: a compressed (Patricia) form of the binary tree and its hash. A node is
  - `None`: an empty subtree;
  - `bytes`: a leaf, represented by its key alone (its value is in `_values`);
  - a tuple `(bit, nid, left, right, hh)`: a *branch*, i.e. an inner node whose two children
    are both non-empty. `bit` is the depth at which its leaves split and
    `nid = (1 << bit) | prefix` packs it with the `bit` leading path bits they all share (`bit`
    is kept apart although derivable: a small int is a shared object, so the descent reads it
    without touching another cache line, and `nid` is read only where a chain must be
    checked). `hh` is the 64-byte concatenation of the hashes of `left` and `right` at depth
    bit + 1, i.e. the preimage of the branch's own hash minus its 0x01 prefix. The chain of
    inner nodes with an EMPTY sibling between a branch and its parent is never stored: the
    parent's `hh` already holds the hash at the top of it.

Keeping each child's hash in its parent means an untouched sibling (leaf or branch) never has
to be rehashed, and a branch can be re-hung at another depth without rebuilding its tuple.
Branch tuples are immutable: an update builds new tuples along the touched paths and shares the
rest, which makes `copy()` cheap and lets `diff` skip shared subtrees by identity. They hold no
reference cycles, so the cyclic garbage collector is paused while thousands of them are built
(it would otherwise rescan the whole young heap many times per batch for nothing).

A tree that was empty at its last flush (a fresh tree, `from_items`, or the first batch of a
namespace) is built by `_build_all` in one bulk pass over all its entries instead of merging
them one by one; it produces the very same nodes.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import xor
from typing import TypeAlias, TypeVar

from blake3 import blake3

from merkle.errors import InvalidEntryError, MerkleError
from merkle.hashing import EMPTY, HASH_SIZE, LEAF_PREFIX, NODE_PREFIX
from merkle.proof import Proof, ProofKind

_Node: TypeAlias = "bytes | _Branch | None"
_Branch: TypeAlias = "tuple[int, int, _Node, _Node, bytes]"

Changes: TypeAlias = "Mapping[bytes, bytes | None] | Iterable[tuple[bytes, bytes | None]]"

_NODE_EMPTY = NODE_PREFIX + EMPTY  # preimage prefix of an inner node whose left child is EMPTY
_SENTINEL = 1 << 256  # or-ed into a key hash so that `kx >> (256 - bit)` is comparable to nid
_H = HASH_SIZE
_IX = 22  # low bits of a packed sort key that hold the entry's index (see `_build_all`)
_ONE = [1 << b for b in range(257)]

_T = TypeVar("_T")


def _as_bytes(x: object, what: str) -> bytes:
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise InvalidEntryError(f"{what} must be bytes, not {type(x).__name__}")


def _without_gc(fn: Callable[[], _T]) -> _T:
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        return fn()
    finally:
        if enabled:
            gc.enable()


def _chain(h: bytes, nid: int, bit: int, top: int, hang: int) -> bytes:
    """Hash at depth `hang` of a subtree whose hash at depth `top` is `h`.

    Every inner node between the two depths has an EMPTY sibling; the side the subtree is on at
    depth j is bit j of the branch prefix packed in `nid` (branch bit `bit`).
    """
    b3 = blake3
    j = top - 1
    while j >= hang:
        if (nid >> (bit - 1 - j)) & 1:
            h = b3(_NODE_EMPTY + h).digest()
        else:
            h = b3(NODE_PREFIX + h + EMPTY).digest()
        j -= 1
    return h


def _branch_hash_at(node: _Branch, hang: int) -> bytes:
    """Hash of a branch hanging at depth `hang` (<= its bit)."""
    bit = node[0]
    return _chain(blake3(NODE_PREFIX + node[4]).digest(), node[1], bit, bit, hang)


def _sorted_by_path(keys: list[bytes]) -> tuple[list[int], list[bytes], list[bytes]]:
    """(path ints, key hashes, keys) of `keys`, sorted by path."""
    b3 = blake3
    from_bytes = int.from_bytes
    digests = [b3(k).digest() for k in keys]
    ints = [from_bytes(d, "big") for d in digests]
    order = sorted(range(len(keys)), key=ints.__getitem__)
    return [ints[i] for i in order], [digests[i] for i in order], [keys[i] for i in order]


def _all_bytes(xs: Iterable[object]) -> bool:
    return set(map(type, xs)) <= {bytes}


def _build_all(values: dict[bytes, bytes]) -> tuple[_Node, bytes]:
    """The whole tree of the entries `values`, and its root hash, in one bulk pass.

    All hashes are computed by list comprehensions with one reused hasher (a blake3 object
    costs more to create than to feed 65 bytes). Each key hash is packed with the entry's index
    into one int, so a single sort of plain ints orders the entries by path. The tree is then
    the Cartesian tree of the split depths of neighbouring paths (the first bit where they
    differ): one left-to-right pass with a stack of open branches, like building a Patricia
    trie from an LCP array, with no recursion and no bisection.
    """
    n = len(values)
    ix = _IX
    if not n:
        return None, EMPTY
    if n >= 1 << ix:
        return _build_large(values)
    keys = list(values)
    hasher = blake3()
    up = hasher.update
    dg = hasher.digest
    rs = hasher.reset
    khs = [(up(k), dg(), rs())[1] for k in keys]
    vhs = [(up(v), dg(), rs())[1] for v in values.values()]
    lp = LEAF_PREFIX
    leafs = [(up(lp + a + b), dg(), rs())[1] for a, b in zip(khs, vhs, strict=True)]
    del vhs
    from_bytes = int.from_bytes
    packed = [from_bytes(d, "big") << ix | i for i, d in enumerate(khs)]
    del khs
    packed.sort()
    # levels[i]: 256 + ix minus the depth where paths i and i + 1 split (> ix: they differ).
    levels = list(map(int.bit_length, map(xor, packed, packed[1:])))
    if levels and min(levels) <= ix:
        raise MerkleError("blake3 collision between two distinct keys")
    top = 256 + ix
    levels.append(top + 1)  # after the last entry: "split at depth -1" closes every branch
    order = list(map(((1 << ix) - 1).__and__, packed))
    skeys = list(map(keys.__getitem__, order))
    sleafs = list(map(leafs.__getitem__, order))
    del order, keys, leafs
    # Open branches, each (bit, left child, its hash hanging at bit + 1, bit of the one below);
    # `tb` is the bit of the top one (-2: none). The current subtree `node` (hash `h` at depth
    # `nbit`, or 0 for a leaf, whose hash is the same at every depth) closes every open branch
    # deeper than the split `d` to its right, as their right child, then waits as the left
    # child of the branch at `d`.
    stack: list[tuple[int, _Node, bytes, int]] = []
    push = stack.append
    pop = stack.pop
    np_ = NODE_PREFIX
    one = _ONE
    tb = -2
    node: _Node = None
    h = EMPTY
    for x, lv, node, h in zip(packed, levels, skeys, sleafs, strict=True):
        d = top - lv
        nbit = 0
        while tb > d:
            b, left, lh, tb = pop()
            if nbit > b + 1:
                h = _chain(h, node[1], nbit, nbit, b + 1)
            hh = lh + h
            h = up(np_ + hh).digest()
            rs()
            node = (b, one[b] | x >> (top - b), left, node, hh)
            nbit = b
        if nbit > d + 1:
            h = _chain(h, node[1], nbit, nbit, max(d + 1, 0))
        push((d, node, h, tb))
        tb = d
    return node, h


def _build_large(values: dict[bytes, bytes]) -> tuple[_Node, bytes]:
    """`_build_all` for more entries than its packed index holds: recursive, slower."""
    ints, digests, keys = _sorted_by_path(list(values))
    return _build(values, ints, digests, keys, 0, len(keys), 0)


def _leaf_hash_of(key: bytes, value: bytes) -> bytes:
    b3 = blake3
    return b3(LEAF_PREFIX + b3(key).digest() + b3(value).digest()).digest()


class SparseMerkleTree:
    """Binary sparse Merkle tree over blake3(key), with 0- and 1-leaf subtrees collapsed.

    `update` only records changes; the hashes of the touched paths are recomputed in one sorted
    batch pass by the next `root()` (or `prove`, `diff`, `copy`), so k changes over n entries
    cost O(k log n) hashes with the upper levels shared.
    """

    __slots__ = ("_pending", "_root", "_root_hash", "_stale", "_values")

    def __init__(self, changes: Changes | None = None) -> None:
        self._values: dict[bytes, bytes] = {}
        # Changed since the last flush: key -> new value (None: deleted). A small dict, so
        # the batch pass reads new values without probing the big `_values` again.
        self._pending: dict[bytes, bytes | None] = {}
        self._root: _Node = None
        self._root_hash: bytes = EMPTY
        # True when the tree was empty at the last flush and entries were added since: the
        # next flush builds the whole tree from `_values` in one bulk pass (`_pending` unused).
        self._stale = False
        if changes is not None:
            self.update(changes)

    # ----------------------------------------------------------------- construction / copy

    @classmethod
    def from_items(
        cls, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
    ) -> SparseMerkleTree:
        """Build a tree from key/value pairs (a later duplicate key wins) in one pass."""
        tree = cls()
        values = tree._values
        if not isinstance(items, Mapping):
            items = list(items)  # read twice if it holds anything but bytes
        try:
            values.update(items)
            valid = _all_bytes(values) and _all_bytes(values.values())
        except TypeError:  # an unhashable key (bytearray): converted below
            valid = False
        if not valid:
            values.clear()
            for key, value in items.items() if isinstance(items, Mapping) else items:
                if type(key) is not bytes:
                    key = _as_bytes(key, "key")
                if type(value) is not bytes:
                    value = _as_bytes(value, "value")
                values[key] = value
        if values:
            tree._root, tree._root_hash = _without_gc(lambda: _build_all(values))
        return tree

    def copy(self) -> SparseMerkleTree:
        """An independent tree with the same content; nodes are shared (they are immutable)."""
        self._flush()
        other = SparseMerkleTree()
        other._values = self._values.copy()
        other._root = self._root
        other._root_hash = self._root_hash
        return other

    # ----------------------------------------------------------------------------- reading

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._values.get(key, default)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def items(self) -> list[tuple[bytes, bytes]]:
        """All entries, sorted by key (bytewise)."""
        return sorted(self._values.items())

    def keys(self) -> list[bytes]:
        """All keys, sorted bytewise."""
        return sorted(self._values)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"SparseMerkleTree(len={len(self)}, root={self.root().hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseMerkleTree):
            return NotImplemented
        return self.root() == other.root()

    __hash__ = None  # type: ignore[assignment]  # mutable

    # ---------------------------------------------------------------------------- updating

    def update(self, changes: Changes) -> None:
        """Apply a batch of changes: key -> new value, or None to delete the key.

        Validated before anything is applied, so a bad entry leaves the tree unchanged.
        Within the batch a later change of the same key wins. Hashing is deferred to `root()`.
        """
        pairs: Iterable[tuple[bytes, bytes | None]]
        if isinstance(changes, Mapping) and all(
            type(k) is bytes and (v is None or type(v) is bytes) for k, v in changes.items()
        ):
            pairs = changes.items()  # already valid: no copy (a mapping can be iterated twice)
        else:
            pairs = [
                (
                    k if type(k) is bytes else _as_bytes(k, "key"),
                    v if v is None or type(v) is bytes else _as_bytes(v, "value"),
                )
                for k, v in (changes.items() if isinstance(changes, Mapping) else changes)
            ]
        self._apply(pairs)

    def _apply(self, pairs: Iterable[tuple[bytes, bytes | None]]) -> None:
        """`update` of already validated changes."""
        values = self._values
        if self._root is None:
            # Empty at the last flush: the next one builds from `_values` alone, so there is no
            # need to track which keys changed (the bulk path of a fresh tree).
            values.update(pairs)  # type: ignore[arg-type]  # the Nones go just below
            if None in values.values():
                for key in [k for k, v in values.items() if v is None]:
                    del values[key]
            self._stale = True
            return
        pending = self._pending
        for key, value in pairs:
            if value is None:
                if key in values:
                    del values[key]
                    pending[key] = None
            elif values.get(key) != value:
                values[key] = value
                pending[key] = value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.update(((key, value),))

    def __delitem__(self, key: bytes) -> None:
        if key not in self._values:
            raise KeyError(key)
        self.update(((key, None),))

    def root(self) -> bytes:
        """The 32-byte root hash (EMPTY for an empty tree)."""
        if self._pending or self._stale:
            self._flush()
        return self._root_hash

    # ------------------------------------------------------------------- batch recomputation

    def _flush(self) -> None:
        if self._stale:
            values = self._values
            self._root, self._root_hash = _without_gc(lambda: _build_all(values))
            self._stale = False
            self._pending = {}
            return
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        ints, digests, keys = _sorted_by_path(list(pending))
        batch = _Batch(self._values, ints, digests, keys, [pending[k] for k in keys])
        root, root_hash = self._root, self._root_hash
        try:
            self._root, self._root_hash = _without_gc(
                lambda: batch.merge(root, root_hash, 0, 0, len(batch.keys))
            )
        except BaseException:
            self._pending = pending | self._pending  # nothing was replaced: keep the work
            raise

    # -------------------------------------------------------------------------------- proofs

    def prove(self, key: bytes) -> Proof:
        """Inclusion proof if `key` is present, else exclusion proof (spec/merkle.md)."""
        if type(key) is not bytes:
            key = _as_bytes(key, "key")
        if self._pending or self._stale:
            self._flush()
        kx = int.from_bytes(blake3(key).digest(), "big") | _SENTINEL
        siblings: list[bytes] = []
        push = siblings.append
        node = self._root
        depth = 0
        while type(node) is tuple:
            bit, nid, left, right, hh = node
            if bit > depth and kx >> (256 - bit) != nid:
                # The key leaves the branch's prefix inside the chain above it, at bit j: its
                # side of the chain node at depth j is EMPTY and the branch is the sibling.
                j = 256 - (((nid ^ (1 << bit)) << (256 - bit)) ^ (kx ^ _SENTINEL)).bit_length()
                siblings.extend([EMPTY] * (j - depth))
                push(_branch_hash_at(node, j + 1))
                return Proof(ProofKind.EXCLUSION_EMPTY, tuple(siblings))
            if bit > depth:
                siblings.extend([EMPTY] * (bit - depth))
            if (kx >> (255 - bit)) & 1:
                push(hh[:_H])
                node = right
            else:
                push(hh[_H:])
                node = left
            depth = bit + 1
        if node is None:
            return Proof(ProofKind.EXCLUSION_EMPTY, tuple(siblings))
        assert type(node) is bytes
        if node == key:
            return Proof(ProofKind.INCLUSION, tuple(siblings))
        return Proof(
            ProofKind.EXCLUSION_LEAF,
            tuple(siblings),
            blake3(node).digest(),
            blake3(self._values[node]).digest(),
        )


class _Batch:
    """One sorted batch of changed keys being merged into the tree (see `_flush`).

    `ints`, `digests` and `keys` are parallel lists sorted by key hash; a key's new value is
    `new[i]` (None: absent). Every method returns `(node, hash)`: the new subtree and
    its hash at the depth where it hangs.
    """

    __slots__ = ("digests", "hasher", "ints", "keys", "new", "values")

    def __init__(
        self,
        values: dict[bytes, bytes],
        ints: list[int],
        digests: list[bytes],
        keys: list[bytes],
        new: list[bytes | None],
    ) -> None:
        self.values = values
        self.ints = ints
        self.digests = digests
        self.keys = keys
        self.new = new
        # One hasher reused (update, digest, reset) for the hot paths: cheaper than a new one
        # per hash, and private to this batch, so no state is shared between threads.
        self.hasher = blake3()

    def merge(self, node: _Node, nh: bytes, depth: int, lo: int, hi: int) -> tuple[_Node, bytes]:
        """Apply changes [lo, hi) to `node`, whose hash is `nh`, hanging at `depth`."""
        if hi - lo == 1:
            return self.merge_one(node, nh, depth, lo)
        if hi == lo:
            return node, nh
        ints = self.ints
        if type(node) is not tuple:
            return self.rebuild(node, depth, lo, hi)
        bit, nid, left, right, hh = node
        prefix = nid ^ (1 << bit)
        if bit > depth:  # a chain above the branch: do all the changes stay in its prefix?
            pk = prefix << (256 - bit)
            j = 256 - ((pk ^ ints[lo]) | (pk ^ ints[hi - 1])).bit_length()
        else:
            j = bit
        if j >= bit:
            # Every change is inside the branch: split them by the branch bit.
            mid = bisect_left(ints, (prefix << 1 | 1) << (255 - bit), lo, hi)
            # (The single-change and no-change cases are inlined: most calls are those.)
            if mid - lo == 1:
                nl, lh = self.merge_one(left, hh[:_H], bit + 1, lo)
            elif mid == lo:
                nl, lh = left, hh[:_H]
            else:
                nl, lh = self.merge(left, hh[:_H], bit + 1, lo, mid)
            if hi - mid == 1:
                nr, rh = self.merge_one(right, hh[_H:], bit + 1, mid)
            elif hi == mid:
                nr, rh = right, hh[_H:]
            else:
                nr, rh = self.merge(right, hh[_H:], bit + 1, mid, hi)
            return _join(nid, bit, nl, lh, nr, rh, depth)
        # Some change leaves the branch's prefix at bit j (< bit): a chain node at depth j
        # becomes a branch (or stays a chain node if those changes are only deletions).
        # The changes on the branch's side of bit j are merged where the branch hangs now
        # (at `depth`, where `nh` is valid), then the result is moved down to hang at j + 1.
        jprefix = ints[lo] >> (256 - j)
        mid = bisect_left(ints, (jprefix << 1 | 1) << (255 - j), lo, hi)
        if (nid >> (bit - 1 - j)) & 1:
            nl, lh = self.rebuild(None, j + 1, lo, mid)
            nr, rh = _move_down(*self.merge(node, nh, depth, mid, hi), j + 1)
        else:
            nl, lh = _move_down(*self.merge(node, nh, depth, lo, mid), j + 1)
            nr, rh = self.rebuild(None, j + 1, mid, hi)
        return _join((1 << j) | jprefix, j, nl, lh, nr, rh, depth)

    def rebuild(self, node: _Node, depth: int, lo: int, hi: int) -> tuple[_Node, bytes]:
        """Merge changes [lo, hi) into an empty subtree or a single leaf by building afresh."""
        values = self.values
        keys = self.keys
        new = self.new
        ints: list[int] = []
        digests: list[bytes] = []
        present: list[bytes] = []
        for i in range(lo, hi):
            if new[i] is not None:
                ints.append(self.ints[i])
                digests.append(self.digests[i])
                present.append(keys[i])
        if node is not None:
            assert type(node) is bytes
            d = blake3(node).digest()
            x = int.from_bytes(d, "big")
            pos = bisect_left(self.ints, x, lo, hi)
            if pos == hi or self.ints[pos] != x:  # the leaf is not itself being changed
                at = bisect_left(ints, x)
                ints.insert(at, x)
                digests.insert(at, d)
                present.insert(at, node)
        if not present:
            return None, EMPTY
        return _build(values, ints, digests, present, 0, len(present), depth)

    def merge_one(self, node: _Node, nh: bytes, depth: int, i: int) -> tuple[_Node, bytes]:
        """Apply the single change i: walk down iteratively, then rehash the path upwards.

        This is the hot loop of a batch (below the top levels each change is alone in its
        subtree), hence the manual inlining.
        """
        key = self.keys[i]
        kx = self.ints[i] | _SENTINEL
        value = self.new[i]
        top = node
        # The branches on the path and the depth each hangs at (both read again on the way up).
        path: list[_Branch] = []
        hangs: list[int] = []
        push = path.append
        step = hangs.append
        hang = depth
        while type(node) is tuple:
            bit = node[0]
            if bit > hang and kx >> (256 - bit) != node[1]:
                break
            push(node)
            step(hang)
            node = node[3] if (kx >> (255 - bit)) & 1 else node[2]
            hang = bit + 1
        hasher = self.hasher
        up = hasher.update
        rs = hasher.reset
        new: _Node
        if type(node) is bytes and node == key:
            if value is None:
                new, newh = None, EMPTY
            else:
                new = key
                newh = (up(value), hasher.digest(), rs())[1]
                newh = (up(LEAF_PREFIX + self.digests[i] + newh), hasher.digest(), rs())[1]
        elif value is None:
            return top, nh  # deleting an absent key changes nothing
        else:
            new = key
            newh = (up(value), hasher.digest(), rs())[1]
            newh = (up(LEAF_PREFIX + self.digests[i] + newh), hasher.digest(), rs())[1]
            if node is not None:
                new, newh = self.graft(node, hang, kx ^ _SENTINEL, new, newh)
        prefix = NODE_PREFIX
        path.reverse()
        hangs.reverse()
        for (bit, nid, left, right, hh), hang in zip(path, hangs, strict=True):
            if (kx >> (255 - bit)) & 1:
                if new is None:
                    # The branch dissolves: its other child now hangs where the branch hung.
                    new, newh = left, hh[:_H]
                    if type(new) is tuple:
                        newh = _chain(newh, new[1], new[0], bit + 1, hang)
                    continue
                hh = hh[:_H] + newh
                new = (bit, nid, left, new, hh)
            else:
                if new is None:
                    new, newh = right, hh[_H:]
                    if type(new) is tuple:
                        newh = _chain(newh, new[1], new[0], bit + 1, hang)
                    continue
                hh = newh + hh[_H:]
                new = (bit, nid, new, right, hh)
            newh = up(prefix + hh).digest()
            rs()
            if bit > hang:
                newh = _chain(newh, nid, bit, bit, hang)
        return new, newh

    def graft(
        self, node: bytes | _Branch, depth: int, khi: int, leaf: bytes, lh: bytes
    ) -> tuple[_Node, bytes]:
        """Join a new leaf with the existing subtree `node` hanging at `depth` (another leaf,
        or a branch whose prefix the new key leaves) at the first bit where their paths differ.
        """
        if type(node) is bytes:
            other = blake3(node).digest()
            ox = int.from_bytes(other, "big")
            j = 256 - (ox ^ khi).bit_length()
            if j >= 256:
                raise MerkleError("blake3 collision between two distinct keys")
            oh = blake3(LEAF_PREFIX + other + blake3(self.values[node]).digest()).digest()
        else:
            assert type(node) is tuple
            bit, nid = node[0], node[1]
            ox = (nid ^ (1 << bit)) << (256 - bit)
            j = 256 - (ox ^ khi).bit_length()
            oh = _branch_hash_at(node, j + 1)
        jnid = (1 << j) | (khi >> (256 - j))
        if (khi >> (255 - j)) & 1:
            hh = oh + lh
            branch: _Branch = (j, jnid, node, leaf, hh)
        else:
            hh = lh + oh
            branch = (j, jnid, leaf, node, hh)
        h = blake3(NODE_PREFIX + hh).digest()
        if j > depth:
            h = _chain(h, jnid, j, j, depth)
        return branch, h


def _join(
    nid: int, bit: int, left: _Node, lh: bytes, right: _Node, rh: bytes, depth: int
) -> tuple[_Node, bytes]:
    """The subtree hanging at `depth` whose node at `bit` has children `left`/`right`."""
    if left is None or right is None:
        child, ch = (right, rh) if left is None else (left, lh)
        if type(child) is tuple:
            return child, _chain(ch, child[1], child[0], bit + 1, depth)
        return child, ch  # EMPTY, or a single leaf collapsing upwards
    hh = lh + rh
    h = blake3(NODE_PREFIX + hh).digest()
    if bit > depth:
        h = _chain(h, nid, bit, bit, depth)
    return (bit, nid, left, right, hh), h


def _move_down(node: _Node, h: bytes, hang: int) -> tuple[_Node, bytes]:
    """Re-hang `node` (whose hash `h` is at a shallower depth) at depth `hang`."""
    if type(node) is tuple:
        return node, _branch_hash_at(node, hang)
    return node, h  # EMPTY and single leaves have the same hash at every depth


def _build(
    values: dict[bytes, bytes],
    ints: list[int],
    digests: list[bytes],
    keys: list[bytes],
    lo: int,
    hi: int,
    depth: int,
) -> tuple[_Node, bytes]:
    """Build the subtree hanging at `depth` of the (>= 1) entries [lo, hi), sorted by hash."""
    if hi - lo == 1:
        key = keys[lo]
        return key, blake3(LEAF_PREFIX + digests[lo] + blake3(values[key]).digest()).digest()
    first = ints[lo]
    diff = first ^ ints[hi - 1]
    if not diff:
        raise MerkleError("blake3 collision between two distinct keys")
    bit = 256 - diff.bit_length()
    # The entries are sorted, so those with bit `bit` set start at the first one >= threshold.
    mid = bisect_left(ints, ((first >> (255 - bit)) | 1) << (255 - bit), lo, hi)
    # Single leaves are built inline: they are half of all the nodes.
    left: _Node
    right: _Node
    if mid - lo == 1:
        left = keys[lo]
        lh = blake3(LEAF_PREFIX + digests[lo] + blake3(values[left]).digest()).digest()
    else:
        left, lh = _build(values, ints, digests, keys, lo, mid, bit + 1)
    if hi - mid == 1:
        right = keys[mid]
        rh = blake3(LEAF_PREFIX + digests[mid] + blake3(values[right]).digest()).digest()
    else:
        right, rh = _build(values, ints, digests, keys, mid, hi, bit + 1)
    hh = lh + rh
    h = blake3(NODE_PREFIX + hh).digest()
    nid = (1 << bit) | (first >> (256 - bit))
    if bit > depth:
        h = _chain(h, nid, bit, bit, depth)
    return (bit, nid, left, right, hh), h


# ------------------------------------------------------------------------------------- diff

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


def _leaves(node: _Node, acc: list[bytes]) -> list[bytes]:
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
    va: dict[bytes, bytes], vb: dict[bytes, bytes], x: _Node, y: _Node, out: list[DiffEntry]
) -> None:
    """Differences between subtrees `x` (of a) and `y` (of b) at the same position."""
    if type(x) is tuple and type(y) is tuple:
        if x is y:  # shared by copy(): an unchanged subtree (updates rebuild touched paths)
            return
        nx, ny = x[1], y[1]
        if nx == ny:
            hx, hy = x[4], y[4]
            if hx[:_H] != hy[:_H]:
                _diff(va, vb, x[2], y[2], out)
            if hx[_H:] != hy[_H:]:
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
