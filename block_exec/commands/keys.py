"""`coreledger keys new [--out FILE]` and `coreledger keys show FILE`: the signing
client's key files (block_exec/keyfile.py)."""

from __future__ import annotations

import argparse
import sys

from block_exec.commands.base import Command, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True
    new = sub.add_parser("new", help="create a key; print its address",
                         description="Create a secp256k1 key (an Ethereum account). With "
                         "--out, write it to FILE (mode 0600, never overwritten) and print "
                         "its address; without, print the key file's JSON.")
    new.add_argument("--out", metavar="FILE")
    show = sub.add_parser("show", help="print a key file's address")
    show.add_argument("file", metavar="FILE")


def handle(args: argparse.Namespace) -> int:
    from block_exec.keyfile import new_key, read_key_file, write_key_file

    if args.keys_command == "show":
        print_json({"address": read_key_file(args.file).address})
        return 0
    key = new_key()
    if args.out is None:
        sys.stdout.write(key.to_json() + "\n")
        sys.stdout.flush()
        return 0
    write_key_file(args.out, key)
    print_json({"address": key.address, "file": args.out})
    return 0


COMMAND = Command(
    name="keys",
    help="create a signing key file, or show a key file's address",
    example="coreledger keys new --out alice.key",
    add_arguments=add_arguments,
    handle=handle,
)
