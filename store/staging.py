"""Building one atomic batch of consecutive blocks (and the last one's checkpoint) without
writing it: `Store.stage_blocks` stages it, `Store.commit` writes it, so that the
pipelined writer builds the next batch while LevelDB writes this one (`store.committer`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from store import blocklog, checkpoints
from store.blocklog import Tip
from store.errors import StoreError
from store.records import BlockRecord, Checkpoint, CheckpointInfo


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """A batch built and not yet written."""

    batch: Any  # LevelDB's write batch, holding every row
    sync: bool
    tip: Tip  # the head after it
    rows: list[blocklog.Row]  # the block rows (kept for `Store.last_batch_bytes`)
    checkpoint: CheckpointInfo | None
    checkpoint_bytes: int

    @property
    def height(self) -> int:
        """The height of the head after it (what its commit acknowledges)."""
        return self.tip[0]


def stage_batch(
    db: Any,
    records: Sequence[BlockRecord],
    checkpoint: Checkpoint | None,
    tip: Tip,
    latest: CheckpointInfo | None,
    interval: int,
    sync_blocks: bool,
) -> StagedBatch:
    """The batch of `records` (consecutive, above `tip`) and, at the last one's height,
    `checkpoint` (staged over the latest checkpoint `latest`; then the batch is synced).

    Every row is built first, then put in one loop (the per-put Python overhead of a
    closure call per row was a third of persisting a busy block). Reads the database
    only for the checkpoint (the state rows of the previous one).
    Cost: O(rows) + O(checkpoint changes).
    """
    last = records[-1]
    if checkpoint is not None and checkpoint.height != last.height:
        raise StoreError(f"checkpoint {checkpoint.height} given with block {last.height}")
    rows, head = blocklog.blocks_rows(records, tip)
    sync = sync_blocks or checkpoint is not None
    batch = db.write_batch(transaction=True, sync=sync)
    put = batch.put
    for key, value in rows:
        put(key, value)
    info = None
    info_bytes = 0
    if checkpoint is not None:
        info, info_bytes = checkpoints.stage_checkpoint(
            db, batch, checkpoint, last.block_hash, latest, interval
        )
    return StagedBatch(batch, sync, head, rows, info, info_bytes)


def rows_bytes(rows: list[blocklog.Row]) -> int:
    """Key + value bytes of `rows`: O(rows)."""
    return sum(map(len, itertools.chain.from_iterable(rows)))
