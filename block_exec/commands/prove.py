"""`coreledger prove`: an inclusion or exclusion proof of one state entry against a kept
checkpoint's root, as a JSON file that `verify-proof` checks without the database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from block_exec.commands.base import (
    Command,
    CommandFailed,
    UsageProblem,
    check_asset,
    nonnegative,
    open_store,
    parse_id,
    parse_user,
    print_json,
)
from block_exec.network.commands import add_node_option, remote, wants_node
from block_exec.views.entries import entry_name, entry_value
from state_machine import namespace_of
from state_machine.entries import balance_key, nonce_key, order_key

if TYPE_CHECKING:
    from store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR")
    add_node_option(parser)
    parser.add_argument("--user", metavar="U")
    parser.add_argument("--asset", metavar="A", type=nonnegative)
    parser.add_argument("--order", metavar="ID")
    parser.add_argument("--nonce", metavar="U", help="prove the nonce of address U")
    parser.add_argument("--height", metavar="H", type=nonnegative)


def _key(args: argparse.Namespace, store: Store) -> bytes:
    """The state key the arguments name."""
    if args.nonce is not None:
        return nonce_key(parse_user(args.nonce))
    if args.order is not None:
        order_id = parse_id(args.order, "order id")
        page = store.order_history(order_id)
        if not page.orders:
            raise CommandFailed(f"order {order_id}: not in this store's history")
        return order_key(page.orders[0].placed.asset, order_id)
    assert args.user is not None and args.asset is not None
    return balance_key(parse_user(args.user), check_asset(args.asset))


def check_usage(args: argparse.Namespace) -> None:
    """Exactly one entry named: `--order`, `--nonce`, or `--user` with `--asset`."""
    if args.nonce is not None:
        if args.user is not None or args.asset is not None or args.order is not None:
            raise UsageProblem("give either --nonce, --order, or --user with --asset")
    elif args.order is not None:
        if args.user is not None or args.asset is not None:
            raise UsageProblem("give either --order, or --user with --asset")
    elif args.user is None or args.asset is None:
        raise UsageProblem("give --user with --asset, or --order")


def handle(args: argparse.Namespace) -> int:
    from store.roots import commitment_of

    if wants_node(args):
        return remote(args)
    check_usage(args)
    with open_store(args.db) as store:
        key = _key(args, store)
        if args.height is not None and args.height not in store.checkpoint_heights():
            raise CommandFailed(f"height {args.height} is not a kept checkpoint")
        info, entries = store.state_entries_at(args.height)
        if info is None:
            raise CommandFailed(f"{args.db}: no checkpoint to prove against yet")
        commitment = commitment_of(entries, keep_values=True)  # one proof: keep the values
        if commitment.root() != info.roots.root:
            raise CommandFailed(f"checkpoint {info.height}: stored root does not match its state")
        namespace = namespace_of(key)
        value = commitment.get(namespace, key)
        proof = commitment.prove(namespace, key)
    print_json(
        {
            "height": info.height,
            "root": info.roots.root.hex(),
            "key": entry_name(key),
            "key_hex": key.hex(),
            "namespace_hex": namespace.hex(),
            "value_hex": None if value is None else value.hex(),
            "value": entry_value(key, value),
            "included": value is not None,
            "proof_hex": proof.to_bytes().hex(),
        }
    )
    return 0


COMMAND = Command(
    name="prove",
    help="an inclusion or exclusion proof against a checkpoint's root",
    example="coreledger prove --db ./node --order 17 > proof.json",
    add_arguments=add_arguments,
    handle=handle,
)
