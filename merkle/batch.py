"""Batch update: a sorted batch of changed keys merged into a tree (spec/merkle.md §6).

Only the union of the changed keys' paths is rebuilt and rehashed, once; every untouched
subtree is shared with the tree before the batch (see `merkle.nodes` for the layout).
"""

from __future__ import annotations

from bisect import bisect_left

from blake3 import blake3

from merkle.build import build_range
from merkle.errors import MerkleError
from merkle.hashing import EMPTY, LEAF_PREFIX, NODE_PREFIX
from merkle.nodes import NODE_EMPTY, SENTINEL, Branch, L, Node, R, branch_hash_at


class Batch:
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

    def merge(self, node: Node, nh: bytes, depth: int, lo: int, hi: int) -> tuple[Node, bytes]:
        """Apply changes [lo, hi) to `node`, whose hash is `nh`, hanging at `depth`."""
        if hi - lo == 1:
            return self.merge_one(node, nh, depth, lo)
        if hi == lo:
            return node, nh
        ints = self.ints
        if type(node) is not tuple:
            return self.rebuild(node, depth, lo, hi)
        bit, nid, left, right, pre = node
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
                nl, lh = self.merge_one(left, pre[L], bit + 1, lo)
            elif mid == lo:
                nl, lh = left, pre[L]
            else:
                nl, lh = self.merge(left, pre[L], bit + 1, lo, mid)
            if hi - mid == 1:
                nr, rh = self.merge_one(right, pre[R], bit + 1, mid)
            elif hi == mid:
                nr, rh = right, pre[R]
            else:
                nr, rh = self.merge(right, pre[R], bit + 1, mid, hi)
            return self.join(nid, bit, nl, lh, nr, rh, depth)
        # Some change leaves the branch's prefix at bit j (< bit): a chain node at depth j
        # becomes a branch (or stays a chain node if those changes are only deletions).
        # The changes on the branch's side of bit j are merged where the branch hangs now
        # (at `depth`, where `nh` is valid), then the result is moved down to hang at j + 1.
        jprefix = ints[lo] >> (256 - j)
        mid = bisect_left(ints, (jprefix << 1 | 1) << (255 - j), lo, hi)
        if (nid >> (bit - 1 - j)) & 1:
            nl, lh = self.rebuild(None, j + 1, lo, mid)
            nr, rh = move_down(*self.merge(node, nh, depth, mid, hi), j + 1)
        else:
            nl, lh = move_down(*self.merge(node, nh, depth, lo, mid), j + 1)
            nr, rh = self.rebuild(None, j + 1, mid, hi)
        return self.join((1 << j) | jprefix, j, nl, lh, nr, rh, depth)

    def rebuild(self, node: Node, depth: int, lo: int, hi: int) -> tuple[Node, bytes]:
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
        return build_range(values, ints, digests, present, 0, len(present), depth)

    def merge_one(self, node: Node, nh: bytes, depth: int, i: int) -> tuple[Node, bytes]:
        """Apply the single change i: walk down iteratively, then rehash the path upwards.

        This is the hot loop of a batch (below the top levels each change is alone in its
        subtree), hence the manual inlining. Per level of the path: one tuple read on the
        way down; on the way up one slice and one or two concatenations (the new 65-byte
        preimage), one tuple and one blake3 call (the spec's inner hash), and a chain only
        where the branch hangs above its bit. The side taken at each recorded branch and
        the depth it hangs at are recorded beside it on the way down (cheaper than shifting
        the 257-bit key hash again on the way up, or than `bin()` of it).
        """
        key = self.keys[i]
        kx = self.ints[i] | SENTINEL
        value = self.new[i]
        top = node
        path: list[Branch] = []
        hangs: list[int] = []
        sides: list[int] = []
        push = path.append
        hpush = hangs.append
        spush = sides.append
        hang = depth
        while type(node) is tuple:
            bit = node[0]
            if bit > hang and kx >> (256 - bit) != node[1]:
                break
            push(node)
            hpush(hang)
            side = (kx >> (255 - bit)) & 1
            spush(side)
            node = node[3] if side else node[2]
            hang = bit + 1
        hasher = self.hasher
        up = hasher.update
        dg = hasher.digest
        rs = hasher.reset
        new: Node
        if type(node) is bytes and node == key:
            if value is None:
                new, newh = None, EMPTY
            else:
                new = key
                up(value)
                vh = dg()
                rs()
                up(LEAF_PREFIX + self.digests[i] + vh)
                newh = dg()
                rs()
        elif value is None:
            return top, nh  # deleting an absent key changes nothing
        else:
            new = key
            up(value)
            vh = dg()
            rs()
            up(LEAF_PREFIX + self.digests[i] + vh)
            newh = dg()
            rs()
            if node is not None:
                new, newh = self.graft(node, hang, kx ^ SENTINEL, new, newh)
        j = len(path)
        if new is None and j:
            # The deepest branch dissolves: its other child now hangs where the branch hung.
            j -= 1
            bit, _, left, right, pre = path[j]
            hang = hangs[j]
            new, newh = (left, pre[L]) if sides[j] else (right, pre[R])
            if type(new) is tuple:
                newh = self.chain(newh, new[1], new[0], bit + 1, hang)
        # Rehash the path upwards (`new` is never None from here on: the loop is the hot one).
        prefix = NODE_PREFIX
        while j:
            j -= 1
            bit, nid, left, right, pre = path[j]
            if sides[j]:
                pre = pre[:33] + newh
                new = (bit, nid, left, new, pre)
            else:
                pre = prefix + newh + pre[R]
                new = (bit, nid, new, right, pre)
            up(pre)
            newh = dg()
            rs()
            if bit > hangs[j]:
                newh = self.chain(newh, nid, bit, bit, hangs[j])
        return new, newh

    def chain(self, h: bytes, nid: int, bit: int, top: int, hang: int) -> bytes:
        """`merkle.nodes.chain` with this batch's hasher (no hasher object per hash)."""
        hasher = self.hasher
        up = hasher.update
        dg = hasher.digest
        rs = hasher.reset
        j = top - 1
        while j >= hang:
            if (nid >> (bit - 1 - j)) & 1:
                up(NODE_EMPTY + h)
            else:
                up(NODE_PREFIX + h + EMPTY)
            h = dg()
            rs()
            j -= 1
        return h

    def graft(
        self, node: bytes | Branch, depth: int, khi: int, leaf: bytes, lh: bytes
    ) -> tuple[Node, bytes]:
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
            oh = branch_hash_at(node, j + 1)
        jnid = (1 << j) | (khi >> (256 - j))
        if (khi >> (255 - j)) & 1:
            pre = NODE_PREFIX + oh + lh
            branch: Branch = (j, jnid, node, leaf, pre)
        else:
            pre = NODE_PREFIX + lh + oh
            branch = (j, jnid, leaf, node, pre)
        h = blake3(pre).digest()
        if j > depth:
            h = self.chain(h, jnid, j, j, depth)
        return branch, h

    def join(
        self, nid: int, bit: int, left: Node, lh: bytes, right: Node, rh: bytes, depth: int
    ) -> tuple[Node, bytes]:
        """The subtree hanging at `depth` whose node at `bit` has children `left`/`right`."""
        if left is None or right is None:
            child, ch = (right, rh) if left is None else (left, lh)
            if type(child) is tuple:
                return child, self.chain(ch, child[1], child[0], bit + 1, depth)
            return child, ch  # EMPTY, or a single leaf collapsing upwards
        pre = NODE_PREFIX + lh + rh
        hasher = self.hasher
        hasher.update(pre)
        h = hasher.digest()
        hasher.reset()
        if bit > depth:
            h = self.chain(h, nid, bit, bit, depth)
        return (bit, nid, left, right, pre), h



def move_down(node: Node, h: bytes, hang: int) -> tuple[Node, bytes]:
    """Re-hang `node` (whose hash `h` is at a shallower depth) at depth `hang`."""
    if type(node) is tuple:
        return node, branch_hash_at(node, hang)
    return node, h  # EMPTY and single leaves have the same hash at every depth


