"""`coreledger history`: a user's or an order's fills and orders, as JSON."""

from __future__ import annotations

import argparse

from block_exec.commands.base import (
    Command,
    open_store,
    parse_id,
    parse_user,
    positive,
    print_json,
)
from block_exec.network.commands import add_node_option, remote, wants_node


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR")
    add_node_option(parser)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="U")
    who.add_argument("--order", metavar="ID")
    parser.add_argument("--limit", metavar="N", type=positive)
    parser.add_argument("--after", metavar="CURSOR")


def handle(args: argparse.Namespace) -> int:
    if wants_node(args):
        return remote(args)
    with open_store(args.db) as store:
        if args.user is not None:
            page = store.user_history(parse_user(args.user), args.limit, args.after)
        else:
            page = store.order_history(parse_id(args.order, "order id"), args.limit, args.after)
        print_json(page.to_json())
    return 0


COMMAND = Command(
    name="history",
    help="a user's or an order's fills and orders, as JSON",
    example="coreledger history --db ./node --user 0x" + "00" * 19 + "2a --limit 50",
    add_arguments=add_arguments,
    handle=handle,
)
