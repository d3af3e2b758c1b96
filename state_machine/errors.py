"""The root of every error the project raises on purpose.

`state_machine` is the bottom package (it imports none of the others), so the root lives
here and the other packages' errors subclass it: `CoreError` (this package),
`store.StoreError`, `block_exec.BlockError`, and the CLI's own failures. A caller that
embeds the project can catch `CoreledgerError` for "refused or failed, with a one-line
message" and let anything else (a bug) propagate. `merkle` is domain-free and keeps its own
root, `MerkleError`.
"""

from __future__ import annotations


class CoreledgerError(Exception):
    """Something the project refused or could not do; `str()` is one line saying what."""
