"""`SparseMerkleTree`: an authenticated map from byte keys to byte values (spec/merkle.md).

The map is a dict; the tree over it (layout in `merkle.nodes`) is brought up to date lazily,
by `merkle.build` when it was empty and by `merkle.batch` otherwise, at the next `root()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

from blake3 import blake3

from merkle.batch import Batch
from merkle.build import build_all, root_of, sorted_by_path
from merkle.errors import InvalidEntryError
from merkle.hashing import EMPTY
from merkle.nodes import SENTINEL, L, Node, R, as_bytes, branch_hash_at, without_gc
from merkle.proof import Proof, ProofKind

Changes: TypeAlias = "Mapping[bytes, bytes | None] | Iterable[tuple[bytes, bytes | None]]"
Items: TypeAlias = "Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]"


def _all_bytes(xs: Iterable[object]) -> bool:
    return set(map(type, xs)) <= {bytes}


def _checked_dict(items: Items) -> dict[bytes, bytes]:
    """`items` as a new dict of bytes to bytes (bytes-like converted; a later key wins)."""
    values: dict[bytes, bytes] = {}
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
                key = as_bytes(key, "key")
            if type(value) is not bytes:
                value = as_bytes(value, "value")
            values[key] = value
    return values



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
        self._root: Node = None
        self._root_hash: bytes = EMPTY
        # True when the tree was empty at the last flush and entries were added since: the
        # next flush builds the whole tree from `_values` in one bulk pass (`_pending` unused).
        self._stale = False
        if changes is not None:
            self.update(changes)

    # ----------------------------------------------------------------- construction / copy

    @classmethod
    def from_items(cls, items: Items) -> SparseMerkleTree:
        """Build a tree from key/value pairs (a later duplicate key wins) in one pass."""
        tree = cls()
        values = tree._values = _checked_dict(items)
        if values:
            tree._root, tree._root_hash = without_gc(lambda: build_all(values))
        return tree

    @classmethod
    def from_columns(cls, keys: Sequence[bytes], values: Sequence[bytes]) -> SparseMerkleTree:
        """`from_items(zip(keys, values))` without the list of pairs (a later key wins)."""
        if len(keys) != len(values):
            raise InvalidEntryError("keys and values differ in length")
        tree = cls()
        checked: dict[bytes, bytes] = {}
        try:
            checked.update(zip(keys, values, strict=True))
            valid = _all_bytes(checked) and _all_bytes(checked.values())
        except TypeError:  # an unhashable key (bytearray): converted below
            valid = False
        tree._values = checked if valid else _checked_dict(zip(keys, values, strict=True))
        values_ = tree._values
        if values_:
            tree._root, tree._root_hash = without_gc(lambda: build_all(values_))
        return tree

    @staticmethod
    def root_of(items: Items) -> bytes:
        """`SparseMerkleTree.from_items(items).root()`, computed by a hash-only pass that builds
        no tree (faster, and keeps no memory): for checks that need the root alone."""
        values = _checked_dict(items)
        return without_gc(lambda: root_of(values))

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
                    k if type(k) is bytes else as_bytes(k, "key"),
                    v if v is None or type(v) is bytes else as_bytes(v, "value"),
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
            self._root, self._root_hash = without_gc(lambda: build_all(values))
            self._stale = False
            self._pending = {}
            return
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        ints, digests, keys = sorted_by_path(list(pending))
        batch = Batch(self._values, ints, digests, keys, [pending[k] for k in keys])
        root, root_hash = self._root, self._root_hash
        try:
            self._root, self._root_hash = without_gc(
                lambda: batch.merge(root, root_hash, 0, 0, len(batch.keys))
            )
        except BaseException:
            self._pending = pending | self._pending  # nothing was replaced: keep the work
            raise

    # -------------------------------------------------------------------------------- proofs

    def prove(self, key: bytes) -> Proof:
        """Inclusion proof if `key` is present, else exclusion proof (spec/merkle.md)."""
        if type(key) is not bytes:
            key = as_bytes(key, "key")
        if self._pending or self._stale:
            self._flush()
        kx = int.from_bytes(blake3(key).digest(), "big") | SENTINEL
        siblings: list[bytes] = []
        push = siblings.append
        node = self._root
        depth = 0
        while type(node) is tuple:
            bit, nid, left, right, pre = node
            if bit > depth and kx >> (256 - bit) != nid:
                # The key leaves the branch's prefix inside the chain above it, at bit j: its
                # side of the chain node at depth j is EMPTY and the branch is the sibling.
                j = 256 - (((nid ^ (1 << bit)) << (256 - bit)) ^ (kx ^ SENTINEL)).bit_length()
                siblings.extend([EMPTY] * (j - depth))
                push(branch_hash_at(node, j + 1))
                return Proof(ProofKind.EXCLUSION_EMPTY, tuple(siblings))
            if bit > depth:
                siblings.extend([EMPTY] * (bit - depth))
            if (kx >> (255 - bit)) & 1:
                push(pre[L])
                node = right
            else:
                push(pre[R])
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

