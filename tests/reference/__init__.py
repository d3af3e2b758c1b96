"""A small, slow reference implementation of coreledger's encodings, written from spec/ alone.

It shares no code with the packages under test: `cbor` encodes canonical CBOR from
spec/state.md §10 and spec/blocks.md §5, `smt` computes sparse Merkle roots straight from
the recursive definition of spec/merkle.md §2 and §4, `ledger` turns the state of the
independent model `tests/reference_matcher.py` into canonical entries (spec/state.md §10)
and computes block hashes (spec/blocks.md §6), and `store_rows` builds the bytes of the
store rows that spec/store.md fixes. `golden` computes spec/vectors/blocks/*.golden.json
(`python -m tests.reference.golden` rewrites them).
"""
