"""Sparse Merkle roots straight from spec/merkle.md §1, §2 and §4: recursive, no caching."""

from __future__ import annotations

from blake3 import blake3

EMPTY = bytes(32)


def H(data: bytes) -> bytes:
    return blake3(data).digest()


def leaf(key: bytes, value: bytes) -> bytes:
    return H(b"\x00" + H(key) + H(value))


def node(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


def bit(path: bytes, i: int) -> int:
    return (path[i // 8] >> (7 - i % 8)) & 1


def subtree(entries: list[tuple[bytes, bytes, bytes]], depth: int) -> bytes:
    """T(S, d) of §2; each entry is (path, key, value)."""
    if not entries:
        return EMPTY
    if len(entries) == 1:
        _, key, value = entries[0]
        return leaf(key, value)
    if depth == 256:
        raise ValueError("two keys with one path")
    left = [e for e in entries if bit(e[0], depth) == 0]
    right = [e for e in entries if bit(e[0], depth) == 1]
    return node(subtree(left, depth + 1), subtree(right, depth + 1))


def root(mapping: dict[bytes, bytes]) -> bytes:
    return subtree([(H(k), k, v) for k, v in mapping.items()], 0)


def namespaced_roots(
    namespaces: dict[bytes, dict[bytes, bytes]],
) -> tuple[bytes, dict[bytes, bytes]]:
    """(commitment root, root of each non-empty namespace) of §4."""
    subs = {ns: root(m) for ns, m in namespaces.items() if m}
    return root(subs), subs
