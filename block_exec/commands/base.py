"""What every command module shares: the `Command` record a module registers, the two
failures a handler raises, argument types, and opening a store for reading.

Start-up time: `coreledger` builds the parser of every command on each call, so a command
module imports at its top only what its parser needs; what its handler needs (the executor,
the store, the network client) is imported inside the handler. That keeps a call such as
`coreledger state --db D` from paying for the ABCI server, the signer and asyncio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from state_machine import CoreError, normalize_address
from state_machine.errors import CoreledgerError

if TYPE_CHECKING:
    from block_exec.executor import Executor
    from store import Store

MAX_ASSET = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: `cli.py` adds a parser for it and calls `handle` with its args.

    `add_arguments` fills the subcommand's parser; `handle` returns the exit status and
    raises `CommandFailed` (exit 1) or `UsageProblem` (exit 2) with a one-line message.
    """

    name: str
    help: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]


class UsageProblem(CoreledgerError):
    """Arguments that parse but do not make sense together: exit status 2."""


class CommandFailed(CoreledgerError):
    """Refused input or a failed check: exit status 1, with this one-line message."""


def one_line(exc: BaseException) -> str:
    """An exception as one line of text, never empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def print_json(obj: Any) -> None:
    if sys.stdout is None:  # started with stdout closed: nowhere to write
        raise CommandFailed("standard output is closed")
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- argument types (argparse `type=`) ---------------------------------------------------


def nonnegative(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def positive(text: str) -> int:
    value = nonnegative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


# -- checked values ------------------------------------------------------------------------


def parse_user(text: str) -> str:
    try:
        return normalize_address(text)
    except CoreError as exc:
        raise CommandFailed(one_line(exc)) from None


def parse_id(text: str, what: str) -> int:
    # isascii: str.isdigit() also accepts superscripts and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**64 - 1:
        raise CommandFailed(f"bad {what} {text!r}: want an integer in [1, 2^64-1]")
    return int(text)


def check_asset(asset: int) -> int:
    if asset > MAX_ASSET:
        raise CommandFailed(f"bad asset {asset}: want [0, 2^32-1]")
    return asset


# -- opening a store to read it ----------------------------------------------------------


def open_read_only(directory: str) -> Executor:
    """The node in `directory`, recovered to its last logged block in memory; nothing is
    written (`Executor.open(read_only=True)`: no pruning, no missing checkpoint written)."""
    if not os.path.isdir(directory):
        raise CommandFailed(f"{directory}: no such store")
    from block_exec.executor import Executor

    return Executor.open(directory, read_only=True)


def open_store(directory: str) -> Store:
    if not os.path.isdir(directory):
        raise CommandFailed(f"{directory}: no such store")
    from store import Store

    return Store(directory, read_only=True)
