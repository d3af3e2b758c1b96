"""`NamespacedCommitment`: one sparse Merkle tree per namespace under a top tree.

The top tree maps namespace -> root of that namespace's tree; a namespace whose tree is empty
is absent from the top tree, so the root is history independent. Divergence between two
commitments is named first by namespace (cheap: the top tree is small), then by key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from merkle.build import root_of
from merkle.diff import diff
from merkle.errors import MerkleError, ProofFormatError
from merkle.hashing import EMPTY, HASH_SIZE
from merkle.nodes import as_bytes, without_gc
from merkle.proof import Proof, verify
from merkle.tree import SparseMerkleTree, ValueOf

NamespacedChange: TypeAlias = "tuple[bytes, bytes, bytes | None]"
NamespacedDiffEntry: TypeAlias = "tuple[bytes, bytes, bytes | None, bytes | None]"
NamespacedValueOf: TypeAlias = "Callable[[bytes, bytes], bytes | None]"
"""The value under (namespace, key), read from the owner of a commitment keeping no values."""

_ABSENT = 0
_PRESENT = 1


@dataclass(frozen=True, slots=True)
class NamespacedProof:
    """Proof about (namespace, key) against a NamespacedCommitment root.

    `namespace_proof` proves namespace -> `sub_root` in the top tree (exclusion when
    `sub_root` is None, and then `key_proof` is None too); `key_proof` proves the key in the
    namespace's tree whose root is `sub_root`.
    """

    namespace_proof: Proof
    sub_root: bytes | None
    key_proof: Proof | None

    def __post_init__(self) -> None:
        if self.sub_root is None:
            if self.key_proof is not None:
                raise ProofFormatError("an absent namespace has no key proof")
        elif type(self.sub_root) is not bytes or len(self.sub_root) != HASH_SIZE:
            raise ProofFormatError("sub_root must be 32 bytes")
        elif self.sub_root == EMPTY:
            raise ProofFormatError("an empty namespace is absent, its root is never EMPTY")
        elif self.key_proof is None:
            raise ProofFormatError("a present namespace needs a key proof")

    def to_bytes(self) -> bytes:
        """flag u8 (0 absent, 1 present) | [sub_root 32] | namespace proof | [key proof]."""
        if self.sub_root is None:
            return bytes((_ABSENT,)) + self.namespace_proof.to_bytes()
        assert self.key_proof is not None
        return b"".join(
            (
                bytes((_PRESENT,)),
                self.sub_root,
                self.namespace_proof.to_bytes(),
                self.key_proof.to_bytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NamespacedProof:
        """Strict decoding; raises ProofFormatError on anything but the canonical bytes."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProofFormatError("proof must be bytes")
        data = bytes(data)
        if not data:
            raise ProofFormatError("empty namespaced proof")
        flag = data[0]
        if flag == _ABSENT:
            top, end = Proof.decode_prefix(data, 1)
            if end != len(data):
                raise ProofFormatError("trailing bytes after proof")
            return cls(top, None, None)
        if flag != _PRESENT:
            raise ProofFormatError(f"unknown namespaced proof flag {flag}")
        sub_root = data[1 : 1 + HASH_SIZE]
        if len(sub_root) != HASH_SIZE:
            raise ProofFormatError("truncated sub-root")
        top, pos = Proof.decode_prefix(data, 1 + HASH_SIZE)
        sub, end = Proof.decode_prefix(data, pos)
        if end != len(data):
            raise ProofFormatError("trailing bytes after proof")
        return cls(top, sub_root, sub)


def verify_namespaced(
    root: bytes,
    namespace: bytes,
    key: bytes,
    value: bytes | None,
    proof: NamespacedProof | bytes,
) -> bool:
    """True iff `proof` shows that (namespace, key) maps to `value` (None: absent) under `root`.

    Pure; malformed proof bytes give False.
    """
    if not isinstance(proof, NamespacedProof):
        try:
            proof = NamespacedProof.from_bytes(proof)
        except ProofFormatError:
            return False
    if proof.sub_root is None:
        return value is None and verify(root, namespace, None, proof.namespace_proof)
    assert proof.key_proof is not None
    return verify(root, namespace, proof.sub_root, proof.namespace_proof) and verify(
        proof.sub_root, key, value, proof.key_proof
    )


