"""`coreledger diff`: two stores compared, block by block and entry by entry."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from block_exec.commands.base import Command, CommandFailed, nonnegative, open_store, print_json

if TYPE_CHECKING:
    from store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR", required=True)
    parser.add_argument("--other", metavar="DIR2", required=True)
    parser.add_argument("--height", metavar="H", type=nonnegative)


def first_divergent_height(mine: Store, theirs: Store, top: int) -> int | None:
    """The first height in [1, top] whose block hashes differ, or None. A store restored
    from a snapshot (spec/store.md) knows no block below its base: comparing starts at the
    higher base (whose hash both know)."""
    start = max([1, *(store.base.height for store in (mine, theirs) if store.base)])
    for height in range(start, top + 1):
        if mine.block_hash(height) != theirs.block_hash(height):
            return height
    return None


def compared_height(mine: Store, theirs: Store, height: int | None) -> int:
    """`height` if both keep that checkpoint, else the latest checkpoint both keep."""
    common = sorted(set(mine.checkpoint_heights()) & set(theirs.checkpoint_heights()))
    if height is not None:
        if height not in common:
            raise CommandFailed(f"height {height} is not a checkpoint both stores keep")
        return height
    if not common:
        raise CommandFailed("the two stores keep no checkpoint at a common height")
    return common[-1]


def handle(args: argparse.Namespace) -> int:
    from block_exec.views.diff import state_differences
    from store.roots import commitment_of

    with open_store(args.db) as mine, open_store(args.other) as theirs:
        top = min(mine.head_height, theirs.head_height)
        if args.height is not None:
            top = min(top, args.height)
        divergent = first_divergent_height(mine, theirs, top)
        compared = compared_height(mine, theirs, args.height)
        restored_mine = mine.restore(compared)
        restored_theirs = theirs.restore(compared)
    a = commitment_of(restored_mine.entries, keep_values=True)  # the diff reads the values
    b = commitment_of(restored_theirs.entries, keep_values=True)
    differences = state_differences(a, b, restored_mine.machine, restored_theirs.machine)
    blocks_equal = divergent is None or divergent > compared
    equal = blocks_equal and not differences
    print_json(
        {
            "equal": equal,
            "first_divergent_height": divergent,
            "compared_height": compared,
            "state_root": {"db": a.root().hex(), "other": b.root().hex()},
            "differences": differences,
        }
    )
    return 0 if equal else 1


COMMAND = Command(
    name="diff",
    help="compare two stores: first differing block and state differences",
    example="coreledger diff --db ./node-a --other ./node-b",
    add_arguments=add_arguments,
    handle=handle,
)
