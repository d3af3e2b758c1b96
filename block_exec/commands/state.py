"""`coreledger state`: books and balances as JSON."""

from __future__ import annotations

import argparse

from block_exec.commands.base import (
    Command,
    check_asset,
    nonnegative,
    open_read_only,
    parse_user,
    print_json,
)
from block_exec.network.commands import add_node_option, remote, wants_node
from block_exec.views.state import state_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DIR")
    add_node_option(parser)
    parser.add_argument("--asset", metavar="A", type=nonnegative)
    parser.add_argument("--user", metavar="U")


def handle(args: argparse.Namespace) -> int:
    if wants_node(args):
        return remote(args)
    user = None if args.user is None else parse_user(args.user)
    if args.asset is not None:
        check_asset(args.asset)
    with open_read_only(args.db) as executor:
        print_json(
            state_json(executor.state, executor.height, executor.state_root, args.asset, user)
        )
    return 0


COMMAND = Command(
    name="state",
    help="print books and balances as JSON",
    example="coreledger state --db ./node --asset 1",
    add_arguments=add_arguments,
    handle=handle,
)
