"""A domain-free authenticated map: a sparse Merkle tree with proofs and diff (spec/merkle.md).

Imports none of the project's other packages.
"""

from merkle.diff import diff
from merkle.errors import InvalidEntryError, MerkleError, ProofFormatError
from merkle.hashing import EMPTY
from merkle.namespaced import (
    NamespacedCommitment,
    NamespacedProof,
    diff_namespaced,
    verify_namespaced,
)
from merkle.proof import Proof, ProofKind, verify
from merkle.tree import SparseMerkleTree

__all__ = [
    "EMPTY",
    "InvalidEntryError",
    "MerkleError",
    "NamespacedCommitment",
    "NamespacedProof",
    "Proof",
    "ProofFormatError",
    "ProofKind",
    "SparseMerkleTree",
    "diff",
    "diff_namespaced",
    "verify",
    "verify_namespaced",
]
