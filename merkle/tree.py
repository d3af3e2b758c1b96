"""`SparseMerkleTree`: an authenticated map from byte keys to byte values (spec/merkle.md).

The map is a dict; the tree over it (layout in `merkle.nodes`) is brought up to date lazily,
by `merkle.build` when it was empty and by `merkle.batch` otherwise, at the next `root()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

from blake3 import blake3

from merkle.batch import Batch
from merkle.build import build_all, root_of, sorted_by_path
from merkle.errors import InvalidEntryError, MerkleError
from merkle.hashing import EMPTY
from merkle.nodes import SENTINEL, Branch, L, Node, R, as_bytes, branch_hash_at, without_gc
from merkle.proof import Proof, ProofKind

Changes: TypeAlias = "Mapping[bytes, bytes | None] | Iterable[tuple[bytes, bytes | None]]"
Items: TypeAlias = "Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]"
ValueOf: TypeAlias = "Callable[[bytes], bytes | None]"
"""The value of a key, read from the owner of a tree that keeps no values."""


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

    `keep_values=False` makes a tree that keeps no values (about 105 B less per entry at
    1,000,000 entries): only the keys and hashes. Its owner, who holds the values anyway,
    reads them there: `get` and `items` raise MerkleError, `prove` of an exclusion by another
    leaf and `diff` take the owner's `value_of`. Its roots and proofs are the same.
    """

    __slots__ = ("_pending", "_root", "_root_hash", "_size", "_stale", "_values")

    def __init__(self, changes: Changes | None = None, *, keep_values: bool = True) -> None:
        self._values: dict[bytes, bytes] | None = {} if keep_values else None
        # Changed since the last flush: key -> new value (None: deleted). A small dict, so
        # the batch pass reads new values without probing the big `_values` again.
        self._pending: dict[bytes, bytes | None] = {}
        self._root: Node = None
        self._root_hash: bytes = EMPTY
        self._size = 0  # entries at the last flush
        # True when the tree was empty at the last flush and entries were added since: the
        # next flush builds the whole tree in one bulk pass, from `_values` (or, in a tree
        # without values, from `_pending`, which then holds every change since).
        self._stale = False
        if changes is not None:
            self.update(changes)

    # ----------------------------------------------------------------- construction / copy

    @classmethod
    def from_items(cls, items: Items, *, keep_values: bool = True) -> SparseMerkleTree:
        """Build a tree from key/value pairs (a later duplicate key wins) in one pass."""
        return cls._built(_checked_dict(items), keep_values)

    @classmethod
    def from_columns(
        cls, keys: Sequence[bytes], values: Sequence[bytes], *, keep_values: bool = True
    ) -> SparseMerkleTree:
        """`from_items(zip(keys, values))` without the list of pairs (a later key wins)."""
        if len(keys) != len(values):
            raise InvalidEntryError("keys and values differ in length")
        checked: dict[bytes, bytes] = {}
        try:
            checked.update(zip(keys, values, strict=True))
            valid = _all_bytes(checked) and _all_bytes(checked.values())
        except TypeError:  # an unhashable key (bytearray): converted below
            valid = False
        if not valid:
            checked = _checked_dict(zip(keys, values, strict=True))
        return cls._built(checked, keep_values)

    @classmethod
    def _built(cls, values: dict[bytes, bytes], keep_values: bool) -> SparseMerkleTree:
        tree = cls(keep_values=keep_values)
        if keep_values:
            tree._values = values
        if values:
            tree._root, tree._root_hash = without_gc(lambda: build_all(values))
            tree._size = len(values)
        return tree

    @classmethod
    def from_built(cls, root: Node, root_hash: bytes, size: int) -> SparseMerkleTree:
        """A tree keeping no values, made of nodes built elsewhere: the `built()` parts of a
        tree built (by `from_columns`) in another process (`merkle.worker`'s trees), taken
        as they are. O(1)."""
        tree = cls(keep_values=False)
        tree._root, tree._root_hash, tree._size = root, root_hash, size
        return tree

    def built(self) -> tuple[Node, bytes, int]:
        """(root node, root hash, entry count) after a flush: what `from_built` takes."""
        self._flush()
        return self._root, self._root_hash, self._size

    @staticmethod
    def root_of(items: Items) -> bytes:
        """`SparseMerkleTree.from_items(items).root()`, computed by a hash-only pass that builds
        no tree (faster, and keeps no memory): for checks that need the root alone."""
        values = _checked_dict(items)
        return without_gc(lambda: root_of(values))

    def copy(self) -> SparseMerkleTree:
        """An independent tree with the same content; nodes are shared (they are immutable)."""
        self._flush()
        other = SparseMerkleTree(keep_values=self._values is not None)
        if self._values is not None:
            other._values = self._values.copy()
        other._root = self._root
        other._root_hash = self._root_hash
        other._size = self._size
        return other

    # ----------------------------------------------------------------------------- reading

    @property
    def keeps_values(self) -> bool:
        return self._values is not None

    def _kept(self) -> dict[bytes, bytes]:
        if self._values is None:
            raise MerkleError("this tree keeps no values: read them from their owner")
        return self._values

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """The value of `key` (a tree that keeps its values only)."""
        return self._kept().get(key, default)

    def __len__(self) -> int:
        if self._values is not None:
            return len(self._values)
        self._flush()
        return self._size

    def __contains__(self, key: object) -> bool:
        if self._values is not None:
            return key in self._values
        if not isinstance(key, bytes):
            return False
        self._flush()
        kx = int.from_bytes(blake3(key).digest(), "big")
        node = self._root
        while type(node) is tuple:
            node = node[2] if (kx >> (255 - node[0])) & 1 else node[1]
        return node == key

    def items(self) -> list[tuple[bytes, bytes]]:
        """All entries, sorted by key (bytewise; a tree that keeps its values only)."""
        return sorted(self._kept().items())

    def keys(self) -> list[bytes]:
        """All keys, sorted bytewise."""
        if self._values is not None:
            return sorted(self._values)
        self._flush()
        return sorted(leaves(self._root, []))

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
        if values is None:
            # No values to compare with: every change is recorded (rewriting a key with its
            # own value rehashes its path to the same hashes); the batch counts the entries.
            self._pending.update(pairs)
            if self._root is None:
                self._stale = True
            return
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
        if key not in self:
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
            if values is None:
                values = {k: v for k, v in self._pending.items() if v is not None}
            self._root, self._root_hash = without_gc(lambda: build_all(values))
            self._size = len(values)
            self._stale = False
            self._pending = {}
            return
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        ints, digests, keys = sorted_by_path(list(pending))
        batch = Batch(ints, digests, keys, [pending[k] for k in keys])
        root, root_hash = self._root, self._root_hash
        try:
            self._root, self._root_hash = without_gc(
                lambda: batch.merge(root, root_hash, 0, 0, len(batch.keys))
            )
        except BaseException:
            self._pending = pending | self._pending  # nothing was replaced: keep the work
            raise
        self._size += batch.added

    # -------------------------------------------------------------------------------- proofs

    def prove(self, key: bytes, value_of: ValueOf | None = None) -> Proof:
        """Inclusion proof if `key` is present, else exclusion proof (spec/merkle.md).

        An exclusion by another leaf carries that leaf's value hash: a tree without values
        reads the value from `value_of` (MerkleError if it is not given or has none).
        O(depth): the walk goes down `key`'s path to a leaf without checking the branches'
        prefixes; if the leaf is another key, the first bit where their paths differ says
        whether the path left a chain above some branch (exclusion by EMPTY) or not.
        """
        if type(key) is not bytes:
            key = as_bytes(key, "key")
        if self._pending or self._stale:
            self._flush()
        kx = int.from_bytes(blake3(key).digest(), "big") | SENTINEL
        siblings: list[bytes] = []
        push = siblings.append
        # (siblings before it, branch, depth it hangs at) of each branch hanging above its bit
        chained: list[tuple[int, Branch, int]] = []
        node = self._root
        depth = 0
        while type(node) is tuple:
            bit, left, right, pre = node
            if bit > depth:
                chained.append((len(siblings), node, depth))
                siblings.extend([EMPTY] * (bit - depth))
            if (kx >> (255 - bit)) & 1:
                push(pre[L])
                node = right
            else:
                push(pre[R])
                node = left
            depth = bit + 1
        if node is None:
            return Proof(ProofKind.EXCLUSION_EMPTY, ())
        assert type(node) is bytes
        if node == key:
            return Proof(ProofKind.INCLUSION, tuple(siblings))
        other = blake3(node).digest()
        ox = int.from_bytes(other, "big") | SENTINEL
        j = 256 - (ox ^ kx).bit_length()  # the first bit where the two paths differ
        for count, branch, hang in chained:
            if branch[0] > j:
                # The key leaves the branch's prefix inside the chain above it, at bit j: its
                # side of the chain node at depth j is EMPTY and the branch is the sibling.
                del siblings[count:]
                siblings.extend([EMPTY] * (j - hang))
                push(branch_hash_at(branch, ox >> (256 - branch[0]), j + 1))
                return Proof(ProofKind.EXCLUSION_EMPTY, tuple(siblings))
        value = self._value_of(node, value_of)
        return Proof(
            ProofKind.EXCLUSION_LEAF, tuple(siblings), other, blake3(value).digest()
        )

    def _value_of(self, key: bytes, value_of: ValueOf | None) -> bytes:
        """The value of `key`, which is in the tree: kept here, or read from `value_of`."""
        if self._values is not None:
            return self._values[key]
        value = None if value_of is None else value_of(key)
        if value is None:
            raise MerkleError("this tree keeps no values: give value_of")
        return value


def leaves(node: Node, acc: list[bytes]) -> list[bytes]:
    """The keys of the leaves below `node`, appended to `acc` (in tree order)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if type(n) is tuple:
            stack.append(n[2])
            stack.append(n[1])
        elif n is not None:
            assert type(n) is bytes
            acc.append(n)
    return acc
