"""`coreledger sign --key FILE --chain-id ID --nonce N 'TX-JSON'`: a signed tx
(spec/signed.md) as hex on stdout, ready for CometBFT's broadcast_tx."""

from __future__ import annotations

import argparse
import sys

from block_exec.commands.base import Command, CommandFailed, nonnegative


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", metavar="FILE", required=True)
    parser.add_argument("--chain-id", metavar="ID", required=True)
    parser.add_argument("--nonce", metavar="N", type=nonnegative, required=True)
    parser.add_argument("tx", metavar="TX-JSON", help="one block-file tx as JSON")


def handle(args: argparse.Namespace) -> int:
    from block_exec.keyfile import read_key_file
    from block_exec.signed import sign_tx, tx_from_json

    key = read_key_file(args.key)
    tx = tx_from_json(args.tx)
    try:
        raw = sign_tx(key.private_key, args.chain_id, args.nonce, tx)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    sys.stdout.write(raw.hex() + "\n")
    sys.stdout.flush()
    return 0


COMMAND = Command(
    name="sign",
    help="sign one tx for a network chain; print it as hex",
    example="coreledger sign --key alice.key --chain-id coreledger-1 --nonce 0 "
    "'{\"op\":\"withdraw\",\"user\":\"0x...\",\"asset\":0,\"amount\":5}'",
    add_arguments=add_arguments,
    handle=handle,
)
