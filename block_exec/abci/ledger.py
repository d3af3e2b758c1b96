"""What the ABCI application needs of the `Executor`, in one place: a block is applied in
memory at FinalizeBlock and written to the store only at Commit.

Why not at FinalizeBlock: CometBFT's handshake trusts the height Info reports to be
committed. A store that held block H before Commit H answered would report H after a
crash, while CometBFT (state at H-1, FinalizeBlock responses maybe not saved yet) may need
to send FinalizeBlock H again ("Replay last block using real app").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from block_exec.executor import Executor, ExecutorBroken
from block_exec.signed import TxAuth
from block_exec.types import Block, BlockResult


@dataclass(slots=True)
class Pending:
    """A block applied in memory and not yet committed."""

    block: Block
    auth: Sequence[TxAuth]
    result: BlockResult
    app_hash: bytes


class Ledger:
    """The executor with FinalizeBlock/Commit separated: `finalize` then `commit`."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.pending: Pending | None = None

    @property
    def committed_height(self) -> int:
        return self.executor.height - (1 if self.pending is not None else 0)

    def finalize(self, block: Block, auth: Sequence[TxAuth]) -> Pending:
        """Apply `block` in memory (raises BlockError, nothing changed, if refused)."""
        if self.pending is not None:
            raise ExecutorBroken(
                f"block {block.height}: block {self.pending.block.height} is not committed yet"
            )
        executor = self.executor
        result = executor._apply(block, auth)
        self.pending = Pending(block, auth, result, executor.state_root)
        return self.pending

    def commit(self) -> int:
        """Write the finalized block to the store (atomically); return its height."""
        pending = self.pending
        if pending is None:
            return self.executor.height
        if self.executor.store is not None:
            self.executor._persist(pending.block, pending.result, pending.auth)
        self.pending = None
        return pending.block.height