class NamespacedCommitment:
    """A two-level authenticated map (namespace, key) -> value; see the module docstring.

    `keep_values=False`: the namespaces' trees keep no values (`SparseMerkleTree`): `get`
    and `items` raise MerkleError, and `prove` / `diff_namespaced` read values from the
    owner's `value_of(namespace, key)`. The top tree (namespace -> its root) keeps its own.
    """

    __slots__ = ("_dirty", "_keep_values", "_top", "_trees")

    def __init__(
        self, changes: Iterable[NamespacedChange] | None = None, *, keep_values: bool = True
    ) -> None:
        self._trees: dict[bytes, SparseMerkleTree] = {}
        self._top = SparseMerkleTree()
        self._dirty: set[bytes] = set()
        self._keep_values = keep_values
        if changes is not None:
            self.update(changes)

    def update(self, changes: Iterable[NamespacedChange]) -> None:
        """Apply (namespace, key, value-or-None) changes; validated before any is applied.

        The cyclic GC is paused meanwhile: a big batch (a whole state on reopening) would
        otherwise trigger collections that rescan the caller's whole heap many times.
        """
        without_gc(lambda: self._update(changes))

    def _update(self, changes: Iterable[NamespacedChange]) -> None:
        grouped = _grouped(changes)
        trees = self._trees
        for namespace, group in grouped.items():
            tree = trees.get(namespace)
            if tree is None:
                tree = trees[namespace] = SparseMerkleTree(keep_values=self._keep_values)
            tree._apply(group.items())
            self._dirty.add(namespace)

    @classmethod
    def from_columns(
        cls,
        columns: Iterable[tuple[bytes, Sequence[bytes], Sequence[bytes]]],
        *,
        keep_values: bool = True,
    ) -> NamespacedCommitment:
        """The commitment of each namespace's entries `keys[i] -> values[i]` given as
        (namespace, keys, values) columns, one per namespace (a later duplicate key wins):
        every tree is built in one bulk pass, with no per-entry grouping."""
        commitment = cls(keep_values=keep_values)

        def build() -> None:
            for namespace, keys, values in columns:
                if type(namespace) is not bytes:
                    namespace = as_bytes(namespace, "namespace")
                tree = SparseMerkleTree.from_columns(keys, values, keep_values=keep_values)
                if len(tree):
                    commitment._trees[namespace] = tree
                    commitment._dirty.add(namespace)

        without_gc(build)
        return commitment

    @classmethod
    def from_trees(cls, trees: Iterable[tuple[bytes, SparseMerkleTree]]) -> NamespacedCommitment:
        """The commitment whose namespaces have the trees `trees` (namespace, tree keeping
        no values; an empty tree is left out), e.g. built apart by `merkle.worker`. O(trees)."""
        commitment = cls(keep_values=False)
        for namespace, tree in trees:
            if tree.keeps_values:
                raise MerkleError("a commitment keeping no values takes trees without values")
            if len(tree):
                commitment._trees[namespace] = tree
                commitment._dirty.add(namespace)
        return commitment

    @staticmethod
    def roots_of(entries: Iterable[tuple[bytes, bytes, bytes]]) -> tuple[bytes, dict[bytes, bytes]]:
        """(root, {namespace: its root} in namespace order) of the commitment holding
        `entries`, by hash-only passes that build no tree (`SparseMerkleTree.root_of`):
        the same roots as `NamespacedCommitment(entries)`, for checks that need only them."""

        def compute() -> tuple[bytes, dict[bytes, bytes]]:
            grouped = _grouped(entries)
            sub = {}
            for namespace in sorted(grouped):
                group = grouped[namespace]
                if None in group.values():
                    group = {k: v for k, v in group.items() if v is not None}
                if group:
                    sub[namespace] = root_of(group)  # type: ignore[arg-type]
            return root_of(sub), sub

        return without_gc(compute)

    def _flush(self) -> None:
        if self._dirty:
            without_gc(self._flush_dirty)

    def _flush_dirty(self) -> None:
        top: dict[bytes, bytes | None] = {}
        for namespace in sorted(self._dirty):
            tree = self._trees[namespace]
            if len(tree):
                top[namespace] = tree.root()
            else:
                del self._trees[namespace]
                top[namespace] = None
        self._dirty.clear()
        self._top.update(top)

    def root(self) -> bytes:
        self._flush()
        return self._top.root()

    @property
    def keeps_values(self) -> bool:
        return self._keep_values

    def get(self, namespace: bytes, key: bytes) -> bytes | None:
        """The value under (namespace, key) (a commitment that keeps its values only)."""
        tree = self._trees.get(namespace)
        return None if tree is None else tree.get(key)

    def __len__(self) -> int:
        """Number of (namespace, key) entries."""
        return sum(len(t) for t in self._trees.values())

    def namespaces(self) -> list[bytes]:
        """Non-empty namespaces, sorted."""
        return sorted(ns for ns, t in self._trees.items() if len(t))

    def namespace_roots(self) -> dict[bytes, bytes]:
        """Root of each non-empty namespace, in namespace order."""
        self._flush()
        return {ns: self._trees[ns].root() for ns in sorted(self._trees)}

    def tree(self, namespace: bytes) -> SparseMerkleTree:
        """A copy of one namespace's tree (empty if the namespace is absent)."""
        tree = self._trees.get(namespace)
        return SparseMerkleTree(keep_values=self._keep_values) if tree is None else tree.copy()

    def items(self) -> list[tuple[bytes, bytes, bytes]]:
        """All (namespace, key, value), sorted (a commitment that keeps its values only)."""
        return [(ns, k, v) for ns in self.namespaces() for k, v in self._trees[ns].items()]

    def copy(self) -> NamespacedCommitment:
        self._flush()
        other = NamespacedCommitment(keep_values=self._keep_values)
        other._trees = {ns: t.copy() for ns, t in self._trees.items()}
        other._top = self._top.copy()
        return other

    @staticmethod
    def diff(a: NamespacedCommitment, b: NamespacedCommitment) -> list[NamespacedDiffEntry]:
        """Same as `diff_namespaced(a, b)`."""
        return diff_namespaced(a, b)

    def prove(
        self, namespace: bytes, key: bytes, value_of: NamespacedValueOf | None = None
    ) -> NamespacedProof:
        """Proof about (namespace, key); a commitment that keeps no values reads the value of
        another key (an exclusion by another leaf) from `value_of(namespace, key)`."""
        if type(namespace) is not bytes:
            namespace = as_bytes(namespace, "namespace")
        if type(key) is not bytes:
            key = as_bytes(key, "key")
        self._flush()
        top_proof = self._top.prove(namespace)
        tree = self._trees.get(namespace)
        if tree is None:
            return NamespacedProof(top_proof, None, None)
        ns = namespace
        sub_value_of = None if value_of is None else (lambda k: value_of(ns, k))
        return NamespacedProof(top_proof, tree.root(), tree.prove(key, sub_value_of))


