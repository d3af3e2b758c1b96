"""The `coreledger` subcommands, one module each; `cli.py` builds the parser from
`COMMANDS` and calls `dispatch`.

Adding a command: write `block_exec/commands/NAME.py` with `add_arguments(parser)`,
`handle(args) -> int` and `COMMAND = Command(...)` (see `base.Command`), and list it in
`COMMANDS` below (the order is the order of `coreledger --help`).
"""

from __future__ import annotations

import argparse

from block_exec.commands import (
    bench,
    diff,
    history,
    keys,
    prove,
    run,
    sign,
    state,
    verify,
    verify_proof,
)
from block_exec.commands.base import Command, CommandFailed, UsageProblem, one_line
from block_exec.network.commands import NODE, SEND, TESTNET
from merkle import MerkleError
from state_machine.errors import CoreledgerError

COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    verify.COMMAND,
    state.COMMAND,
    history.COMMAND,
    prove.COMMAND,
    verify_proof.COMMAND,
    diff.COMMAND,
    bench.COMMAND,
    NODE,
    TESTNET,
    SEND,
    keys.COMMAND,
    sign.COMMAND,
)

_BY_NAME = {command.name: command for command in COMMANDS}

# Failures with a one-line message of their own: exit status 1.
EXPECTED_ERRORS = (CoreledgerError, MerkleError, OSError)


def dispatch(args: argparse.Namespace) -> int:
    """Run one subcommand; expected failures become CommandFailed (exit status 1)."""
    try:
        return _BY_NAME[args.command].handle(args)
    except (UsageProblem, CommandFailed):
        raise
    except EXPECTED_ERRORS as exc:
        raise CommandFailed(one_line(exc)) from None


__all__ = ["COMMANDS", "Command", "CommandFailed", "UsageProblem", "dispatch", "one_line"]
