"""`coreledger verify`: restore a checkpoint and check it against its state root."""

from __future__ import annotations

import argparse

from block_exec.commands.base import Command, CommandFailed, nonnegative, open_store, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR", required=True)
    parser.add_argument("--height", metavar="H", type=nonnegative)
    parser.add_argument("--all", action="store_true",
                        help="also check every kept checkpoint, the block chain and every "
                        "history row (an audit: reads the whole store)")


def handle(args: argparse.Namespace) -> int:
    from store.roots import compute_roots

    with open_store(args.db) as store:
        heights = store.checkpoint_heights()
        if args.height is not None and args.height not in heights:
            raise CommandFailed(
                f"height {args.height} is not a kept checkpoint (kept: "
                f"{', '.join(map(str, heights)) or 'none'})"
            )
        restored = store.restore(args.height, compute_roots)
        if restored.checkpoint is None:
            raise CommandFailed(f"{args.db}: no checkpoint to verify yet")
        if args.all:
            store.verify_all(compute_roots)
        machine = restored.machine
        print_json(
            {
                "ok": True,
                "height": restored.height,
                "state_root": restored.checkpoint.roots.root.hex(),
                "checked": {
                    "entries": len(restored.entries),
                    "namespaces": len(restored.checkpoint.roots.namespaces),
                    "resting_orders": len(machine.orders),
                    "books": sum(1 for book in machine.books.values() if not book.is_empty()),
                    "accounts": sum(1 for _ in machine.balances.nonzero()),
                },
                "kept_checkpoints": heights,
                "head_height": store.head_height,
                # A head at a checkpoint height whose checkpoint is not written yet (the
                # next `run` writes it; read-only commands never do).
                "missing_checkpoint": store.head_height if store.needs_checkpoint() else None,
                "audited": (
                    "every kept checkpoint, the block chain and the history"
                    if args.all else None
                ),
            }
        )
    return 0


COMMAND = Command(
    name="verify",
    help="restore a checkpoint and check it against its state root",
    example="coreledger verify --db ./node",
    add_arguments=add_arguments,
    handle=handle,
)