def diff_namespaced(
    a: NamespacedCommitment,
    b: NamespacedCommitment,
    values_a: NamespacedValueOf | None = None,
    values_b: NamespacedValueOf | None = None,
) -> list[NamespacedDiffEntry]:
    """(namespace, key, value in a or None, value in b or None) for every difference, sorted.

    The top trees are diffed first, so only namespaces whose roots differ are descended into.
    A commitment that keeps no values reads them from `values_a` / `values_b`.
    """
    a._flush()
    b._flush()
    out: list[NamespacedDiffEntry] = []
    for namespace, in_a, in_b in diff(a._top, b._top):
        ta = a._trees.get(namespace) if in_a is not None else None
        tb = b._trees.get(namespace) if in_b is not None else None
        ga = None if values_a is None else _bound(values_a, namespace)
        gb = None if values_b is None else _bound(values_b, namespace)
        if ta is not None and tb is not None:
            out.extend((namespace, k, va, vb) for k, va, vb in diff(ta, tb, ga, gb))
        elif ta is not None:
            out.extend((namespace, k, v, None) for k, v, _ in diff(ta, _EMPTY_TREE, ga))
        elif tb is not None:
            out.extend((namespace, k, None, v) for k, _, v in diff(_EMPTY_TREE, tb, None, gb))
    return out


_EMPTY_TREE = SparseMerkleTree()


def _bound(values: NamespacedValueOf, namespace: bytes) -> ValueOf:
    return lambda key: values(namespace, key)


def _grouped(changes: Iterable[NamespacedChange]) -> dict[bytes, dict[bytes, bytes | None]]:
    """`changes` validated (bytes-like converted) and grouped by namespace, each a dict in
    which a later change of the same key wins; raises InvalidEntryError before returning."""
    if not isinstance(changes, list | tuple):
        changes = list(changes)
    # Validated column by column at C speed; the per-change loop below only groups.
    if not changes:
        return {}
    namespaces, keys, values = zip(*changes, strict=True)
    if not (
        set(map(type, namespaces)) <= {bytes}
        and set(map(type, keys)) <= {bytes}
        and set(map(type, values)) <= {bytes, type(None)}
    ):
        changes = [
            (
                n if type(n) is bytes else as_bytes(n, "namespace"),
                k if type(k) is bytes else as_bytes(k, "key"),
                v if v is None or type(v) is bytes else as_bytes(v, "value"),
            )
            for n, k, v in changes
        ]
        namespaces = tuple(n for n, _, _ in changes)
    # A dict per namespace: a later change of the same key wins, as in a tree's update.
    grouped: dict[bytes, dict[bytes, bytes | None]] = {
        ns: {} for ns in dict.fromkeys(namespaces)
    }
    for namespace, key, value in changes:
        grouped[namespace][key] = value
    return grouped


__all__ = [
    "NamespacedChange",
    "NamespacedCommitment",
    "NamespacedDiffEntry",
    "NamespacedProof",
    "diff_namespaced",
    "verify_namespaced",
]
